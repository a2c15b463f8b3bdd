// Create or edit (while upcoming) a coupon template. The fields follow the choices made:
// the kind decides which amounts are asked for, the validity kind which dates, a claimable
// template has a claim window, a scope other than "any" its ids. The preview and the
// hints say what the terms mean and what the server will refuse; the server judges, and
// its refusal shows next to the field it names.

import { api } from "../api.js";
import { COUPONS, paths, stateOf } from "../contract.js";
import { termsHints, termsInWords } from "../coupon-terms.js";
import { h, showStatus, statusLine } from "../dom.js";
import { Fields, onSubmit } from "../form.js";

const KIND_LABELS = {
  amount_off: "满减: an amount off, above a threshold",
  percent_off: "折扣: a percentage off, capped",
  no_threshold: "无门槛: an amount off any order",
};
const SCOPE_LABELS = {
  any: "any order",
  activities: "flash sales (activity ids)",
  campaigns: "group-buy campaigns (campaign ids)",
  skus: "SKUs",
};
const SCOPE_HINTS = {
  activities: "Activity ids, separated by commas.",
  campaigns: "Campaign ids, separated by commas.",
  skus: "SKUs, separated by commas.",
};

const is = (name, ...values) => (value) => values.includes(value(name));

const GROUPS = [
  [
    "Terms",
    [
      { name: "name", label: "Name", type: "text", hint: "What shoppers see, e.g. “New customer ¥20”." },
      { name: "kind", label: "Kind", type: "select", choices: COUPONS.kinds.map((k) => [k, KIND_LABELS[k]]) },
      {
        name: "threshold_cents",
        label: "Threshold (¥)",
        type: "money",
        optional: true,
        when: is("kind", "amount_off", "percent_off"),
        hint: "The order must reach this amount (满). For 满减, more than the amount off.",
      },
      { name: "amount_off_cents", label: "Amount off (¥)", type: "money", when: is("kind", "amount_off", "no_threshold") },
      {
        name: "percent_off",
        label: "Percent off",
        type: "int",
        when: is("kind", "percent_off"),
        hint: "1 to 99: 15 takes 15% off (8.5 折).",
      },
      { name: "max_discount_cents", label: "At most (¥)", type: "money", when: is("kind", "percent_off") },
    ],
  ],
  [
    "Validity",
    [
      {
        name: "validity",
        label: "Valid",
        type: "select",
        choices: [
          ["fixed", "between two dates"],
          ["relative", "for some days from issue"],
        ],
      },
      { name: "valid_from", label: "Valid from", type: "time", when: is("validity", "fixed") },
      { name: "valid_until", label: "Valid until", type: "time", when: is("validity", "fixed") },
      {
        name: "valid_days",
        label: "Days valid",
        type: "int",
        when: is("validity", "relative"),
        hint: "Counted from the moment each coupon is claimed or granted.",
      },
    ],
  ],
  [
    "Issue",
    [
      { name: "quantity", label: "Quantity", type: "int", hint: "Coupons issued in all, claims and grants together." },
      { name: "per_user_limit", label: "Claims per shopper", type: "int", hint: "Grants do not count against it." },
      {
        name: "claimable",
        label: "Shoppers may claim it (抢券)",
        type: "bool",
        hint: "Off: only granted by rules after a paid order (下单返券).",
      },
      { name: "claim_starts_at", label: "Claims open", type: "time", when: (v) => v("claimable") === true },
      { name: "claim_ends_at", label: "Claims close", type: "time", when: (v) => v("claimable") === true },
    ],
  ],
  [
    "Where it applies",
    [
      { name: "scope", label: "On", type: "select", choices: COUPONS.scopes.map((s) => [s, SCOPE_LABELS[s]]) },
      { name: "scope_ids", label: "Ids", type: "list", when: (v) => v("scope") !== "any", hint: "Separated by commas." },
      {
        name: "usable_on_flash_sales",
        label: "Also on flash-sale prices",
        type: "bool",
        hint: "A flash-sale order is already at the sale price; group-buy orders follow the scope alone.",
      },
    ],
  ],
];

const DEFAULTS = {
  kind: "amount_off",
  validity: "fixed",
  per_user_limit: "1",
  claimable: true,
  scope: "any",
  usable_on_flash_sales: false,
};

export async function couponFormPage({ root, match, signal }) {
  const editing = match.length === 1;
  const id = editing ? match[0] : null;
  const template = editing ? await api("GET", paths.coupon(id), undefined, signal) : null;
  const specs = GROUPS.flatMap(([, group]) => group);
  const fields = new Fields(specs, template ?? {}, DEFAULTS, editing ? COUPONS.fixed : []);

  const preview = h("p", { class: "terms-preview", "data-terms-preview": "", "aria-live": "polite" });
  const status = statusLine();
  const submit = h("button", { type: "submit", class: "primary", id: "save-coupon" }, editing ? "Save changes" : "Create");
  const form = h(
    "form",
    { class: "card", id: "coupon-form", novalidate: true },
    preview,
    GROUPS.map(([legend, group]) => {
      const rows = group.filter((f) => fields.rows.has(f.name)).map((f) => fields.rows.get(f.name));
      return rows.length ? h("fieldset", {}, h("legend", {}, legend), rows) : null;
    }),
    h("div", { class: "actions" }, submit, h("a", { href: editing ? `#/coupons/${id}` : "#/coupons" }, "Back")),
    status,
  );
  root.append(h("h1", {}, editing ? `Edit coupon template #${id}` : "New coupon template"), form);
  if (editing) {
    form.prepend(h("p", { class: "muted" }, "Kind, validity and claimability are fixed: another of those is another template."));
  }

  // The terms as typed, in words, and the hints: on every change.
  const update = () => {
    fields.refresh();
    const typed = { ...(template ?? {}), ...fields.body() };
    const words = termsInWords(typed);
    preview.textContent = words ? `${words.zh} · ${words.en}` : "Fill in the terms to see them in words.";
    fields.warn(termsHints(typed));
    const idsHint = fields.rows.get("scope_ids")?.querySelector(".field-hint");
    if (idsHint && SCOPE_HINTS[typed.scope]) idsHint.textContent = SCOPE_HINTS[typed.scope];
  };
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();

  if (editing && stateOf(template) !== "upcoming") {
    showStatus(status, `This template is ${stateOf(template)}: only an upcoming template can be edited.`, "error");
  }
  onSubmit(form, {
    fields,
    submit,
    status,
    changedOnly: editing,
    send: (body) => {
      if (!editing) return api("POST", COUPONS.base, body, signal);
      // A new scope without its ids would drop the old ones: send the ids shown with it.
      if ("scope" in body && body.scope !== "any" && !("scope_ids" in body)) body.scope_ids = fields.value("scope_ids");
      return api("PATCH", paths.coupon(id), body, signal);
    },
    done: (saved) => {
      location.hash = `#/coupons/${saved?.id ?? id}`;
    },
  });
}
