// Flash sales or group-buy campaigns, newest start first, filtered by state, paged.

import { KINDS, STATES, kindOf, paths, stateOf } from "../contract.js";
import { h, statusLine } from "../dom.js";
import { dateTime, money } from "../format.js";
import { fetchPage, fillPager, listTable, offsetOf, stateBadge, stateFilter } from "../list.js";

function listHash(kind, state, offset) {
  const q = new URLSearchParams({ kind });
  if (state) q.set("state", state);
  if (offset) q.set("offset", String(offset));
  return `#/sales?${q}`;
}

export async function salesPage({ root, params, signal }) {
  const kindName = KINDS[params.get("kind")] ? params.get("kind") : "seckill";
  const kind = kindOf(kindName);
  const state = STATES.includes(params.get("state")) ? params.get("state") : "";
  const offset = offsetOf(params);

  const tabs = h(
    "div",
    { class: "tabs" },
    Object.entries(KINDS).map(([name, k]) =>
      h("a", { href: listHash(name, state, 0), class: name === kindName ? "active" : "", "data-kind": name }, k.plural),
    ),
  );
  const filter = stateFilter(STATES, state, (s) => (location.hash = listHash(kindName, s, 0)));
  const create = h(
    "a",
    { class: "button primary", href: `#/sales/new?kind=${kindName}`, id: "new-sale" },
    `New ${kind.label.toLowerCase()}`,
  );
  const status = statusLine();
  const { table, body } = listTable("sales-table", ["ID", "Title", "State", "Starts", "Ends", "Price", "Stock", ""]);
  const pager = h("div", { class: "pager" });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Sales"), create),
    h("div", { class: "toolbar" }, tabs, filter),
    table,
    pager,
    status,
  );

  const { answer, items } = await fetchPage({
    url: (query) => paths.list(kindName, query),
    key: kind.items,
    offset,
    state,
    status,
    signal,
  });
  for (const sale of items) {
    const detail = `#/sales/${kindName}/${sale.id}`;
    const price = kindName === "seckill" ? sale.price_cents : sale.group_price_cents;
    body.append(
      h(
        "tr",
        { "data-sale-id": sale.id },
        h("td", {}, sale.id),
        h("td", {}, h("a", { href: detail }, sale.title)),
        h("td", {}, stateBadge(stateOf(sale))),
        h("td", {}, dateTime(sale.starts_at)),
        h("td", {}, dateTime(sale.ends_at)),
        h("td", { class: "num" }, money(price)),
        h("td", { class: "num" }, `${sale.remaining_stock ?? "–"} / ${sale.stock}`),
        h("td", {}, h("a", { href: `${detail}/board`, class: "button small" }, "Board")),
      ),
    );
  }
  fillPager(pager, {
    answer,
    count: items.length,
    offset,
    hashAt: (o) => listHash(kindName, state, o),
  });
}
