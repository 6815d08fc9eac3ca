// Exports: download the filtered events now (GET /api/v1/logs/export, CSV or Parquet), or queue an export
// job (POST /api/v1/exports) and follow it (GET /api/v1/exports/{id}: status, rows, bytes) to its download.
// The jobs started in this tab are remembered in its sessionStorage (the API lists no jobs).

import * as api from "../api.js";
import { h, problemText, saveBlob, select, table, toast } from "../dom.js";
import { filterForm, filtersObject } from "../filters.js";
import { download } from "./search.js";

const STORE = "auditlog.console.exports";

function remembered() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE) || "[]");
  } catch {
    return [];
  }
}

export function mount(main) {
  let jobs = remembered();
  let timer = null;
  const format = select("Format", "format", [["csv", "CSV"], ["parquet", "Parquet"], ["ndjson", "NDJSON"], ["json", "JSON"]], "csv");
  const status = h("p", { class: "status", role: "status", "aria-live": "polite", "data-testid": "exports-status" });
  const jobsBox = h("div", { "data-testid": "jobs" });
  const filters = filterForm({ submit: "Download now", extra: [format], onsubmit: (params) => now(params) });
  const queue = h("button", { type: "button", class: "secondary", onclick: () => startJob() }, "Start export job");
  filters.form.lastElementChild.append(" ", queue);

  const fmt = () => format.querySelector("select").value;

  async function now(params) {
    status.textContent = "Exporting…";
    try {
      const blob = await download(params, fmt());
      status.textContent = `Downloaded ${blob.size} bytes (${fmt()})`;
    } catch (err) {
      status.textContent = problemText(err);
    }
  }

  async function startJob() {
    try {
      const job = await api.api("/api/v1/exports", { method: "POST", body: { format: fmt(), filters: filtersObject(filters.params()) } });
      jobs = [{ id: job.id, status: job.status, format: fmt(), rows: null, bytes: null }, ...jobs].slice(0, 20);
      save();
      toast("Export job queued");
      poll();
    } catch (err) {
      status.textContent = problemText(err);
    }
  }

  function save() {
    sessionStorage.setItem(STORE, JSON.stringify(jobs));
    render();
  }

  async function fetchJob(job) {
    try {
      Object.assign(job, await api.api(`/api/v1/exports/${job.id}`));
    } catch (err) {
      job.status = err.status === 404 ? "gone" : job.status;
    }
  }

  async function poll() {
    clearTimeout(timer);
    const open = jobs.filter((j) => j.status === "queued" || j.status === "running");
    await Promise.all(open.map(fetchJob));
    save();
    if (jobs.some((j) => j.status === "queued" || j.status === "running")) timer = setTimeout(poll, 1000);
  }

  async function fetchFile(job) {
    try {
      const response = await api.call(`/api/v1/exports/${job.id}/download`);
      saveBlob(await response.blob(), api.filenameOf(response, `export-${job.id}.${job.format}`));
    } catch (err) {
      toast(problemText(err), true);
    }
  }

  function progress(job) {
    const done = job.status === "done";
    const label = `${job.status}${job.rows !== null && job.rows !== undefined ? `, ${job.rows} rows` : ""}${job.bytes ? `, ${job.bytes} bytes` : ""}`;
    return h("span", {},
      h("progress", { class: "progress", max: 1, value: done ? 1 : null, "aria-label": `Job ${job.id}: ${label}` }),
      " ", label);
  }

  function render() {
    jobsBox.replaceChildren(jobs.length
      ? table("Export jobs", [
        ["Job", (j) => h("code", {}, j.id)],
        ["Format", (j) => j.format],
        ["Progress", progress],
        ["File", (j) => (j.status === "done" ? h("button", { type: "button", class: "secondary", onclick: () => fetchFile(j) }, "Download") : "")],
      ], jobs)
      : h("p", { class: "muted" }, "No export jobs in this tab yet."));
  }

  main.append(
    h("h1", {}, "Exports"),
    h("p", { class: "muted" }, "Download the events matching the filters now, or start a job for a large export and download its file when done."),
    filters.form, status, h("h2", {}, "Export jobs"), jobsBox);
  render();
  poll();
  return () => clearTimeout(timer);
}
