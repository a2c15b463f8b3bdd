// One coupon template: its terms in words, its figures live (how many remain, were
// issued, used...), its terms in full, what a merchant may do to it now (edit while
// upcoming, set the quantity, end it) and its audit log. The live figures keep streaming while the rest is
// reloaded after an action.

import { api, mayChange } from "../api.js";
import { COUPONS, couponFigures, itemsOf, paths, stateOf } from "../contract.js";
import { claimInWords, scopeInWords, termsInWords, validityInWords } from "../coupon-terms.js";
import { append, clear, h, statusLine } from "../dom.js";
import { dateTime, money } from "../format.js";
import { stateBadge } from "../list.js";
import { figureGrid, problemLine, streamState } from "../live.js";
import { follow } from "../sse.js";
import { actor, auditLog, confirmed, facts, setTotal } from "../widgets.js";

const FIGURES = [
  ["remaining", "Remaining"],
  ["issued", "Issued"],
  ["claimed", "Claimed"],
  ["granted", "Granted"],
  ["available", "Available"],
  ["locked", "Locked to orders"],
  ["used", "Used"],
  ["expired", "Expired"],
  ["revoked", "Revoked"],
  ["quantity", "Quantity"],
];

const yesNo = (v) => (v ? "yes" : "no");
const KIND_WORDS = { amount_off: "满减 (amount off)", percent_off: "折扣 (percent off)", no_threshold: "无门槛 (no threshold)" };
const SHOWN = [
  ["kind", "Kind", (v) => KIND_WORDS[v] ?? v],
  ["threshold_cents", "Threshold", money],
  ["amount_off_cents", "Amount off", money],
  ["percent_off", "Percent off", (v) => (v === null ? "–" : `${v}%`)],
  ["max_discount_cents", "At most", money],
  ["validity", "Validity", (_, t) => validityInWords(t)],
  ["quantity", "Quantity"],
  ["per_user_limit", "Claims per shopper"],
  ["claimable", "Claims", (_, t) => claimInWords(t)],
  ["scope", "Applies", (_, t) => scopeInWords(t)],
  ["usable_on_flash_sales", "On flash-sale prices", yesNo],
  ["status", "Shoppers see"],
  ["warm_up", "Loaded into Redis", (v) => (v === "done" ? "yes" : "pending")],
  ["ended_early_at", "Ended early", dateTime],
  ["created_at", "Created", (v, t) => `${dateTime(v)}${t.created_by ? ` by ${t.created_by}` : ""}`],
];

export async function couponPage({ root, match, signal }) {
  const [id] = match;
  const status = statusLine();
  const head = h("div", { class: "page-head" });
  const terms = h("div", { class: "terms-head" });
  const details = h("div", { class: "card" });
  const { grid, lastUpdate, show } = figureGrid(
    FIGURES.filter(([name]) => COUPONS.figures.includes(name)),
    "coupon-figures",
  );
  const problem = problemLine();
  const stream = streamState("coupon", problem);
  const actions = h("div", { class: "card actions-card" });
  const audit = h("div", { class: "card" });
  root.append(
    h("p", {}, h("a", { href: "#/coupons" }, "‹ Coupons")),
    head,
    terms,
    grid,
    h("p", { class: "muted board-foot" }, "Last update ", lastUpdate, " · stream ", stream.el),
    problem,
    details,
    actions,
    status,
    audit,
  );
  const act = actor(status, signal, () => load());
  let badgeState = null;
  const badge = h("span", { "data-coupon-state": "" });
  const setState = (state) => {
    if (state && state !== badgeState) {
      badgeState = state;
      badge.replaceChildren(stateBadge(state));
    }
  };

  async function load() {
    const t = await api("GET", paths.coupon(id), undefined, signal);
    const state = stateOf(t);
    setState(state);
    if (t.figures) show(couponFigures(t.figures));
    const words = termsInWords(t);
    append(clear(head), [
      h("h1", {}, `Coupon template #${t.id}: `, h("span", { "data-coupon-name": "" }, t.name), " ", badge),
    ]);
    append(clear(terms), [
      h("p", { class: "terms", "data-terms": "" }, words ? words.zh : "–"),
      words ? h("p", { class: "muted", "data-terms-en": "" }, words.en) : null,
    ]);
    // A term that does not apply to this kind (null) is left out.
    const known = Object.fromEntries(Object.entries(t).filter(([, v]) => v !== null));
    append(clear(details), [h("h2", {}, "Terms"), facts(known, SHOWN)]);

    clear(actions).append(h("h2", {}, "Actions"));
    if (!mayChange()) {
      actions.append(h("p", { class: "muted", "data-read-only": "" }, "Your role may look at this template, not change it."));
    } else {
      const open = state !== "ended";
      append(actions, [
        h(
          "div",
          { class: "row" },
          state === "upcoming"
            ? h("a", { class: "button", href: `#/coupons/${id}/edit`, "data-action": "edit" }, "Edit")
            : h("span", { class: "muted" }, "Editing closes when claims open."),
        ),
        open
          ? setTotal({
              id: "new-quantity",
              label: "Quantity",
              value: t.quantity,
              button: "Set quantity",
              action: "set-quantity",
              onSet: (quantity) => act("PUT", paths.couponQuantity(id), { quantity }, "Quantity set."),
            })
          : null,
        h(
          "div",
          { class: "row" },
          open
            ? confirmed(
                "End now",
                "End this template now? No coupon of it can be claimed or granted any more; those issued stay valid.",
                () => act("POST", paths.couponEnd(id), undefined, "The template has ended."),
                "end",
              )
            : h("span", { class: "muted" }, "This template has ended."),
        ),
      ]);
    }

    const trail = itemsOf(await api("GET", paths.couponAudit(id), undefined, signal), "entries");
    append(clear(audit), auditLog(trail));
  }

  await load();
  follow(paths.couponLive(id), {
    signal,
    onFigures: (raw) => {
      setState(raw.state);
      show(couponFigures(raw));
    },
    onState: stream.onState,
  });
}
