// Coupon templates, newest first, filtered by state, paged; the tabs lead to the grant
// rules (下单返券).

import { mayChange } from "../api.js";
import { COUPONS, paths, stateOf } from "../contract.js";
import { termsInWords } from "../coupon-terms.js";
import { h, statusLine } from "../dom.js";
import { dateTime } from "../format.js";
import { fetchPage, fillPager, listTable, offsetOf, stateBadge, stateFilter } from "../list.js";

function listHash(state, offset) {
  const q = new URLSearchParams();
  if (state) q.set("state", state);
  if (offset) q.set("offset", String(offset));
  const query = q.toString();
  return query ? `#/coupons?${query}` : "#/coupons";
}

// Templates | Grant rules, as the sales' kind tabs.
export function couponTabs(active) {
  return h(
    "div",
    { class: "tabs" },
    h("a", { href: "#/coupons", class: active === "templates" ? "active" : "", "data-tab": "templates" }, "Templates"),
    h("a", { href: "#/coupons/rules", class: active === "rules" ? "active" : "", "data-tab": "rules" }, "Grant rules"),
  );
}

function claimWindow(t) {
  if (!t.claimable) return h("span", { class: "muted" }, "by rules only");
  return `${dateTime(t.claim_starts_at)} – ${dateTime(t.claim_ends_at)}`;
}

export async function couponsPage({ root, params, signal }) {
  const state = COUPONS.states.includes(params.get("state")) ? params.get("state") : "";
  const offset = offsetOf(params);
  const create = mayChange() ? h("a", { class: "button primary", href: "#/coupons/new", id: "new-coupon" }, "New coupon template") : null;
  const status = statusLine();
  const { table, body } = listTable("coupons-table", ["ID", "Name", "Terms", "State", "Claim window", "Remaining", ""]);
  const pager = h("div", { class: "pager" });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Coupons"), create),
    h(
      "div",
      { class: "toolbar" },
      couponTabs("templates"),
      stateFilter(COUPONS.states, state, (s) => (location.hash = listHash(s, 0))),
    ),
    table,
    pager,
    status,
  );

  const { answer, items } = await fetchPage({ url: paths.coupons, key: COUPONS.items, offset, state, status, signal });
  for (const t of items) {
    const detail = `#/coupons/${t.id}`;
    const words = termsInWords(t);
    const remaining = t.figures?.remaining ?? t.remaining;
    body.append(
      h(
        "tr",
        { "data-coupon-id": t.id },
        h("td", {}, t.id),
        h("td", {}, h("a", { href: detail }, t.name)),
        h("td", { "data-terms": "" }, words ? words.zh : "–"),
        h("td", {}, stateBadge(stateOf(t))),
        h("td", {}, claimWindow(t)),
        h("td", { class: "num" }, `${remaining ?? "–"} / ${t.quantity}`),
        h("td", {}, h("a", { href: detail, class: "button small" }, "Open")),
      ),
    );
  }
  fillPager(pager, { answer, count: items.length, offset, hashAt: (o) => listHash(state, o) });
}
