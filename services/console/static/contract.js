// The admin API as docs/admin-api.md states it: paths, the list keys, the editable fields,
// and the figures of the live streams as the board names them. One module, so that a
// change of the contract is a change here.

export const KINDS = {
  seckill: {
    label: "Flash sale",
    plural: "Flash sales",
    base: "/api/seckill/admin/activities",
    items: "activities",
    editable: [
      "title",
      "price_cents",
      "starts_at",
      "ends_at",
      "stock",
      "per_user_limit",
      "payment_timeout_seconds",
    ],
  },
  groupbuy: {
    label: "Group buy",
    plural: "Group-buy campaigns",
    base: "/api/groupbuy/admin/campaigns",
    items: "campaigns",
    editable: [
      "title",
      "group_price_cents",
      "single_price_cents",
      "starts_at",
      "ends_at",
      "stock",
      "group_window_seconds",
      "per_user_limit",
      "payment_timeout_seconds",
    ],
  },
};

export const STATES = ["upcoming", "live", "ended", "cancelled"];

// Coupon templates and grant rules (docs/coupons.md). A template is upcoming before its
// claim window, live in it, ended after it or when a merchant ended it.
export const COUPONS = {
  base: "/api/coupons/admin/templates",
  items: "templates",
  states: ["upcoming", "live", "ended"],
  kinds: ["amount_off", "percent_off", "no_threshold"],
  validities: ["fixed", "relative"],
  scopes: ["any", "activities", "campaigns", "skus"],
  // What defines a template: a PATCH (while upcoming) may change any other field.
  fixed: ["kind", "validity", "claimable"],
  // The live figures of a template, as GET .../templates/{id} and .../live name them.
  figures: ["quantity", "remaining", "issued", "claimed", "granted", "available", "locked", "used", "expired", "revoked"],
  rules: "/api/coupons/admin/rules",
  ruleItems: "rules",
  triggers: ["any", "activity", "campaign"],
};
export const ORDER_STATES = ["pending_payment", "paid", "cancelled"];
export const PAGE_SIZE = 20;

export function kindOf(name) {
  const kind = KINDS[name];
  if (!kind) throw new Error(`unknown kind ${name}`);
  return kind;
}

export const paths = {
  list: (kind, query) => `${kindOf(kind).base}?${query}`,
  sale: (kind, id) => `${kindOf(kind).base}/${encodeURIComponent(id)}`,
  stock: (kind, id) => `${paths.sale(kind, id)}/stock`,
  end: (kind, id) => `${paths.sale(kind, id)}/end`,
  cancel: (kind, id) => `${paths.sale(kind, id)}/cancel`,
  audit: (kind, id) => `${paths.sale(kind, id)}/audit`,
  saleLive: (kind, id) => `${paths.sale(kind, id)}/live`,
  orders: (query) => `/api/orders/admin/orders?${query}`,
  order: (id) => `/api/orders/admin/orders/${encodeURIComponent(id)}`,
  refund: (transactionId) =>
    `/api/orders/admin/payments/${encodeURIComponent(transactionId)}/refund`,
  ordersLive: (kind, id) =>
    `/api/orders/admin/live?${new URLSearchParams({ source: kind, sale_id: String(id) })}`,
  coupons: (query) => `${COUPONS.base}?${query}`,
  coupon: (id) => `${COUPONS.base}/${encodeURIComponent(id)}`,
  couponQuantity: (id) => `${paths.coupon(id)}/quantity`,
  couponEnd: (id) => `${paths.coupon(id)}/end`,
  couponAudit: (id) => `${paths.coupon(id)}/audit`,
  couponLive: (id) => `${paths.coupon(id)}/live`,
  rules: (query) => `${COUPONS.rules}?${query}`,
  rule: (id) => `${COUPONS.rules}/${encodeURIComponent(id)}`,
  templates: "/api/notify/admin/templates",
  template: (kind) => `/api/notify/admin/templates/${encodeURIComponent(kind)}`,
  deliveries: "/api/notify/admin/deliveries",
  // The gateway's merged OpenAPI document (on the admin side: every operation).
  openapi: "/api/openapi.json",
};

// The array of a list answer: {"<items>": [...], "total", "limit", "offset"}.
export function itemsOf(body, key) {
  return Array.isArray(body?.[key]) ? body[key] : [];
}

export function stateOf(sale) {
  return sale.state ?? sale.status ?? "unknown";
}

const first = (...values) => values.find((v) => typeof v === "number");

// A reading of the sale's own stream (seckill or groupbuy) -> the board's figures.
// seckill: remaining, reservations, presses, sold_out_answers; groupbuy: remaining,
// groups_open, groups_completed, groups_failed, members. A figure absent is left as is.
export function saleFigures(raw) {
  return {
    remaining: first(raw.remaining),
    reserved_units: first(raw.reserved_units),
    presses: first(raw.presses),
    reservations: first(raw.reservations),
    sold_out: first(raw.sold_out_answers),
    groups_open: first(raw.groups_open),
    groups_completed: first(raw.groups_completed),
    groups_failed: first(raw.groups_failed),
    members: first(raw.members),
  };
}

// A reading of a coupon template's stream (or its `figures`) -> the figures shown, each
// under its own name.
export function couponFigures(raw) {
  return Object.fromEntries(COUPONS.figures.map((name) => [name, first(raw?.[name])]));
}

// A reading of the order stream: {"created", "pending_payment", "paid", "cancelled"}.
export function orderFigures(raw) {
  return {
    orders_created: first(raw.created),
    orders_pending: first(raw.pending_payment),
    orders_paid: first(raw.paid),
    orders_cancelled: first(raw.cancelled),
  };
}
