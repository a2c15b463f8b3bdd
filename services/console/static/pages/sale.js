// One sale: what it is, its figures, what a merchant may do to it now, its audit log.

import { api } from "../api.js";
import { itemsOf, kindOf, paths, stateOf } from "../contract.js";
import { append, clear, h, showStatus, statusLine } from "../dom.js";
import { compactJson, dateTime, money } from "../format.js";
import { stateBadge } from "./sales.js";

const SHOWN = [
  ["sku", "SKU"],
  ["price_cents", "Price", money],
  ["group_price_cents", "Group price", money],
  ["single_price_cents", "Single price", money],
  ["group_size", "Group size"],
  ["stock", "Stock"],
  ["remaining_stock", "Remaining"],
  ["starts_at", "Starts", dateTime],
  ["ends_at", "Ends", dateTime],
  ["group_window_seconds", "Group window (s)"],
  ["per_user_limit", "Per-user limit"],
  ["payment_timeout_seconds", "Payment timeout (s)"],
  ["virtual_completion", "Virtual completion"],
  ["ended_early", "Ended early"],
];

// A button that asks again before doing something that cannot be undone.
function confirmed(label, question, action, name) {
  const wrap = h("span", { class: "confirm" });
  const ask = h("button", { type: "button", class: "danger", "data-action": name }, label);
  const yes = h("button", { type: "button", class: "danger", "data-action": `${name}-confirm` }, `Yes, ${label.toLowerCase()}`);
  const no = h("button", { type: "button", "data-action": `${name}-abort` }, "No");
  const prompt = h("span", { class: "confirm-question", hidden: true }, question, " ", yes, " ", no);
  ask.addEventListener("click", () => {
    ask.hidden = true;
    prompt.hidden = false;
  });
  no.addEventListener("click", () => {
    ask.hidden = false;
    prompt.hidden = true;
  });
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    await action();
  });
  wrap.append(ask, prompt);
  return wrap;
}

export async function salePage({ root, match, signal }) {
  const [kindName, id] = match;
  const kind = kindOf(kindName);
  const status = statusLine();
  const details = h("div", { class: "card" });
  const actions = h("div", { class: "card actions-card" });
  const audit = h("div", { class: "card" });
  root.append(details, actions, status, audit);

  async function act(method, path, body, done) {
    showStatus(status, "Working…");
    try {
      await api(method, path, body, signal);
      showStatus(status, done, "ok");
    } catch (error) {
      showStatus(status, error.text ?? String(error), "error");
    }
    await load();
  }

  async function load() {
    const sale = await api("GET", paths.sale(kindName, id), undefined, signal);
    const state = stateOf(sale);
    append(clear(details), [
      h(
        "div",
        { class: "page-head" },
        h("h1", {}, `${kind.label} #${sale.id}: `, h("span", { "data-sale-title": "" }, sale.title), " ", stateBadge(state)),
        h("a", { class: "button primary", href: `#/sales/${kindName}/${id}/board`, id: "open-board" }, "Live board"),
      ),
      h(
        "dl",
        { class: "facts" },
        SHOWN.filter(([key]) => key in sale).map(([key, label, fmt]) => [
          h("dt", {}, label),
          h("dd", { "data-fact": key }, fmt ? fmt(sale[key]) : String(sale[key])),
        ]),
      ),
      sale.figures ? h("p", { class: "muted" }, "Figures: ", compactJson(sale.figures)) : null,
    ]);

    const open = state === "upcoming" || state === "live";
    const stock = h("input", { type: "number", id: "new-stock", min: "0", step: "1", "aria-label": "New total stock" });
    stock.value = String(sale.stock);
    const setStock = h("button", { type: "button", "data-action": "set-stock", disabled: !open }, "Set stock");
    setStock.addEventListener("click", () => {
      const value = /^\d+$/.test(stock.value.trim()) ? Number(stock.value.trim()) : stock.value;
      act("PUT", paths.stock(kindName, id), { stock: value }, "Stock set.");
    });
    append(clear(actions), [
      h("h2", {}, "Actions"),
      h(
        "div",
        { class: "row" },
        state === "upcoming"
          ? h("a", { class: "button", href: `#/sales/${kindName}/${id}/edit`, "data-action": "edit" }, "Edit")
          : h("span", { class: "muted" }, "Editing closes when the sale starts."),
      ),
      open ? h("div", { class: "row" }, h("label", { class: "inline", for: "new-stock" }, "Total stock "), stock, setStock) : null,
      h(
        "div",
        { class: "row" },
        state === "live"
          ? confirmed("End now", "End this sale now? Presses are refused at once.", () => act("POST", paths.end(kindName, id), undefined, "The sale has ended."), "end")
          : null,
        open
          ? confirmed("Cancel sale", "Cancel this sale? Presses are refused at once.", () => act("POST", paths.cancel(kindName, id), undefined, "The sale is cancelled."), "cancel")
          : h("span", { class: "muted" }, `This sale is ${state}.`),
      ),
    ]);

    const trail = itemsOf(await api("GET", paths.audit(kindName, id), undefined, signal), "entries");
    clear(audit).append(
      h("h2", {}, "Audit log"),
      trail.length === 0
        ? h("p", { class: "muted" }, "No entries.")
        : h(
            "table",
            { class: "list", id: "audit-table" },
            h("thead", {}, h("tr", {}, ["When", "Who", "What", "Before", "After"].map((t) => h("th", {}, t)))),
            h(
              "tbody",
              {},
              trail.map((entry) =>
                h(
                  "tr",
                  { "data-audit-action": entry.action },
                  h("td", {}, dateTime(entry.at)),
                  h("td", {}, entry.actor),
                  h("td", {}, entry.action),
                  h("td", { class: "json" }, compactJson(entry.before)),
                  h("td", { class: "json" }, compactJson(entry.after)),
                ),
              ),
            ),
          ),
    );
  }

  await load();
}
