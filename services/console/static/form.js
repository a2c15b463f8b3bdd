// The forms of the console (sales, coupon templates, grant rules): inputs built from a
// list of field specs, read back into the API's JSON, and the server's refusal shown next
// to the field it names. The server is the one judge of the input (forms are novalidate);
// what the page says before sending is a hint, never a refusal.
//
// A spec: { name, label, type, choices, hint, optional, when }
//   type: text | int | money (yuan typed, cents sent) | time (datetime-local, RFC 3339
//         sent) | bool | select (choices: [[value, label], ...]; numeric: the value sent
//         as a number) | list (comma-separated, an array of strings sent)
//   hint: a line under the input
//   optional: left out of the body when empty
//   when(values): shown (and sent) only while true; values(name) reads another field
//   fixed (a Fields option): shown, not editable, never sent

import { ApiError } from "./api.js";
import { h, showStatus } from "./dom.js";
import { localToRfc3339, rfc3339ToLocal, toCents, yuan } from "./format.js";

function input(spec, value) {
  const id = `f-${spec.name}`;
  if (spec.type === "bool") {
    return h("input", { id, name: spec.name, type: "checkbox", checked: value === true });
  }
  if (spec.type === "select") {
    const el = h(
      "select",
      { id, name: spec.name },
      spec.choices.map(([v, label]) => h("option", { value: v }, label)),
    );
    // Nothing chosen yet: the first choice, as the browser shows it.
    if (value === undefined || value === null || value === "") el.selectedIndex = 0;
    else el.value = value;
    return el;
  }
  const attrs = { id, name: spec.name };
  if (spec.type === "time") Object.assign(attrs, { type: "datetime-local", step: "1" });
  else if (spec.type === "int") Object.assign(attrs, { type: "number", step: "1", inputmode: "numeric" });
  else if (spec.type === "money") Object.assign(attrs, { type: "text", inputmode: "decimal" });
  else attrs.type = "text";
  const el = h("input", attrs);
  el.value = value ?? "";
  return el;
}

// An API value -> what the input shows.
function shown(spec, value, defaults) {
  if (value === undefined || value === null) {
    const fallback = defaults[spec.name];
    return spec.type === "bool" ? fallback === true : (fallback ?? "");
  }
  if (spec.type === "money") return yuan(value);
  if (spec.type === "time") return rfc3339ToLocal(value);
  if (spec.type === "list") return Array.isArray(value) ? value.join(", ") : String(value);
  if (spec.type === "bool") return value;
  return String(value);
}

// What the input holds -> the API value. What cannot be converted is sent as typed, for
// the server to refuse with the field named.
function read(spec, el) {
  if (spec.type === "bool") return el.checked;
  const text = el.value.trim();
  if (spec.type === "money") return toCents(text);
  if (spec.type === "time") return localToRfc3339(text);
  if (spec.type === "int") return text === "" ? null : /^-?\d+$/.test(text) ? Number(text) : text;
  if (spec.type === "list") return text === "" ? [] : text.split(/[\s,，]+/).filter(Boolean);
  if (spec.type === "select" && spec.numeric) return text === "" ? null : /^\d+$/.test(text) ? Number(text) : text;
  return text;
}

export class Fields {
  // specs: the fields; values: the record being edited (or {}); defaults: for a new one;
  // fixed: names shown but not editable (never sent; other fields may depend on them).
  constructor(specs, values = {}, defaults = {}, fixed = []) {
    this.specs = specs;
    this.fixed = new Set(fixed);
    this.inputs = new Map();
    this.errors = new Map();
    this.rows = new Map();
    this.warnings = new Map();
    this.original = new Map();
    for (const spec of specs) {
      const el = input(spec, shown(spec, values?.[spec.name], defaults));
      const error = h("p", { class: "field-error", "data-error-for": spec.name, id: `e-${spec.name}`, hidden: true });
      el.setAttribute("aria-describedby", error.id);
      if (this.fixed.has(spec.name)) el.disabled = true;
      const hint = spec.hint ? h("p", { class: "field-hint", "data-hint-for": spec.name }, spec.hint) : null;
      const warning = h("p", { class: "field-warning", "data-warning-for": spec.name, hidden: true });
      const row = h(
        "div",
        { class: `field ${spec.type === "bool" ? "check" : ""}`, "data-field": spec.name },
        h("label", { for: el.id }, spec.label),
        el,
        hint,
        warning,
        error,
      );
      this.warnings.set(spec.name, warning);
      this.inputs.set(spec.name, el);
      this.errors.set(spec.name, error);
      this.rows.set(spec.name, row);
      this.original.set(spec.name, JSON.stringify(read(spec, el)));
    }
    this.refresh();
  }

  get elements() {
    return [...this.rows.values()];
  }

  value(name) {
    const spec = this.specs.find((s) => s.name === name);
    return read(spec, this.inputs.get(name));
  }

  visible(spec) {
    return !spec.when || spec.when((name) => this.value(name));
  }

  // Shows the fields whose `when` holds; call it after any input changed.
  refresh() {
    for (const spec of this.specs) this.rows.get(spec.name).hidden = !this.visible(spec);
  }

  // The JSON body: every shown field, or (changedOnly, for an edit) those that changed,
  // so that the audit log shows just them.
  body({ changedOnly = false } = {}) {
    const body = {};
    for (const spec of this.specs) {
      if (!this.visible(spec) || this.fixed.has(spec.name)) continue;
      const value = this.value(spec.name);
      if (spec.optional && (value === null || value === "")) continue;
      if (changedOnly && JSON.stringify(value) === this.original.get(spec.name)) continue;
      body[spec.name] = value;
    }
    return body;
  }

  // Hints before sending ([[name, text], ...]): shown next to their fields, sent anyway.
  warn(hints) {
    const texts = new Map(hints);
    for (const [name, warning] of this.warnings) {
      warning.textContent = texts.get(name) ?? "";
      warning.hidden = !texts.has(name);
    }
  }

  clearErrors() {
    for (const error of this.errors.values()) error.hidden = true;
    for (const el of this.inputs.values()) el.removeAttribute("aria-invalid");
  }

  // A refusal naming one of these fields is shown next to it (true); any other is not.
  // "scope_ids[2]" names scope_ids.
  showError(error) {
    const name = error instanceof ApiError && error.field ? String(error.field).replace(/[[.].*$/, "") : null;
    const spec = this.specs.find((s) => s.name === name);
    if (!spec || !this.visible(spec)) return false;
    const message = this.errors.get(name);
    message.textContent = error.code && error.code !== "invalid_request" ? `${error.message} (${error.code})` : error.message;
    message.hidden = false;
    this.inputs.get(name).setAttribute("aria-invalid", "true");
    this.inputs.get(name).focus();
    return true;
  }
}

// The submit of a form over `fields`: send(body) is the API call; its answer goes to
// done(answer). A refusal is shown next to its field, or in the status line.
export function onSubmit(form, { fields, submit, status, send, done, changedOnly = false }) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fields.clearErrors();
    const body = fields.body({ changedOnly });
    if (changedOnly && Object.keys(body).length === 0) {
      showStatus(status, "Nothing changed.");
      return;
    }
    submit.disabled = true;
    showStatus(status, "Saving…");
    try {
      const answer = await send(body);
      showStatus(status, "");
      await done(answer);
    } catch (error) {
      if (fields.showError(error)) showStatus(status, "Check the field marked above.", "error");
      else showStatus(status, error.text ?? String(error), "error");
    } finally {
      submit.disabled = false;
    }
  });
}
