// Order search, and one order with its history, its payments and the refund action.

import { api } from "../api.js";
import { ORDER_STATES, PAGE_SIZE, itemsOf, paths } from "../contract.js";
import { clear, h, showStatus, statusLine } from "../dom.js";
import { compactJson, dateTime, money } from "../format.js";

const FILTERS = ["order_id", "user_id", "source", "sale_id", "state"];

export async function ordersPage({ root, params, signal }) {
  const inputs = {
    order_id: h("input", { id: "q-order_id", name: "order_id", type: "text" }),
    user_id: h("input", { id: "q-user_id", name: "user_id", type: "text" }),
    source: h(
      "select",
      { id: "q-source", name: "source" },
      h("option", { value: "" }, "any"),
      ["seckill", "groupbuy"].map((s) => h("option", { value: s }, s)),
    ),
    sale_id: h("input", { id: "q-sale_id", name: "sale_id", type: "text", inputmode: "numeric" }),
    state: h(
      "select",
      { id: "q-state", name: "state" },
      h("option", { value: "" }, "any"),
      ORDER_STATES.map((s) => h("option", { value: s }, s)),
    ),
  };
  for (const name of FILTERS) inputs[name].value = params.get(name) ?? "";
  const labels = { order_id: "Order ID", user_id: "User ID", source: "Source", sale_id: "Sale ID", state: "State" };
  const errors = new Map(FILTERS.map((n) => [n, h("p", { class: "field-error", "data-error-for": n, hidden: true })]));
  const form = h(
    "form",
    { class: "card search", id: "order-search", novalidate: true },
    FILTERS.map((n) => h("div", { class: "field", "data-field": n }, h("label", { for: `q-${n}` }, labels[n]), inputs[n], errors.get(n))),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "search-orders" }, "Search")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    for (const n of FILTERS) if (inputs[n].value.trim()) q.set(n, inputs[n].value.trim());
    const hash = `#/orders?${q}`;
    if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else location.hash = hash;
  });
  const status = statusLine();
  const results = h("div", { id: "order-results" });
  root.append(h("h1", {}, "Orders"), form, status, results);

  if (!FILTERS.some((n) => params.get(n))) {
    showStatus(status, "Search by order, user, sale or state.");
    return;
  }
  const query = new URLSearchParams({ limit: String(PAGE_SIZE), offset: params.get("offset") ?? "0" });
  for (const n of FILTERS) if (params.get(n)) query.set(n, params.get(n));
  showStatus(status, "Searching…");
  let answer;
  try {
    answer = await api("GET", paths.orders(query), undefined, signal);
  } catch (error) {
    if (error.field && errors.has(error.field)) {
      errors.get(error.field).textContent = error.message;
      errors.get(error.field).hidden = false;
    }
    showStatus(status, error.text ?? String(error), "error");
    return;
  }
  const orders = itemsOf(answer, "orders");
  showStatus(status, `${answer?.total ?? orders.length} found.`);
  results.append(
    h(
      "table",
      { class: "list", id: "orders-table" },
      h("thead", {}, h("tr", {}, ["Order", "User", "Source", "Sale", "State", "Amount", "Created"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        orders.map((o) =>
          h(
            "tr",
            { "data-order-id": o.id },
            h("td", {}, h("a", { href: `#/orders/${encodeURIComponent(o.id)}` }, o.id)),
            h("td", {}, o.user_id ?? "–"),
            h("td", {}, o.source ?? "–"),
            h("td", {}, o.activity_id ?? "–"),
            h("td", {}, h("span", { class: `badge order-${o.state}` }, o.state)),
            h("td", { class: "num" }, money(o.amount_cents)),
            h("td", {}, dateTime(o.created_at)),
          ),
        ),
      ),
    ),
  );
}

export async function orderPage({ root, match, signal }) {
  const [id] = match;
  const status = statusLine();
  const body = h("div");
  root.append(h("p", {}, h("a", { href: "#/orders" }, "‹ Orders")), body, status);

  async function load() {
    const order = await api("GET", paths.order(id), undefined, signal);
    const facts = Object.entries(order).filter(([, v]) => v === null || typeof v !== "object");
    const history = Array.isArray(order.history) ? order.history : [];
    const payments = Array.isArray(order.payments) ? order.payments : [];
    clear(body).append(
      h("h1", {}, `Order ${order.id} `, h("span", { class: `badge order-${order.state}`, "data-order-state": "" }, order.state)),
      h(
        "dl",
        { class: "facts card" },
        facts.map(([k, v]) => [h("dt", {}, k), h("dd", { "data-fact": k }, k.endsWith("_at") ? dateTime(v) : k.endsWith("_cents") ? money(v) : String(v ?? "–"))]),
      ),
      h("h2", {}, "History"),
      h(
        "ol",
        { class: "history card", id: "order-history" },
        history.length === 0 ? h("li", { class: "muted" }, "No history.") : null,
        history.map((step) =>
          h(
            "li",
            { "data-history": step.event ?? "" },
            h("time", {}, dateTime(step.at)),
            " ",
            h("strong", {}, step.event ?? "?"),
            step.reason ? ` (${step.reason})` : "",
            extra(step),
          ),
        ),
      ),
      h("h2", {}, "Payments"),
      payments.length === 0
        ? h("p", { class: "muted" }, "No payments.")
        : h(
            "table",
            { class: "list", id: "payments-table" },
            h("thead", {}, h("tr", {}, ["Transaction", "Outcome", "Refund", "Amount", "Received", ""].map((t) => h("th", {}, t)))),
            h("tbody", {}, payments.map((p) => paymentRow(p))),
          ),
    );
  }

  // A payment whose refund the service requested (refund_state "requested") is marked
  // refunded once the provider confirmed it, with the provider's refund reference.
  function paymentRow(payment) {
    let action = payment.refund_id ?? null;
    if (payment.refund_state === "requested") {
      const refundId = h("input", {
        type: "text",
        placeholder: "provider refund reference",
        "aria-label": "Provider refund reference",
        "data-refund-id": "",
      });
      const mark = h("button", { type: "button", "data-action": "mark-refunded" }, "Mark refunded");
      mark.addEventListener("click", async () => {
        mark.disabled = true;
        showStatus(status, "Working…");
        try {
          await api("POST", paths.refund(payment.transaction_id), { refund_id: refundId.value.trim() }, signal);
          showStatus(status, "Marked refunded.", "ok");
          await load();
        } catch (error) {
          showStatus(status, error.text ?? String(error), "error");
          mark.disabled = false;
        }
      });
      action = h("span", { class: "row" }, refundId, mark);
    }
    return h(
      "tr",
      { "data-transaction-id": payment.transaction_id },
      h("td", {}, payment.transaction_id),
      h("td", {}, payment.outcome ?? "–"),
      h("td", { "data-refund-state": payment.refund_state }, payment.refund_state ?? "–", payment.refund_reason ? ` (${payment.refund_reason})` : ""),
      h("td", { class: "num" }, money(payment.amount_cents)),
      h("td", {}, dateTime(payment.received_at)),
      h("td", {}, action),
    );
  }

  await load();
}

function extra(step) {
  const rest = Object.fromEntries(Object.entries(step).filter(([k]) => !["at", "event", "reason"].includes(k)));
  return Object.keys(rest).length ? h("span", { class: "muted" }, " ", compactJson(rest)) : null;
}
