// The public API with the signed-in user's token: sign-in, refresh before expiry, logout, and every call.
//
// The session (access token, single-use refresh token, expiry) lives in this tab's sessionStorage, never in
// a cookie or localStorage: it survives a reload, not the tab. The access token is refreshed ahead of its
// expiry, one refresh at a time (a refresh token presented twice revokes the whole session, by contract),
// and once more if a call answers 401. Logout revokes the session on the server and forgets it here.

const STORE = "auditlog.console.session";
const listeners = new Set();
let session = load();
let timer = null;
let refreshing = null;

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function load() {
  try {
    const raw = sessionStorage.getItem(STORE);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function decodeClaims(jwt) {
  const part = jwt.split(".")[1] || "";
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

function save(pair, who) {
  const claims = decodeClaims(pair.access_token);
  session = {
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    expires_at: Date.now() + pair.expires_in * 1000,
    ttl: pair.expires_in,
    claims: { sub: claims.sub, tid: claims.tid, role: claims.role, sid: claims.sid },
    who: who || (session && session.who) || {},
  };
  sessionStorage.setItem(STORE, JSON.stringify(session));
  schedule();
}

function forget() {
  clearTimeout(timer);
  timer = null;
  session = null;
  sessionStorage.removeItem(STORE);
  for (const fn of listeners) fn();
}

/** Refresh this long before expiry: a fifth of the lifetime, at most a minute. */
function schedule() {
  clearTimeout(timer);
  if (!session) return;
  const lead = Math.min(60_000, session.ttl * 200);
  const wait = Math.max(1_000, session.expires_at - Date.now() - lead);
  timer = setTimeout(() => refresh().catch(() => {}), wait);
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { title: response.statusText, status: response.status };
  }
}

/** Trade the refresh token for a new pair; on failure the session is over. One at a time. */
export function refresh() {
  if (!session) return Promise.reject(new ApiError(401, { title: "Signed out" }));
  if (!refreshing) {
    const token = session.refresh_token;
    refreshing = (async () => {
      const response = await fetch("/api/v1/auth/refresh", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: token }),
      });
      if (!response.ok) {
        const problem = await problemOf(response);
        if (response.status === 401) forget();
        throw new ApiError(response.status, problem);
      }
      save(await response.json());
    })().finally(() => { refreshing = null; });
  }
  return refreshing;
}

export async function signIn(tenant, username, password) {
  const response = await fetch("/api/v1/auth/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ tenant, username, password }),
  });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  save(await response.json(), { tenant, username });
}

/** Revoke the session on the server (every token of it stops working), then forget it here. */
export async function signOut() {
  try {
    if (session) await call("/api/v1/auth/logout", { method: "POST", retry: false });
  } finally {
    forget();
  }
}

export function current() {
  return session;
}

export function role() {
  return session ? session.claims.role : null;
}

export function isAdmin() {
  return role() === "Admin";
}

export function canWrite() {
  return role() === "Admin" || role() === "User";
}

/** A fresh access token (refreshing first when it is about to expire). */
export async function accessToken() {
  if (!session) throw new ApiError(401, { title: "Signed out" });
  if (session.expires_at - Date.now() < 10_000) await refresh();
  return session.access_token;
}

schedule(); // a reloaded tab picks its session up where it was

export function onSignedOut(fn) {
  listeners.add(fn);
}

function withQuery(path, query) {
  if (!query) return path;
  const text = query instanceof URLSearchParams ? query.toString() : new URLSearchParams(query).toString();
  return text ? `${path}?${text}` : path;
}

/** The raw Response of an authenticated call (retried once after a refresh on 401). */
export async function call(path, { method = "GET", body, query, retry = true, headers = {} } = {}) {
  const token = await accessToken();
  const init = { method, headers: { ...headers, Authorization: `Bearer ${token}` } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(withQuery(path, query), init);
  if (response.status === 401 && retry && session) {
    await refresh();
    return call(path, { method, body, query, retry: false, headers });
  }
  if (!response.ok) {
    const problem = await problemOf(response);
    if (response.status === 401) forget();
    throw new ApiError(response.status, problem);
  }
  return response;
}

/** An authenticated call's JSON body (null for 204). */
export async function api(path, options) {
  const response = await call(path, options);
  if (response.status === 204) return null;
  return response.json();
}

/** The file name of a Content-Disposition header. */
export function filenameOf(response, fallback) {
  const header = response.headers.get("Content-Disposition") || "";
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(header);
  return match ? decodeURIComponent(match[1]) : fallback;
}
