// One sale: what it is, its figures, what a merchant may do to it now, its audit log.

import { api } from "../api.js";
import { itemsOf, kindOf, paths, stateOf } from "../contract.js";
import { append, clear, h, statusLine } from "../dom.js";
import { compactJson, dateTime, money } from "../format.js";
import { stateBadge } from "../list.js";
import { actor, auditLog, confirmed, facts, setTotal } from "../widgets.js";

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

export async function salePage({ root, match, signal }) {
  const [kindName, id] = match;
  const kind = kindOf(kindName);
  const status = statusLine();
  const details = h("div", { class: "card" });
  const actions = h("div", { class: "card actions-card" });
  const audit = h("div", { class: "card" });
  root.append(details, actions, status, audit);

  const act = actor(status, signal, () => load());

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
      facts(sale, SHOWN),
      sale.figures ? h("p", { class: "muted" }, "Figures: ", compactJson(sale.figures)) : null,
    ]);

    const open = state === "upcoming" || state === "live";
    append(clear(actions), [
      h("h2", {}, "Actions"),
      h(
        "div",
        { class: "row" },
        state === "upcoming"
          ? h("a", { class: "button", href: `#/sales/${kindName}/${id}/edit`, "data-action": "edit" }, "Edit")
          : h("span", { class: "muted" }, "Editing closes when the sale starts."),
      ),
      open
        ? setTotal({
            id: "new-stock",
            label: "Total stock",
            value: sale.stock,
            button: "Set stock",
            action: "set-stock",
            onSet: (stock) => act("PUT", paths.stock(kindName, id), { stock }, "Stock set."),
          })
        : null,
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
    append(clear(audit), auditLog(trail));
  }

  await load();
}
