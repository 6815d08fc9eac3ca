// Charts drawn as SVG by hand: a stacked column chart of a time series by severity, and horizontal bars for
// "top N" breakdowns. Each chart carries a text summary (role=img + aria-label, and a data table beside it
// for screen readers), and every bar a <title> with its exact count.

import { h, s } from "./dom.js";

const PAD = { left: 48, right: 12, top: 12, bottom: 36 };

function niceMax(value) {
  if (value <= 5) return 5; // five grid steps of whole numbers
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

function bucketLabel(iso, interval) {
  const d = new Date(iso);
  return interval === "hour"
    ? d.toISOString().slice(11, 16)
    : d.toISOString().slice(5, 10);
}

/**
 * Stacked columns: buckets [{bucket}], series {SEVERITY: [counts aligned with buckets]}.
 */
export function stackedColumns({ buckets, series, interval, keys, label }) {
  const width = 1200;
  const height = 260;
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const totals = buckets.map((_, i) => keys.reduce((sum, k) => sum + ((series[k] || [])[i] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const slot = plotW / Math.max(1, buckets.length);
  const barW = Math.max(1, Math.min(28, slot * 0.8));
  const grand = totals.reduce((a, b) => a + b, 0);
  const chart = s("svg", {
    viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img",
    "aria-label": `${label}: ${grand} events in ${buckets.length} ${interval} buckets`,
    "data-total": grand,
  });
  for (let i = 0; i <= 5; i += 1) {
    const y = PAD.top + plotH - (plotH * i) / 5;
    chart.append(s("line", { x1: PAD.left, x2: width - PAD.right, y1: y, y2: y, stroke: "#d5dae1" }));
    chart.append(s("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end" }, String(Math.round((max * i) / 5))));
  }
  const every = Math.ceil(buckets.length / 12);
  buckets.forEach((point, i) => {
    const x = PAD.left + slot * i + (slot - barW) / 2;
    let y = PAD.top + plotH;
    for (const key of keys) {
      const n = (series[key] || [])[i] || 0;
      if (!n) continue;
      const barH = (plotH * n) / max;
      y -= barH;
      chart.append(s("rect", { x, y, width: barW, height: barH, class: `bar-${key}`, "data-count": n },
        s("title", {}, `${bucketLabel(point.bucket, interval)} ${key}: ${n}`)));
    }
    if (i % every === 0) {
      chart.append(s("text", { x: x + barW / 2, y: height - PAD.bottom + 16, "text-anchor": "middle" },
        bucketLabel(point.bucket, interval)));
    }
  });
  const legend = h("div", { class: "legend", "aria-hidden": "true" },
    keys.map((k) => h("span", {}, h("span", { class: `swatch sw-${k}` }), k)));
  return h("figure", { class: "chart" }, chart, legend);
}

/** Horizontal bars of {name: count}, largest first, at most `limit`. */
export function topBars({ counts, label, limit = 10 }) {
  const entries = Object.entries(counts || {}).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, limit);
  const rowH = 24;
  const width = 480;
  const labelW = 190;
  const height = Math.max(rowH, entries.length * rowH) + 8;
  const max = Math.max(1, ...entries.map(([, n]) => n));
  const chart = s("svg", {
    viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img",
    "aria-label": `${label}: ${entries.map(([k, n]) => `${k} ${n}`).join(", ") || "no events"}`,
  });
  entries.forEach(([name, n], i) => {
    const y = 4 + i * rowH;
    const barW = ((width - labelW - 60) * n) / max;
    const shown = name.length > 22 ? `${name.slice(0, 21)}…` : name;
    chart.append(s("text", { x: labelW - 6, y: y + 15, "text-anchor": "end" }, s("title", {}, name), shown || "(none)"));
    chart.append(s("rect", { x: labelW, y: y + 3, width: Math.max(1, barW), height: rowH - 8, class: "bar-top", "data-name": name, "data-count": n },
      s("title", {}, `${name}: ${n}`)));
    chart.append(s("text", { x: labelW + barW + 6, y: y + 15 }, String(n)));
  });
  if (!entries.length) chart.append(s("text", { x: 8, y: 16 }, "No events in this window"));
  return h("figure", { class: "chart" }, chart);
}
