// The console's shell: sign-in gate, navigation by role, and the hash router (#/search, #/event/<id>, ...).
// Each page module exports mount(main, params) and may return a cleanup function (closing sockets, timers).

import * as api from "./api.js";
import { h } from "./dom.js";
import * as admin from "./pages/admin.js";
import * as chat from "./pages/chat.js";
import * as event from "./pages/event.js";
import * as exportsPage from "./pages/exports.js";
import * as search from "./pages/search.js";
import * as signin from "./pages/signin.js";
import * as stats from "./pages/stats.js";
import * as tail from "./pages/tail.js";
import * as verify from "./pages/verify.js";

const READERS = ["Admin", "User", "Auditor"];
// [hash, title, page, roles allowed to see it]
const ROUTES = [
  ["tail", "Live tail", tail, READERS],
  ["search", "Search", search, READERS],
  ["stats", "Stats", stats, READERS],
  ["exports", "Exports", exportsPage, READERS],
  ["chat", "Analyst chat", chat, READERS],
  ["verify", "Verify", verify, READERS],
  ["event", null, event, READERS],
  ["users", "Users", admin.users, ["Admin"]],
  ["keys", "API keys", admin.keys, ["Admin"]],
  ["retention", "Retention", admin.retention, ["Admin"]],
  ["alerts", "Alerts", admin.alerts, ["Admin", "Auditor"]],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let cleanup = null;

function parseHash() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name: name || "tail", params: rest.map(decodeURIComponent) };
}

function renderChrome(active) {
  const session = api.current();
  nav.replaceChildren();
  who.replaceChildren();
  if (!session) return;
  const role = session.claims.role;
  for (const [name, title, , roles] of ROUTES) {
    if (!title || !roles.includes(role)) continue;
    nav.append(h("a", { href: `#/${name}`, "aria-current": name === active ? "page" : null }, title));
  }
  who.append(
    h("span", { "data-testid": "who" }, `${session.who.username || "?"} @ ${session.who.tenant || session.claims.tid}`),
    h("span", { class: "role", "data-testid": "role" }, `(${role})`),
    h("button", { type: "button", onclick: () => api.signOut().finally(() => { location.hash = "#/tail"; render(); }) }, "Sign out"));
}

export function render() {
  if (cleanup) { try { cleanup(); } catch { /* the page is going away anyway */ } }
  cleanup = null;
  main.replaceChildren();
  const session = api.current();
  if (!session) {
    renderChrome(null);
    document.title = "Sign in · Audit Log Console";
    signin.mount(main, () => render());
    return;
  }
  const { name, params } = parseHash();
  const route = ROUTES.find(([n, , , roles]) => n === name && roles.includes(session.claims.role));
  renderChrome(route ? route[0] : null);
  if (!route) {
    main.append(h("h1", {}, "Not here"), h("p", {}, "This page does not exist or your role may not open it."));
    return;
  }
  document.title = `${route[1] || "Event"} · Audit Log Console`;
  cleanup = route[2].mount(main, params) || null;
  const heading = main.querySelector("h1");
  if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus({ preventScroll: true }); }
}

document.getElementById("skip").addEventListener("click", () => main.focus());
window.addEventListener("hashchange", render);
api.onSignedOut(() => render());
render();
