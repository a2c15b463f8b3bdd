// A coupon template's terms in plain words, as a shop writes them on the coupon
// ("满 100 减 20") and in English, for the list, the detail page and the form's preview.
// Only words: what a coupon takes off is decided by the coupon service.

import { dateTime } from "./format.js";

const isCents = (v) => Number.isInteger(v) && v >= 0;

// 10000 -> "100", 9950 -> "99.5", 1 -> "0.01": how prices are written on a coupon.
export function plainYuan(cents) {
  return (cents / 100).toFixed(2).replace(/\.?0+$/, "");
}

// 15 (% off) -> "8.5" (折: what is left to pay, in tenths).
export function zhe(percentOff) {
  return String((100 - percentOff) / 10);
}

// {zh, en} for the discount, or null while the terms are incomplete (a form being typed).
export function termsInWords(t) {
  const threshold = isCents(t.threshold_cents) ? t.threshold_cents : 0;
  if (t.kind === "amount_off" || t.kind === "no_threshold") {
    if (!isCents(t.amount_off_cents) || t.amount_off_cents === 0) return null;
    const off = plainYuan(t.amount_off_cents);
    if (t.kind === "no_threshold" || threshold === 0) {
      return { zh: `无门槛减 ${off}`, en: `¥${off} off any order` };
    }
    return { zh: `满 ${plainYuan(threshold)} 减 ${off}`, en: `¥${off} off an order of ¥${plainYuan(threshold)} or more` };
  }
  if (t.kind === "percent_off") {
    if (!Number.isInteger(t.percent_off) || t.percent_off < 1 || t.percent_off > 99) return null;
    const cap = isCents(t.max_discount_cents) && t.max_discount_cents > 0 ? plainYuan(t.max_discount_cents) : null;
    const zh = [threshold > 0 ? `满 ${plainYuan(threshold)} 打 ${zhe(t.percent_off)} 折` : `${zhe(t.percent_off)} 折`];
    const en = [`${t.percent_off}% off`, threshold > 0 ? ` an order of ¥${plainYuan(threshold)} or more` : " any order"];
    if (cap) {
      zh.push(`，最多减 ${cap}`);
      en.push(`, at most ¥${cap}`);
    }
    return { zh: zh.join(""), en: en.join("") };
  }
  return null;
}

export function validityInWords(t) {
  if (t.validity === "relative") {
    return Number.isInteger(t.valid_days) ? `valid ${t.valid_days} day${t.valid_days === 1 ? "" : "s"} from the moment it is issued` : "valid for some days from issue";
  }
  return `valid from ${dateTime(t.valid_from)} until ${dateTime(t.valid_until)}`;
}

const SCOPE_WORDS = {
  activities: "orders of the flash sales",
  campaigns: "orders of the group-buy campaigns",
  skus: "orders of the SKUs",
};

export function scopeInWords(t) {
  const ids = Array.isArray(t.scope_ids) ? t.scope_ids : [];
  const where = t.scope in SCOPE_WORDS ? `${SCOPE_WORDS[t.scope]} ${ids.join(", ") || "(none named)"}` : "any order";
  const flash = t.usable_on_flash_sales ? "flash-sale prices included" : "not on flash-sale prices";
  return `on ${where}; ${flash}`;
}

export function claimInWords(t) {
  if (!t.claimable) return "not claimable: granted by rules only (下单返券)";
  const limit = Number.isInteger(t.per_user_limit) ? `, ${t.per_user_limit} per shopper` : "";
  return `claimable from ${dateTime(t.claim_starts_at)} until ${dateTime(t.claim_ends_at)}${limit}`;
}

// Hints for a form being typed: what the server will refuse, said before it is sent.
// The server stays the judge; these never stop a submit.
export function termsHints(t) {
  const hints = [];
  // A moment not typed yet is NaN: every comparison with it is false, so no hint.
  const ms = (v) => (v ? Date.parse(v) : Number.NaN);
  if (t.kind === "amount_off" && isCents(t.threshold_cents) && isCents(t.amount_off_cents) && t.threshold_cents <= t.amount_off_cents) {
    hints.push(["threshold_cents", "The threshold must be more than the amount off."]);
  }
  if (t.kind === "percent_off" && t.percent_off !== null && t.percent_off !== undefined && !(Number.isInteger(t.percent_off) && t.percent_off >= 1 && t.percent_off <= 99)) {
    hints.push(["percent_off", "A percentage from 1 to 99."]);
  }
  if (t.validity === "fixed" && ms(t.valid_from) >= ms(t.valid_until)) {
    hints.push(["valid_until", "The validity must end after it starts."]);
  }
  if (t.claimable && ms(t.claim_starts_at) >= ms(t.claim_ends_at)) {
    hints.push(["claim_ends_at", "The claim window must end after it opens."]);
  }
  if (t.claimable && t.validity === "fixed" && ms(t.valid_until) < ms(t.claim_ends_at)) {
    hints.push(["claim_ends_at", "Claims must close by the end of the validity."]);
  }
  if (t.scope && t.scope !== "any" && Array.isArray(t.scope_ids) && t.scope_ids.length === 0) {
    hints.push(["scope_ids", "Name at least one id (or choose any order)."]);
  }
  return hints;
}
