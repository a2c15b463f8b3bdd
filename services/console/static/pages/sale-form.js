// Create or edit a flash sale or a group-buy campaign. The server is the one judge of the
// input (the form is novalidate): a 400 names the field, shown next to it.

import { ApiError, api } from "../api.js";
import { KINDS, kindOf, paths, stateOf } from "../contract.js";
import { h, showStatus, statusLine } from "../dom.js";
import { localToRfc3339, rfc3339ToLocal, toCents, yuan } from "../format.js";

// name, label, input type, how the value is sent, which kinds, create only
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

function input(field, value) {
  const id = `f-${field.name}`;
  if (field.type === "bool") {
    return h("input", { id, name: field.name, type: "checkbox", checked: value === true });
  }
  const attrs = { id, name: field.name };
  if (field.type === "time") Object.assign(attrs, { type: "datetime-local", step: "1" });
  else if (field.type === "int") Object.assign(attrs, { type: "number", step: "1", inputmode: "numeric" });
  else if (field.type === "money") Object.assign(attrs, { type: "text", inputmode: "decimal" });
  else attrs.type = "text";
  const el = h("input", attrs);
  el.value = value ?? "";
  return el;
}

function shown(field, value) {
  if (value === undefined || value === null) return field.type === "bool" ? false : (DEFAULTS[field.name] ?? "");
  if (field.type === "money") return yuan(value);
  if (field.type === "time") return rfc3339ToLocal(value);
  if (field.type === "bool") return value;
  return String(value);
}

function read(field, el) {
  if (field.type === "bool") return el.checked;
  const text = el.value.trim();
  if (field.type === "money") return toCents(text);
  if (field.type === "time") return localToRfc3339(text);
  if (field.type === "int") return text === "" ? null : /^-?\d+$/.test(text) ? Number(text) : text;
  return text;
}

export async function saleFormPage({ root, params, match, signal }) {
  const editing = match.length === 2;
  const kindName = editing ? match[0] : KINDS[params.get("kind")] ? params.get("kind") : "seckill";
  const kind = kindOf(kindName);
  const id = editing ? match[1] : null;
  const sale = editing ? await api("GET", paths.sale(kindName, id), undefined, signal) : null;
  const fields = FIELDS.filter(
    (f) => (!f.kinds || f.kinds.includes(kindName)) && (!editing || (f.only !== "create" && kind.editable.includes(f.name))),
  );

  const inputs = new Map();
  const errors = new Map();
  const original = new Map();
  const status = statusLine();
  const submit = h("button", { type: "submit", class: "primary", id: "save-sale" }, editing ? "Save changes" : "Create");
  const form = h("form", { class: "card", id: "sale-form", novalidate: true, "data-kind": kindName });
  for (const field of fields) {
    const el = input(field, shown(field, sale?.[field.name]));
    const error = h("p", { class: "field-error", "data-error-for": field.name, id: `e-${field.name}`, hidden: true });
    el.setAttribute("aria-describedby", error.id);
    inputs.set(field.name, el);
    original.set(field.name, JSON.stringify(read(field, el)));
    errors.set(field.name, error);
    form.append(
      h(
        "div",
        { class: `field ${field.type === "bool" ? "check" : ""}`, "data-field": field.name },
        h("label", { for: el.id }, field.label),
        el,
        error,
      ),
    );
  }
  form.append(h("div", { class: "actions" }, submit, h("a", { href: editing ? `#/sales/${kindName}/${id}` : `#/sales?kind=${kindName}` }, "Back")), status);
  const title = editing ? `Edit ${kind.label.toLowerCase()} #${id}` : `New ${kind.label.toLowerCase()}`;
  root.append(h("h1", {}, title), form);
  if (editing && stateOf(sale) !== "upcoming") {
    showStatus(status, `This sale is ${stateOf(sale)}: only an upcoming sale can be edited.`, "error");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const error of errors.values()) error.hidden = true;
    for (const el of inputs.values()) el.removeAttribute("aria-invalid");
    const body = {};
    for (const field of fields) {
      const value = read(field, inputs.get(field.name));
      if (field.optional && (value === null || value === "")) continue;
      // An edit sends only what changed: the audit log then shows just that.
      if (editing && JSON.stringify(value) === original.get(field.name)) continue;
      body[field.name] = value;
    }
    if (editing && Object.keys(body).length === 0) {
      showStatus(status, "Nothing changed.");
      return;
    }
    submit.disabled = true;
    showStatus(status, "Saving…");
    try {
      const saved = editing
        ? await api("PATCH", paths.sale(kindName, id), body, signal)
        : await api("POST", kind.base, body, signal);
      location.hash = `#/sales/${kindName}/${saved?.id ?? id}`;
    } catch (error) {
      const fieldError = error instanceof ApiError && error.field ? errors.get(error.field) : null;
      if (fieldError) {
        fieldError.textContent = error.message;
        fieldError.hidden = false;
        inputs.get(error.field).setAttribute("aria-invalid", "true");
        inputs.get(error.field).focus();
        showStatus(status, "Check the field marked above.", "error");
      } else {
        showStatus(status, error.text ?? String(error), "error");
      }
    } finally {
      submit.disabled = false;
    }
  });
}
