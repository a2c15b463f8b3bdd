// A live board's parts (a sale's board, a coupon template's figures): a grid of figures,
// each number in an element with a stable data-figure name; "Last update"; the state of
// each stream (sse.js) in words, with the reason a stream stopped.

import { h } from "./dom.js";
import { clock } from "./format.js";

const STATE_TEXT = {
  open: "live",
  unavailable: "figures unavailable",
  reconnecting: "reconnecting…",
  failed: "stopped",
};

// defs: [[data-figure name, label], ...]. show(figures) writes each known, non-null one.
export function figureGrid(defs, id = "figures") {
  const cells = new Map();
  const grid = h("div", { class: "figures", id });
  for (const [name, label] of defs) {
    const value = h("span", { class: "value", "data-figure": name }, "–");
    cells.set(name, value);
    grid.append(h("div", { class: "figure" }, value, h("span", { class: "label" }, label)));
  }
  const lastUpdate = h("time", { "data-last-update": "" }, "never");
  const show = (figures) => {
    for (const [name, value] of Object.entries(figures)) {
      if (value === undefined || value === null || !cells.has(name)) continue;
      cells.get(name).textContent = String(value);
    }
    const now = new Date();
    lastUpdate.textContent = clock(now);
    lastUpdate.setAttribute("datetime", now.toISOString());
  };
  return { grid, lastUpdate, show };
}

// The stream named `which`'s state, as sse.follow()'s onState reports it; a stream that
// stopped puts its reason in `problem` (a role=alert line).
export function streamState(which, problem) {
  const el = h("span", { class: "stream", "data-stream": which }, "connecting…");
  const onState = (state, error) => {
    el.textContent = STATE_TEXT[state] ?? state;
    el.dataset.state = state;
    if (state === "failed" && error) {
      problem.textContent = error.text ?? String(error);
      problem.hidden = false;
    }
  };
  return { el, onState };
}

export function problemLine() {
  return h("p", { class: "status error", role: "alert", hidden: true });
}
