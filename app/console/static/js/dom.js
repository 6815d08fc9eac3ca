// Building the page from data without innerHTML (nothing from the API is ever parsed as markup),
// plus the small widgets every page shares: labelled fields, tables, times, notices.

const SVG_NS = "http://www.w3.org/2000/svg";

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value" && "value" in el) el.value = value;
    else if (key === "checked" && "checked" in el) el.checked = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h("button", {onclick}, "Save"). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

let ids = 0;
/** A unique element id. */
export function uid(prefix = "f") {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled input: field("Action", {name: "action"}) → <label>Action <input name=action></label>. */
export function field(label, attrs = {}, tag = "input") {
  const input = h(tag, { id: uid(), ...attrs });
  return h("label", { for: input.id }, label, input);
}

/** A labelled select. options: [value, text] pairs or plain strings. */
export function select(label, name, options, value) {
  const el = h("select", { id: uid(), name },
    options.map((o) => {
      const [v, t] = Array.isArray(o) ? o : [o, o];
      return h("option", { value: v, selected: v === value }, t);
    }));
  return h("label", { for: el.id }, label, el);
}

/** A labelled checkbox. */
export function checkbox(label, attrs = {}) {
  const input = h("input", { type: "checkbox", id: uid(), ...attrs });
  return h("label", { class: "inline", for: input.id }, input, label);
}

/** A table: columns are [header, cell(row) → node|string] pairs. */
export function table(caption, columns, rows, attrs = {}) {
  return h("table", attrs,
    caption ? h("caption", { class: "visually-hidden" }, caption) : null,
    h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row)))))));
}

export function severity(value) {
  return h("span", { class: `sev sev-${value}` }, value);
}

export function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return h("time", { datetime: iso, title: iso }, d.toLocaleString());
}

export function json(value) {
  return h("pre", {}, JSON.stringify(value, null, 2));
}

/** A short notice in the corner (and for screen readers, the polite live region). */
export function toast(message, bad = false) {
  const box = document.getElementById("toast");
  const p = h("p", { class: bad ? "bad" : "" }, message);
  box.append(p);
  setTimeout(() => p.remove(), bad ? 8000 : 4000);
}

/** The message of an API error (problem details) or any error. */
export function problemText(err) {
  const problem = err && err.problem;
  if (problem) {
    const fields = (problem.errors || []).map((e) => `${e.field || e.pointer || ""}: ${e.message}`).join("; ");
    return `${problem.title || "Error"} (${err.status}): ${problem.detail || ""}${fields ? ` — ${fields}` : ""}`;
  }
  return String((err && err.message) || err);
}

/** A datetime-local value as RFC 3339 in UTC (the API refuses naive times), or "" when empty. */
export function toRfc3339(localValue) {
  if (!localValue) return "";
  const d = new Date(localValue);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

/** A Date as a datetime-local value in the browser's zone. */
export function toLocalInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** Save a Blob under a file name (an object URL clicked through a download link). */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, class: "visually-hidden" }, filename);
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 1000);
}
