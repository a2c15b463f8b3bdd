// Notification templates: the provider template id each message kind is sent with, and
// how deliveries are faring.

import { api } from "../api.js";
import { itemsOf, paths } from "../contract.js";
import { h, showStatus, statusLine } from "../dom.js";
import { dateTime } from "../format.js";

const TITLES = { counts: "By state", by_kind: "By kind" };

// {"a": 1, "b": {"x": 2}} -> rows of a table; nested objects become their own tables.
function countsTable(title, counts) {
  const flat = Object.entries(counts ?? {}).filter(([, v]) => typeof v === "number");
  const nested = Object.entries(counts ?? {}).filter(([, v]) => v && typeof v === "object" && !Array.isArray(v));
  return h(
    "div",
    { class: "counts" },
    flat.length
      ? h(
          "table",
          { class: "list compact", "data-counts": title },
          h("caption", {}, title),
          h("tbody", {}, flat.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", { class: "num", "data-count": k }, String(v))))),
        )
      : null,
    nested.map(([k, v]) => countsTable(TITLES[k] ?? `${title ? `${title} · ` : ""}${k}`, v)),
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
  deliveries.append(countsTable("", counts));
}
