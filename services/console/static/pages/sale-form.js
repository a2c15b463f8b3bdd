// Create or edit a flash sale or a group-buy campaign. The server is the one judge of the
// input (the form is novalidate): a 400 names the field, shown next to it.

import { api } from "../api.js";
import { KINDS, kindOf, paths, stateOf } from "../contract.js";
import { h, showStatus, statusLine } from "../dom.js";
import { Fields, onSubmit } from "../form.js";

// name, label, input type (form.js), which kinds, create only
const FIELDS = [
  { name: "sku", label: "SKU", type: "text", only: "create" },
  { name: "title", label: "Title", type: "text" },
  { name: "price_cents", label: "Price (¥)", type: "money", kinds: ["seckill"] },
  { name: "group_price_cents", label: "Group price (¥)", type: "money", kinds: ["groupbuy"] },
  { name: "single_price_cents", label: "Single price (¥)", type: "money", kinds: ["groupbuy"] },
  { name: "group_size", label: "Group size", type: "int", kinds: ["groupbuy"], only: "create" },
  { name: "stock", label: "Stock", type: "int" },
  { name: "starts_at", label: "Starts", type: "time" },
  { name: "ends_at", label: "Ends", type: "time" },
  { name: "group_window_seconds", label: "Group window (s)", type: "int", kinds: ["groupbuy"] },
  { name: "per_user_limit", label: "Per-user limit", type: "int" },
  { name: "payment_timeout_seconds", label: "Payment timeout (s)", type: "int" },
  { name: "virtual_completion", label: "Complete with fewer members", type: "bool", kinds: ["groupbuy"], only: "create" },
  { name: "min_real_members", label: "Fewest real members", type: "int", kinds: ["groupbuy"], only: "create", optional: true },
];

const DEFAULTS = { per_user_limit: "1", payment_timeout_seconds: "900", group_window_seconds: "3600", group_size: "3" };

export async function saleFormPage({ root, params, match, signal }) {
  const editing = match.length === 2;
  const kindName = editing ? match[0] : KINDS[params.get("kind")] ? params.get("kind") : "seckill";
  const kind = kindOf(kindName);
  const id = editing ? match[1] : null;
  const sale = editing ? await api("GET", paths.sale(kindName, id), undefined, signal) : null;
  const fields = new Fields(
    FIELDS.filter(
      (f) => (!f.kinds || f.kinds.includes(kindName)) && (!editing || (f.only !== "create" && kind.editable.includes(f.name))),
    ),
    sale ?? {},
    DEFAULTS,
  );

  const status = statusLine();
  const submit = h("button", { type: "submit", class: "primary", id: "save-sale" }, editing ? "Save changes" : "Create");
  const form = h("form", { class: "card", id: "sale-form", novalidate: true, "data-kind": kindName }, fields.elements);
  form.append(h("div", { class: "actions" }, submit, h("a", { href: editing ? `#/sales/${kindName}/${id}` : `#/sales?kind=${kindName}` }, "Back")), status);
  const title = editing ? `Edit ${kind.label.toLowerCase()} #${id}` : `New ${kind.label.toLowerCase()}`;
  root.append(h("h1", {}, title), form);
  if (editing && stateOf(sale) !== "upcoming") {
    showStatus(status, `This sale is ${stateOf(sale)}: only an upcoming sale can be edited.`, "error");
  }

  onSubmit(form, {
    fields,
    submit,
    status,
    changedOnly: editing,
    send: (body) => (editing ? api("PATCH", paths.sale(kindName, id), body, signal) : api("POST", kind.base, body, signal)),
    done: (saved) => {
      location.hash = `#/sales/${kindName}/${saved?.id ?? id}`;
    },
  });
}
