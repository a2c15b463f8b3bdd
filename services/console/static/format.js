// Money, times and the datetime-local conversions of the forms.

export function money(cents) {
  if (cents === null || cents === undefined) return "–";
  return `¥${(cents / 100).toFixed(2)}`;
}

// "12.5" (yuan) -> 1250 cents; anything else is sent as given, for the server to refuse
// with the field named.
export function toCents(text) {
  const trimmed = String(text).trim();
  if (!/^\d+(\.\d{1,2})?$/.test(trimmed)) return trimmed === "" ? null : trimmed;
  const [whole, frac = ""] = trimmed.split(".");
  return Number(whole) * 100 + Number(frac.padEnd(2, "0"));
}

export function yuan(cents) {
  return cents === null || cents === undefined ? "" : (cents / 100).toFixed(2);
}

export function dateTime(rfc3339) {
  if (!rfc3339) return "–";
  const d = new Date(rfc3339);
  return Number.isNaN(d.getTime()) ? String(rfc3339) : d.toLocaleString();
}

export function clock(date) {
  return date.toLocaleTimeString();
}

const pad = (n, width = 2) => String(Math.trunc(Math.abs(n))).padStart(width, "0");

// The value of an <input type="datetime-local"> (the browser's wall clock, no zone) ->
// RFC 3339 with the browser's offset at that moment, which the API requires.
export function localToRfc3339(value) {
  if (!value) return null;
  const d = new Date(value); // a zone-less date-time string is read as local time
  if (Number.isNaN(d.getTime())) return value;
  const offset = -d.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
    `${sign}${pad(offset / 60)}:${pad(offset % 60)}`
  );
}

// RFC 3339 from the API -> a datetime-local value in the browser's time zone.
export function rfc3339ToLocal(text) {
  if (!text) return "";
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) return "";
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

export function compactJson(value) {
  return value === null || value === undefined ? "–" : JSON.stringify(value);
}
