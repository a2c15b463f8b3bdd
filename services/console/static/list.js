// The pieces of a paged list page (sales, coupon templates, grant rules): fetching a
// page, the state badge, the state filter and the pager under the table.

import { api } from "./api.js";
import { itemsOf, PAGE_SIZE } from "./contract.js";
import { append, h, showStatus } from "./dom.js";

export function stateBadge(state) {
  return h("span", { class: `badge state-${state}`, "data-state": state }, state);
}

// A <select> of `states` ("" is every state) that calls onChange(state) when changed.
export function stateFilter(states, current, onChange) {
  const filter = h(
    "select",
    { id: "state-filter", "aria-label": "State" },
    h("option", { value: "" }, "every state"),
    states.map((s) => h("option", { value: s, selected: s === current }, s)),
  );
  filter.addEventListener("change", () => onChange(filter.value));
  return h("label", { class: "inline" }, "State ", filter);
}

// "1–20 of 45", with links to the pages before and after; hashAt(offset) is a page's route.
export function fillPager(pager, { answer, count, offset, hashAt, limit = PAGE_SIZE }) {
  const total = answer?.total ?? count;
  const size = answer?.limit ?? limit;
  const from = count ? offset + 1 : 0;
  append(pager, [
    h("span", { class: "muted", "data-total": total }, `${from}–${offset + count} of ${total}`),
    offset > 0 ? h("a", { class: "button small", href: hashAt(Math.max(0, offset - size)), "data-pager": "newer" }, "‹ Newer") : null,
    offset + count < total ? h("a", { class: "button small", href: hashAt(offset + size), "data-pager": "older" }, "Older ›") : null,
  ]);
}

// The offset of a list route's query, never negative.
export function offsetOf(params) {
  return Math.max(0, Number.parseInt(params.get("offset") ?? "0", 10) || 0);
}

// A table with these column titles and an empty body to fill.
export function listTable(id, titles) {
  const body = h("tbody");
  const table = h("table", { class: "list", id }, h("thead", {}, h("tr", {}, titles.map((t) => h("th", {}, t)))), body);
  return { table, body };
}

// One page of a list: GET url(query) with limit, offset and (if any) state, saying
// "Loading…" and then "Nothing here yet." (or `empty`) in `status` while it has nothing.
export async function fetchPage({ url, key, offset, state, status, signal, empty = "Nothing here yet." }) {
  showStatus(status, "Loading…");
  const query = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(offset) });
  if (state) query.set("state", state);
  const answer = await api("GET", url(query), undefined, signal);
  const items = itemsOf(answer, key);
  showStatus(status, items.length ? "" : empty);
  return { answer, items };
}
