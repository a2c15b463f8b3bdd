// Pieces the detail pages share (a sale, a coupon template): the facts list, the button
// that asks twice, the audit log, the actions and the "set the total" row.

import { api } from "./api.js";
import { h, showStatus } from "./dom.js";
import { compactJson, dateTime } from "./format.js";

// [key, label, format] rows of `record` as a <dl>; keys the record lacks are left out.
export function facts(record, rows) {
  return h(
    "dl",
    { class: "facts" },
    rows
      .filter(([key]) => key in record)
      .map(([key, label, fmt]) => [h("dt", {}, label), h("dd", { "data-fact": key }, fmt ? fmt(record[key], record) : String(record[key]))]),
  );
}

// A button that asks again before doing something that cannot be undone.
export function confirmed(label, question, action, name) {
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

// The audit log of a service's admin API ({"entries": [...]}, newest first), as a table.
export function auditLog(entries) {
  return [
    h("h2", {}, "Audit log"),
    entries.length === 0
      ? h("p", { class: "muted" }, "No entries.")
      : h(
          "table",
          { class: "list", id: "audit-table" },
          h("thead", {}, h("tr", {}, ["When", "Who", "What", "Before", "After"].map((t) => h("th", {}, t)))),
          h(
            "tbody",
            {},
            entries.map((entry) =>
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
  ];
}

// The actions of a detail page: act(method, path, body, done) calls the API, says `done`
// or the refusal in `status`, then reloads the page's record with reload().
export function actor(status, signal, reload) {
  return async (method, path, body, done) => {
    showStatus(status, "Working…");
    try {
      await api(method, path, body, signal);
      showStatus(status, done, "ok");
    } catch (error) {
      showStatus(status, error.text ?? String(error), "error");
    }
    await reload();
  };
}

// A number input and its button: "Total stock [120] (Set stock)". onSet(value) gets the
// number typed, or the text as typed for the server to refuse.
export function setTotal({ id, label, value, button, action, onSet, disabled = false }) {
  const input = h("input", { type: "number", id, min: "0", step: "1", "aria-label": label });
  input.value = String(value ?? "");
  const set = h("button", { type: "button", "data-action": action, disabled }, button);
  set.addEventListener("click", () => {
    const text = input.value.trim();
    onSet(/^\d+$/.test(text) ? Number(text) : input.value);
  });
  return h("div", { class: "row" }, h("label", { class: "inline", for: id }, `${label} `), input, set);
}
