// The events table shared by the live tail and search: one row per event, its id a link to the detail view.

import { h, severity, time } from "./dom.js";

const COLUMNS = ["Time", "Severity", "Action", "Resource", "User", "Message"];

export function eventsTable(label) {
  const body = h("tbody", {});
  const el = h("div", { class: "scroll" },
    h("table", { "aria-label": label },
      h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col" }, c)))),
      body));
  return { el, body };
}

export function eventRow(e) {
  const resource = e.resource_id ? `${e.resource_type}/${e.resource_id}` : e.resource_type;
  return h("tr", { "data-event-id": e.id },
    h("td", {}, h("a", { href: `#/event/${e.id}`, "aria-label": `Event ${e.action} ${resource} at ${e.timestamp}` }, time(e.timestamp))),
    h("td", {}, severity(e.severity)),
    h("td", {}, e.action),
    h("td", {}, resource),
    h("td", {}, e.user_id || ""),
    h("td", { class: "msg" }, e.message || ""));
}
