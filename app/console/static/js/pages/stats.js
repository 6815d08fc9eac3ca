// Stats: GET /api/v1/logs/stats over a chosen window (with breakdown=true for the per-severity series and
// the top users) drawn as SVG: events over time by severity, top actions, top users, top resource types.

import * as api from "../api.js";
import { h, problemText, select } from "../dom.js";
import { stackedColumns, topBars } from "../charts.js";
import { filterForm, SEVERITIES } from "../filters.js";

const WINDOWS = [
  ["24h", "Last 24 hours (hourly)"],
  ["7d", "Last 7 days (daily)"],
  ["30d", "Last 30 days (daily)"],
  ["custom", "Custom: the dates below"],
];

function windowOf(choice) {
  const end = new Date();
  const hours = { "24h": 24, "7d": 24 * 7, "30d": 24 * 30 }[choice];
  return { start: new Date(end.getTime() - hours * 3600_000), end, interval: choice === "24h" ? "hour" : "day" };
}

export function mount(main) {
  const windowSelect = select("Window", "window", WINDOWS, "24h");
  const intervalSelect = select("Buckets", "interval", [["hour", "Hours"], ["day", "Days"]], "hour");
  const status = h("p", { class: "status", role: "status", "aria-live": "polite", "data-testid": "stats-status" });
  const charts = h("div", { class: "cards" });
  const filters = filterForm({ submit: "Show", extra: [windowSelect, intervalSelect], onsubmit: () => load() });
  const choice = () => windowSelect.querySelector("select").value;

  windowSelect.querySelector("select").addEventListener("change", () => {
    if (choice() !== "custom") {
      const w = windowOf(choice());
      filters.setTimes(w.start, w.end);
      intervalSelect.querySelector("select").value = w.interval;
    }
  });

  async function load() {
    if (choice() !== "custom") {
      const w = windowOf(choice());
      filters.setTimes(w.start, w.end);
      intervalSelect.querySelector("select").value = w.interval;
    }
    const query = filters.params();
    query.set("interval", intervalSelect.querySelector("select").value);
    query.set("breakdown", "true");
    status.textContent = "Counting…";
    try {
      const stats = await api.api("/api/v1/logs/stats", { query });
      status.textContent = `${stats.total} events from ${new Date(stats.start_time).toLocaleString()} to ${new Date(stats.end_time).toLocaleString()}`;
      Object.assign(status.dataset, { total: String(stats.total), start: stats.start_time, end: stats.end_time });
      charts.replaceChildren(
        h("section", { class: "card wide", "aria-labelledby": "c-time", "data-testid": "chart-time" },
          h("h2", { id: "c-time" }, "Events over time by severity"),
          stackedColumns({ buckets: stats.series, series: stats.series_by_severity || {}, interval: stats.interval, keys: SEVERITIES, label: "Events over time by severity" })),
        h("section", { class: "card", "aria-labelledby": "c-actions", "data-testid": "chart-actions" },
          h("h2", { id: "c-actions" }, "Top actions"), topBars({ counts: stats.by_action, label: "Top actions" })),
        h("section", { class: "card", "aria-labelledby": "c-users", "data-testid": "chart-users" },
          h("h2", { id: "c-users" }, "Top users"), topBars({ counts: stats.by_user, label: "Top users" })),
        h("section", { class: "card", "aria-labelledby": "c-resources", "data-testid": "chart-resources" },
          h("h2", { id: "c-resources" }, "Top resource types"), topBars({ counts: stats.by_resource_type, label: "Top resource types" })),
        h("section", { class: "card", "aria-labelledby": "c-sev" },
          h("h2", { id: "c-sev" }, "By severity"), topBars({ counts: stats.by_severity, label: "By severity" })));
    } catch (err) {
      status.textContent = problemText(err);
    }
  }

  main.append(h("h1", {}, "Stats"), filters.form, status, charts);
  load();
}
