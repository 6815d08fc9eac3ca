// The before/after diff of an event's states: both JSON objects flattened to paths, each path marked
// added, removed, changed or unchanged.

import { h, table } from "./dom.js";

function flatten(value, prefix, out) {
  if (value !== null && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
    for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${key}` : key, out);
  } else if (Array.isArray(value) && value.length) {
    value.forEach((inner, i) => flatten(inner, `${prefix}[${i}]`, out));
  } else if (prefix) {
    out.set(prefix, value);
  }
  return out;
}

/** [{path, before, after, change}] over the union of both states' paths, in path order. */
export function diffStates(before, after) {
  const a = flatten(before || {}, "", new Map());
  const b = flatten(after || {}, "", new Map());
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
  return paths.map((path) => {
    const inA = a.has(path);
    const inB = b.has(path);
    const same = inA && inB && JSON.stringify(a.get(path)) === JSON.stringify(b.get(path));
    const change = !inA ? "added" : !inB ? "removed" : same ? "unchanged" : "changed";
    return { path, before: a.get(path), after: b.get(path), change };
  });
}

const show = (v) => (v === undefined ? "—" : JSON.stringify(v));

export function diffTable(before, after) {
  const rows = diffStates(before, after);
  if (!rows.length) return h("p", { class: "muted" }, "No before or after state recorded.");
  const t = table("Before and after", [
    ["Field", (r) => h("code", {}, r.path)],
    ["Before", (r) => h("code", {}, show(r.before))],
    ["After", (r) => h("code", {}, show(r.after))],
    ["Change", (r) => r.change],
  ], rows, { class: "diff", "aria-label": "Before and after" });
  t.querySelectorAll("tbody tr").forEach((tr, i) => tr.classList.add(`diff-${rows[i].change}`));
  return t;
}
