// The admin API on this origin (the gateway's admin side), with the merchant's tokens.
//
// The token pair lives in sessionStorage: it dies with the tab, is never sent by the
// browser on its own (no cookie, so no cross-site request can use it), and each tab is
// one login. The access token is renewed with the refresh token shortly before it
// expires, and once more on a 401 (a laptop that slept past the timer).

const KEY = "flashsale.console.session";
const JSON_TYPE = "application/json";

let onLoggedOut = () => {};
let timer = null;
let refreshing = null;

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error ?? "http_error";
    this.field = body?.field ?? null;
    this.body = body;
  }

  // What the page shows.
  get text() {
    if (this.status === 403) return "Your role may not do this.";
    if (this.status === 0) return "The console cannot reach the server: check the connection.";
    return this.message;
  }
}

export function whenLoggedOut(callback) {
  onLoggedOut = callback;
}

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY));
  } catch {
    return null;
  }
}

function store(pair, merchant) {
  const current = session();
  const saved = {
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    expires_at: Date.now() + pair.expires_in * 1000,
    merchant: merchant ?? current?.merchant ?? null,
  };
  sessionStorage.setItem(KEY, JSON.stringify(saved));
  schedule(saved);
  return saved;
}

function forget() {
  sessionStorage.removeItem(KEY);
  clearTimeout(timer);
  timer = null;
}

// Renew a minute (at most a fifth of the lifetime) before expiry.
export function schedule(saved = session()) {
  clearTimeout(timer);
  if (!saved) return;
  const left = saved.expires_at - Date.now();
  const delay = Math.max(1000, left - Math.min(60_000, left / 5));
  timer = setTimeout(() => refresh().catch(() => {}), delay);
}

async function readJson(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { error: "http_error", message: `HTTP ${response.status}: ${text.slice(0, 200)}` };
  }
}

async function post(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": JSON_TYPE, Accept: JSON_TYPE },
      body: JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, { error: "network", message: "network error" });
  }
  const data = await readJson(response);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Whether the login's roles allow changes (operator, or admin which implies it): pages
// leave out what a viewer may not do. The API is the judge all the same (403).
export function mayChange() {
  const roles = session()?.merchant?.roles ?? [];
  return roles.includes("operator") || roles.includes("admin");
}

export async function login(name, password) {
  const answer = await post("/api/auth/admin/login", { name, password });
  return store(answer, answer.merchant);
}

export async function logout() {
  const saved = session();
  forget();
  if (saved) {
    // 204 whether or not the login was live; nothing to do on failure but forget it here.
    await post("/api/auth/logout", { refresh_token: saved.refresh_token }).catch(() => {});
  }
}

// One refresh at a time: the refresh token rotates, a second concurrent use of the old one
// would count as a reuse and end the login.
export function refresh() {
  if (!refreshing) refreshing = renew().finally(() => (refreshing = null));
  return refreshing;
}

async function renew() {
  const saved = session();
  if (!saved) throw loggedOut();
  try {
    store(await post("/api/auth/refresh", { refresh_token: saved.refresh_token }));
  } catch (err) {
    // Refused (expired, revoked, unknown): the login is over. Anything else (the gateway
    // or identity unavailable) leaves it for the next try.
    if (err.status === 400 || err.status === 401) {
      forget();
      onLoggedOut();
      throw loggedOut();
    }
    throw err;
  }
}

function loggedOut() {
  return new ApiError(401, { error: "unauthorized", message: "Log in again." });
}

// A request with the access token; a 401 renews it once and repeats the request.
export async function send(method, path, { body, signal, accept = JSON_TYPE } = {}) {
  for (let attempt = 0; ; attempt++) {
    const saved = session();
    if (!saved) {
      onLoggedOut();
      throw loggedOut();
    }
    const headers = { Authorization: `Bearer ${saved.access_token}`, Accept: accept };
    const init = { method, headers, signal, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = JSON_TYPE;
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new ApiError(0, { error: "network", message: "network error" });
    }
    if (response.status !== 401 || attempt > 0) return response;
    await refresh();
  }
}

export async function api(method, path, body, signal) {
  const response = await send(method, path, { body, signal });
  const data = response.status === 204 ? null : await readJson(response);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export { readJson };
