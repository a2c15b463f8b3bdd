// The live board: two streams (the sale's service, the order service), each figure in an
// element with a stable data-figure name; presses per second from successive readings.

import { api } from "../api.js";
import { kindOf, orderFigures, paths, saleFigures, stateOf } from "../contract.js";
import { h } from "../dom.js";
import { stateBadge } from "../list.js";
import { figureGrid, problemLine, streamState } from "../live.js";
import { follow } from "../sse.js";

const ORDERS = [
  ["orders_created", "Orders created"],
  ["orders_pending", "Orders awaiting payment"],
  ["orders_paid", "Orders paid"],
  ["orders_cancelled", "Orders cancelled"],
];
const FIGURES = {
  seckill: [
    ["remaining", "Remaining stock"],
    ["presses_per_second", "Presses / s"],
    ["presses", "Presses"],
    ["reservations", "Reservations"],
    ["sold_out", "Sold-out answers"],
    ...ORDERS,
  ],
  groupbuy: [
    ["remaining", "Remaining stock"],
    ["reserved_units", "Units held by groups"],
    ["groups_open", "Groups open"],
    ["groups_completed", "Groups completed"],
    ["groups_failed", "Groups failed"],
    ["members", "Members"],
    ...ORDERS,
  ],
};

export async function boardPage({ root, match, signal }) {
  const [kindName, id] = match;
  const kind = kindOf(kindName);
  const sale = await api("GET", paths.sale(kindName, id), undefined, signal);
  const { grid, lastUpdate, show } = figureGrid(FIGURES[kindName]);
  const problem = problemLine();
  const streams = { sale: streamState("sale", problem), orders: streamState("orders", problem) };
  // The state as the stream says it, or as the clock makes it (an upcoming sale goes live
  // while the board is open).
  let saleState = stateOf(sale);
  const badge = h("span", { "data-board-state": "" }, stateBadge(saleState));
  const followState = (raw) => {
    let next = raw.state ?? saleState;
    if (!raw.state) {
      const now = Date.now();
      if (next === "upcoming" && now >= Date.parse(sale.starts_at)) next = "live";
      if (next === "live" && now >= Date.parse(sale.ends_at)) next = "ended";
    }
    if (next !== saleState) {
      saleState = next;
      badge.replaceChildren(stateBadge(next));
    }
  };
  root.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, `${kind.label} #${sale.id}: ${sale.title} `, badge),
      h("a", { class: "button", href: `#/sales/${kindName}/${id}` }, "Details & actions"),
    ),
    grid,
    h(
      "p",
      { class: "muted board-foot" },
      "Last update ",
      lastUpdate,
      " · sale stream ",
      streams.sale.el,
      " · order stream ",
      streams.orders.el,
    ),
    problem,
  );

  // Presses per second from two successive readings, timed by the service's clock
  // ("at") when the reading has one.
  let previous = null;
  const onSale = (raw) => {
    followState(raw);
    const figures = saleFigures(raw);
    const at = Number.isNaN(Date.parse(raw.at)) ? Date.now() : Date.parse(raw.at);
    if (figures.presses !== undefined) {
      if (previous && at > previous.at) {
        const rate = ((figures.presses - previous.presses) * 1000) / (at - previous.at);
        figures.presses_per_second = Math.max(0, Math.round(rate));
      }
      previous = { presses: figures.presses, at };
    }
    show(figures);
  };

  follow(paths.saleLive(kindName, id), { signal, onFigures: onSale, onState: streams.sale.onState });
  follow(paths.ordersLive(kindName, id), {
    signal,
    onFigures: (raw) => show(orderFigures(raw)),
    onState: streams.orders.onState,
  });
}
