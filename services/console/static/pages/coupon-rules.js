// Grant rules (下单返券): after every paid order of the trigger (any order, one flash
// sale's, one group-buy campaign's), one coupon of the rule's template. Listed, created,
// and turned off or on again.

import { api, mayChange } from "../api.js";
import { COUPONS, itemsOf, paths, stateOf } from "../contract.js";
import { termsInWords } from "../coupon-terms.js";
import { h, showStatus, statusLine } from "../dom.js";
import { Fields, onSubmit } from "../form.js";
import { dateTime } from "../format.js";
import { fetchPage, fillPager, listTable, offsetOf } from "../list.js";
import { couponTabs } from "./coupons.js";

const TRIGGER_LABELS = {
  any: "any paid order",
  activity: "a paid order of one flash sale",
  campaign: "a paid order of one group-buy campaign",
};

function triggerInWords(rule) {
  if (rule.trigger === "activity") return `paid order of flash sale #${rule.sale_id}`;
  if (rule.trigger === "campaign") return `paid order of group-buy campaign #${rule.sale_id}`;
  return "any paid order";
}

function listHash(offset) {
  return offset ? `#/coupons/rules?offset=${offset}` : "#/coupons/rules";
}

// The newest hundred templates: the names of those the rules grant, and those a new rule
// may grant (not ended).
async function newestTemplates(signal) {
  const query = new URLSearchParams({ limit: "100", offset: "0" });
  return itemsOf(await api("GET", paths.coupons(query), undefined, signal), COUPONS.items);
}

function templateLabel(t) {
  const words = termsInWords(t);
  return `#${t.id} ${t.name}${words ? ` (${words.zh})` : ""}`;
}

// created(rule) is called with the rule the server created.
function createForm(templates, signal, created) {
  const fields = new Fields([
    { name: "name", label: "Name", type: "text", hint: "e.g. “¥5 back after any order”." },
    { name: "trigger", label: "After", type: "select", choices: COUPONS.triggers.map((t) => [t, TRIGGER_LABELS[t]]) },
    {
      name: "sale_id",
      label: "Sale id",
      type: "int",
      when: (v) => v("trigger") !== "any",
      hint: "The activity id (flash sale) or campaign id (group buy).",
    },
    {
      name: "template_id",
      label: "Grants",
      type: "select",
      numeric: true,
      choices: templates.map((t) => [String(t.id), templateLabel(t)]),
      hint: templates.length ? "One coupon of this template per paid order." : "No template to grant yet: create one first.",
    },
  ]);
  const status = statusLine();
  const submit = h("button", { type: "submit", class: "primary", id: "save-rule" }, "Create rule");
  const form = h(
    "form",
    { class: "card", id: "rule-form", novalidate: true },
    h("h2", {}, "New grant rule"),
    fields.elements,
    h("div", { class: "actions" }, submit),
    status,
  );
  form.addEventListener("change", () => fields.refresh());
  onSubmit(form, {
    fields,
    submit,
    status,
    send: (body) => api("POST", COUPONS.rules, body, signal),
    done: async (rule) => {
      form.reset();
      fields.refresh();
      showStatus(status, `Rule #${rule?.id} created.`, "ok");
      await created(rule);
    },
  });
  return form;
}

export async function rulesPage({ root, params, signal }) {
  const offset = offsetOf(params);
  const status = statusLine();
  const { table, body } = listTable("rules-table", ["ID", "Name", "After", "Grants", "Active", "Created", ""]);
  const pager = h("div", { class: "pager" });
  const changes = mayChange();
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Coupons")),
    h("div", { class: "toolbar" }, couponTabs("rules")),
    table,
    pager,
    status,
  );

  function row(rule) {
    const toggle = changes
      ? h("button", { type: "button", class: "small", "data-action": rule.active ? "deactivate" : "activate" }, rule.active ? "Deactivate" : "Activate")
      : null;
    toggle?.addEventListener("click", async () => {
      toggle.disabled = true;
      showStatus(status, "Working…");
      try {
        await api("PATCH", paths.rule(rule.id), { active: !rule.active }, signal);
        await load();
        showStatus(status, `Rule #${rule.id} ${rule.active ? "deactivated" : "activated"}.`, "ok");
      } catch (error) {
        showStatus(status, error.text ?? String(error), "error");
        toggle.disabled = false;
      }
    });
    return h(
      "tr",
      { "data-rule-id": rule.id, "data-active": String(rule.active) },
      h("td", {}, rule.id),
      h("td", {}, rule.name),
      h("td", {}, triggerInWords(rule)),
      h("td", {}, h("a", { href: `#/coupons/${rule.template_id}` }, names.get(rule.template_id) ?? `template #${rule.template_id}`)),
      h("td", {}, h("span", { class: `badge ${rule.active ? "state-live" : ""}`, "data-rule-active": "" }, rule.active ? "active" : "off")),
      h("td", {}, dateTime(rule.created_at)),
      h("td", {}, toggle),
    );
  }

  async function load() {
    const { answer, items: rules } = await fetchPage({
      url: paths.rules,
      key: COUPONS.ruleItems,
      offset,
      status,
      signal,
      empty: "No grant rules yet.",
    });
    body.replaceChildren(...rules.map(row));
    pager.replaceChildren();
    fillPager(pager, { answer, count: rules.length, offset, hashAt: listHash });
  }

  const templates = await newestTemplates(signal);
  const names = new Map(templates.map((t) => [t.id, templateLabel(t)]));
  await load();
  if (changes) root.append(createForm(templates.filter((t) => stateOf(t) !== "ended"), signal, load));
}
