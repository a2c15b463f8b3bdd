// Notification templates: the provider template id each message kind is sent with, and
// how deliveries are faring.

import { api } from "../api.js";
import { itemsOf, paths } from "../contract.js";
import { h, showStatus, statusLine } from "../dom.js";
import { dateTime } from "../format.js";

// {"counts": {state: n}, "by_kind": {kind: {state: n}}} -> one row of totals, then one
// row per kind, a column per state.
function deliveriesTable(answer) {
  const totals = answer?.counts ?? {};
  const byKind = answer?.by_kind ?? {};
  const states = Object.keys(totals);
  const row = (label, counts, attrs) =>
    h("tr", attrs, h("th", {}, label), states.map((st) => h("td", { class: "num", "data-count": st }, String(counts?.[st] ?? 0))));
  return h(
    "table",
    { class: "list", id: "deliveries-table" },
    h("thead", {}, h("tr", {}, h("th", {}, ""), states.map((st) => h("th", {}, st)))),
    h(
      "tbody",
      {},
      row("all kinds", totals, { "data-kind": "", class: "total" }),
      Object.entries(byKind).map(([kind, counts]) => row(kind, counts, { "data-kind": kind })),
    ),
  );
}

function origin(template) {
  return template.source === "set"
    ? `${template.updated_by ?? "?"}, ${dateTime(template.updated_at)}`
    : "default (NOTIFY_TEMPLATE_IDS)";
}

export async function templatesPage({ root, signal }) {
  const status = statusLine();
  const list = h("tbody");
  const deliveries = h("div", { class: "card", id: "deliveries" }, h("h2", {}, "Deliveries"));
  root.append(
    h("h1", {}, "Notification templates"),
    h(
      "table",
      { class: "list", id: "templates-table" },
      h("thead", {}, h("tr", {}, ["Message kind", "Provider template id", "", "Set by"].map((t) => h("th", {}, t)))),
      list,
    ),
    status,
    deliveries,
  );
  const answer = await api("GET", paths.templates, undefined, signal);
  for (const template of itemsOf(answer, "templates")) {
    const kind = template.kind;
    const value = h("input", { type: "text", "aria-label": `Provider template id of ${kind}`, "data-template-input": kind });
    value.value = template.provider_template_id ?? "";
    const save = h("button", { type: "button", "data-action": "save-template" }, "Save");
    const setBy = h("td", { class: "muted" }, origin(template));
    save.addEventListener("click", async () => {
      save.disabled = true;
      try {
        const saved = await api("PUT", paths.template(kind), { provider_template_id: value.value.trim() }, signal);
        showStatus(status, `Saved the template id of ${kind}.`, "ok");
        setBy.textContent = origin(saved);
      } catch (error) {
        showStatus(status, error.text ?? String(error), "error");
      } finally {
        save.disabled = false;
      }
    });
    list.append(h("tr", { "data-template": kind }, h("td", {}, kind), h("td", {}, value), h("td", {}, save), setBy));
  }
  const counts = await api("GET", paths.deliveries, undefined, signal);
  deliveries.append(deliveriesTable(counts));
}
