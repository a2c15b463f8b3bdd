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
  templates: "/api/notify/admin/templates",
  template: (kind) => `/api/notify/admin/templates/${encodeURIComponent(kind)}`,
  deliveries: "/api/notify/admin/deliveries",
};

// The array of a list answer: {"<items>": [...], "total", "limit", "offset"}.
export function itemsOf(body, key) {
  if (Array.isArray(body?.[key])) return body[key];
  const arrays = Object.values(body ?? {}).filter(Array.isArray);
  return arrays.length === 1 ? arrays[0] : [];
}

export function stateOf(sale) {
  return sale.state ?? sale.status ?? "unknown";
}

const first = (...values) => values.find((v) => typeof v === "number");

// A reading of the sale's own stream (seckill or groupbuy) -> the board's figures.
export function saleFigures(raw) {
  const groups = raw.groups ?? {};
  return {
    remaining: first(raw.remaining_stock, raw.remaining),
    presses: first(raw.presses),
    reservations: first(raw.reservations, raw.reserved),
    sold_out: first(raw.sold_out, raw.sold_out_answers),
    groups_open: first(raw.groups_open, groups.open),
    groups_completed: first(raw.groups_completed, groups.completed),
    groups_failed: first(raw.groups_failed, groups.failed),
  };
}

// A reading of the order stream (order counts of one sale by state) -> the board's.
export function orderFigures(raw) {
  const counts = raw.counts ?? raw.by_state ?? raw.states ?? raw;
  const paid = first(counts.paid) ?? 0;
  const cancelled = first(counts.cancelled) ?? 0;
  const pending = first(counts.pending_payment) ?? 0;
  return {
    orders_created: first(raw.created, raw.total, counts.total) ?? pending + paid + cancelled,
    orders_pending: pending,
    orders_paid: paid,
    orders_cancelled: cancelled,
  };
}
