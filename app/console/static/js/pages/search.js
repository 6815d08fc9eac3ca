// Search: GET /api/v1/logs with every filter and full text, keyset paging (next_cursor; earlier pages kept
// as a stack of cursors for "Previous"), and downloads of the same filtered rows (GET /logs/export).

import * as api from "../api.js";
import { h, problemText, saveBlob, select, toast } from "../dom.js";
import { eventRow, eventsTable } from "../events.js";
import { filterForm } from "../filters.js";

export async function download(params, format) {
  const query = new URLSearchParams(params);
  query.set("format", format);
  const response = await api.call("/api/v1/logs/export", { query });
  const blob = await response.blob();
  saveBlob(blob, api.filenameOf(response, `audit-logs.${format}`));
  return blob;
}

export function mount(main) {
  let params = new URLSearchParams();
  let cursors = [null]; // cursor of each page shown so far; the last is the current page's
  let next = null;
  const limit = select("Page size", "limit", ["25", "50", "100", "250"], "50");
  const status = h("p", { class: "status", role: "status", "aria-live": "polite", "data-testid": "search-status" });
  const { el: tableEl, body } = eventsTable("Search results");
  const prev = h("button", { type: "button", class: "secondary", disabled: true, onclick: () => { cursors.pop(); load(); } }, "Previous page");
  const nextButton = h("button", { type: "button", class: "secondary", disabled: true, onclick: () => { cursors.push(next); load(); } }, "Next page");
  const exportButtons = ["csv", "parquet"].map((format) => h("button", {
    type: "button", class: "secondary",
    onclick: async () => {
      try {
        await download(params, format);
        toast(`${format.toUpperCase()} export downloaded`);
      } catch (err) {
        toast(problemText(err), true);
      }
    },
  }, `Download ${format.toUpperCase()}`));
  const filters = filterForm({ submit: "Search", extra: [limit], onsubmit: (p) => { params = p; cursors = [null]; load(); } });

  async function load() {
    const query = new URLSearchParams(params);
    query.set("limit", limit.querySelector("select").value);
    const cursor = cursors[cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    status.textContent = "Searching…";
    try {
      const page = await api.api("/api/v1/logs", { query });
      body.replaceChildren(...page.items.map(eventRow));
      next = page.next_cursor;
      nextButton.disabled = !next;
      prev.disabled = cursors.length <= 1;
      status.textContent = `Page ${cursors.length}: ${page.items.length} events${next ? ", more on the next page" : ""}`;
    } catch (err) {
      status.textContent = problemText(err);
    }
  }

  main.append(
    h("h1", {}, "Search"),
    filters.form,
    h("div", { class: "row" }, prev, nextButton, h("span", { class: "grow" }), exportButtons),
    status,
    tableEl);
  load();
}
