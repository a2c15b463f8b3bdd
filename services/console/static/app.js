// The console's router: hash routes, one page at a time. Leaving a page aborts what it
// started (its live streams, its pending requests).

import { logout, schedule, session, whenLoggedOut } from "./api.js";
import { clear, h } from "./dom.js";
import { apiPage } from "./pages/api.js";
import { boardPage } from "./pages/board.js";
import { couponPage } from "./pages/coupon.js";
import { couponFormPage } from "./pages/coupon-form.js";
import { rulesPage } from "./pages/coupon-rules.js";
import { couponsPage } from "./pages/coupons.js";
import { loginPage } from "./pages/login.js";
import { orderPage, ordersPage } from "./pages/orders.js";
import { saleFormPage } from "./pages/sale-form.js";
import { salePage } from "./pages/sale.js";
import { salesPage } from "./pages/sales.js";
import { templatesPage } from "./pages/templates.js";

const ROUTES = [
  [/^\/login$/, loginPage, "login"],
  [/^\/sales$/, salesPage, "sales"],
  [/^\/sales\/new$/, saleFormPage, "sales"],
  [/^\/sales\/(seckill|groupbuy)\/(\d+)$/, salePage, "sales"],
  [/^\/sales\/(seckill|groupbuy)\/(\d+)\/edit$/, saleFormPage, "sales"],
  [/^\/sales\/(seckill|groupbuy)\/(\d+)\/board$/, boardPage, "sales"],
  [/^\/coupons$/, couponsPage, "coupons"],
  [/^\/coupons\/new$/, couponFormPage, "coupons"],
  [/^\/coupons\/rules$/, rulesPage, "coupons"],
  [/^\/coupons\/(\d+)$/, couponPage, "coupons"],
  [/^\/coupons\/(\d+)\/edit$/, couponFormPage, "coupons"],
  [/^\/orders$/, ordersPage, "orders"],
  [/^\/orders\/([^/]+)$/, orderPage, "orders"],
  [/^\/templates$/, templatesPage, "templates"],
  [/^\/api$/, apiPage, "api"],
];
// Pages that need no login: the API document is public.
const OPEN = new Set(["login", "api"]);

let current = null;

export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function parse() {
  const raw = location.hash.replace(/^#/, "") || "/sales";
  const [path, query = ""] = raw.split("?", 2);
  return { path, params: new URLSearchParams(query) };
}

function header(section) {
  const saved = session();
  document.getElementById("nav").hidden = !saved;
  document.getElementById("who").hidden = !saved;
  if (saved?.merchant) {
    const { name, roles } = saved.merchant;
    document.getElementById("who-name").textContent = `${name} (${roles.join(", ")})`;
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === section);
  }
}

function render() {
  current?.abort();
  current = new AbortController();
  const { path, params } = parse();
  const view = clear(document.getElementById("view"));
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  if (!route) {
    header("");
    view.append(h("p", { class: "status error" }, "No such page. "), h("a", { href: "#/sales" }, "Sales"));
    return;
  }
  const [pattern, page, section] = route;
  if (!session() && !OPEN.has(section)) {
    go(`#/login?next=${encodeURIComponent(location.hash || "#/sales")}`);
    return;
  }
  header(section);
  const match = path.match(pattern).slice(1);
  const root = h("section", { class: "page", "data-page": section });
  view.append(root);
  page({ root, params, match, signal: current.signal }).catch((error) => {
    if (current.signal.aborted) return;
    root.append(h("p", { class: "status error", role: "alert" }, error.text ?? String(error)));
  });
}

whenLoggedOut(() => {
  if (!parse().path.startsWith("/login")) go("#/login");
});

document.getElementById("logout").addEventListener("click", async () => {
  await logout();
  go("#/login");
});

window.addEventListener("hashchange", render);
schedule();
render();
