// Event detail: GET /api/v1/logs/{id} — every field, the before/after diff, the metadata, and a link to its
// proof in the verifiable log.

import * as api from "../api.js";
import { h, json, problemText, severity, time } from "../dom.js";
import { diffTable } from "../diff.js";

const FIELDS = [
  ["id", "Id"], ["timestamp", "Time"], ["received_at", "Received"], ["severity", "Severity"], ["action", "Action"],
  ["resource_type", "Resource type"], ["resource_id", "Resource id"], ["user_id", "User"], ["session_id", "Session"],
  ["request_id", "Request"], ["ip_address", "IP address"], ["user_agent", "User agent"], ["message", "Message"],
];

export function mount(main, [id]) {
  const heading = h("h1", {}, "Event");
  const content = h("div", { "aria-live": "polite" }, h("p", {}, "Loading…"));
  main.append(heading, content);
  api.api(`/api/v1/logs/${encodeURIComponent(id)}`).then((e) => {
    heading.textContent = `Event ${e.action} on ${e.resource_type}`;
    const value = (key) => {
      if (key === "severity") return severity(e[key]);
      if (key === "timestamp" || key === "received_at") return time(e[key]);
      return e[key] === null || e[key] === undefined ? "—" : String(e[key]);
    };
    content.replaceChildren(
      h("div", { class: "row" },
        h("a", { class: "button secondary", href: `#/verify/${e.id}` }, "Verify in the signed log"),
        h("a", { href: "#/search" }, "Back to search")),
      h("section", { "aria-labelledby": "ev-fields" },
        h("h2", { id: "ev-fields" }, "Fields"),
        h("dl", { class: "fields" }, FIELDS.flatMap(([key, label]) => [h("dt", {}, label), h("dd", { "data-field": key }, value(key))]))),
      h("section", { "aria-labelledby": "ev-diff" },
        h("h2", { id: "ev-diff" }, "Before and after"),
        diffTable(e.before_state, e.after_state)),
      h("section", { "aria-labelledby": "ev-meta" },
        h("h2", { id: "ev-meta" }, "Metadata"),
        e.metadata && Object.keys(e.metadata).length ? json(e.metadata) : h("p", { class: "muted" }, "No metadata.")));
  }, (err) => {
    content.replaceChildren(h("p", { class: "error", role: "alert" }, problemText(err)));
  });
}
