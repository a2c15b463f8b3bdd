// A tiny element builder: text always goes in as text (never HTML), so names and titles
// from the API cannot inject markup; the CSP forbids inline script and style anyway.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

// A status line: role=status so that assistive technology reads it out.
export function statusLine() {
  return h("p", { class: "status", role: "status", "data-status": "" });
}

export function showStatus(el, text, kind = "info") {
  el.textContent = text ?? "";
  el.className = `status ${text ? kind : ""}`;
}
