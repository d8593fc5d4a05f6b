// Hand-written SVG line charts for the fleet dashboard: no library, no build step.
(() => {
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f6feb", "#d2691e", "#2da44e", "#a371f7", "#cf222e", "#0598bc", "#bf8700"];

function svgEl(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

// Nice round tick values covering [lo, hi].
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  // From at or below lo to at or above hi: every value lies inside the drawn axis.
  for (let v = Math.floor(lo / step) * step; ; v += step) {
    ticks.push(+v.toFixed(10));
    if (v >= hi - step * 1e-9 || ticks.length > 50) break;
  }
  return ticks;
}

function fmtNum(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function fmtTime(t, span) {
  const d = new Date(t * 1000);
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  if (span <= 2 * 86400) return hm;
  return d.toLocaleDateString([], { month: "short", day: "numeric" }) + (span <= 8 * 86400 ? " " + hm : "");
}

// chart({title, unit, start, end, step, series: [{name, values: [[t, v|null]...]}], percent, yMin})
// → an element holding the title, an SVG and a legend; hovering shows the values at a time.
function lineChart(spec) {
  const W = 560, H = 200, L = 48, R = 12, T = 10, B = 26;
  const box = document.createElement("figure");
  box.className = "chart";
  const cap = document.createElement("figcaption");
  cap.textContent = spec.title + (spec.unit ? " (" + spec.unit + ")" : "");
  box.appendChild(cap);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": spec.title });
  box.appendChild(svg);
  const all = spec.series.flatMap((s) => s.values.map((p) => p[1]).filter((v) => v !== null && v !== undefined));
  if (!all.length) {
    const t = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" });
    t.textContent = "no data in this range";
    svg.appendChild(t);
    return box;
  }
  const yMin = spec.yMin !== undefined ? Math.min(spec.yMin, ...all) : Math.min(...all);
  let yMax = Math.max(...all);
  if (spec.percent) yMax = Math.max(yMax, 0.05);
  const ticks = niceTicks(yMin, yMax === yMin ? yMin + 1 : yMax, 4);
  const y0 = ticks[0], y1 = ticks[ticks.length - 1];
  const x = (t) => L + ((t - spec.start) / (spec.end - spec.start)) * (W - L - R);
  const y = (v) => H - B - ((v - y0) / (y1 - y0 || 1)) * (H - T - B);
  for (const v of ticks) {
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    const lab = svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" });
    lab.textContent = spec.percent ? Math.round(v * 100) + "%" : fmtNum(v);
    svg.appendChild(lab);
  }
  const span = spec.end - spec.start;
  for (let i = 0; i <= 4; i++) {
    const t = spec.start + (span * i) / 4;
    const lab = svgEl("text", { x: x(t), y: H - 8, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", class: "tick" });
    lab.textContent = fmtTime(t, span);
    svg.appendChild(lab);
  }
  spec.series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    let d = "";
    let prev = null;
    for (const [t, v] of s.values) {
      if (v === null || v === undefined) { prev = null; continue; }
      // A gap of more than two buckets is a gap in the data: do not draw across it.
      const jump = prev === null || t - prev > 2.5 * spec.step;
      d += (jump ? "M" : "L") + x(t).toFixed(1) + "," + y(v).toFixed(1);
      prev = t;
    }
    svg.appendChild(svgEl("path", { d, fill: "none", stroke: color, "stroke-width": 1.8, "stroke-linejoin": "round" }));
    const pts = s.values.filter((p) => p[1] !== null && p[1] !== undefined);
    if (pts.length <= 2) for (const [t, v] of pts) svg.appendChild(svgEl("circle", { cx: x(t), cy: y(v), r: 2.5, fill: color }));
  });
  hover(svg, spec, x, L, W - R, T, H - B);
  const legend = document.createElement("div");
  legend.className = "legend";
  spec.series.forEach((s, i) => {
    const item = document.createElement("span");
    const sw = document.createElement("i");
    sw.className = "swatch c" + (i % PALETTE.length);
    item.append(sw, document.createTextNode(s.name));
    legend.appendChild(item);
  });
  box.appendChild(legend);
  return box;
}

// A vertical rule and a label with every series' value at the bucket under the pointer.
function hover(svg, spec, x, left, right, top, bottom) {
  const rule = svgEl("line", { y1: top, y2: bottom, class: "rule", visibility: "hidden" });
  const label = svgEl("text", { y: top + 12, class: "hover", visibility: "hidden" });
  svg.append(rule, label);
  const times = spec.series[0].values.map((p) => p[0]);
  svg.addEventListener("mousemove", (ev) => {
    const r = svg.getBoundingClientRect();
    const px = ((ev.clientX - r.left) / r.width) * 560;
    if (px < left || px > right || !times.length) return;
    let best = 0;
    times.forEach((t, i) => { if (Math.abs(x(t) - px) < Math.abs(x(times[best]) - px)) best = i; });
    const t = times[best];
    rule.setAttribute("x1", x(t)); rule.setAttribute("x2", x(t));
    const vals = spec.series.map((s) => {
      const v = s.values[best] ? s.values[best][1] : null;
      return s.name + " " + (spec.percent && v !== null ? Math.round(v * 100) + "%" : fmtNum(v));
    });
    label.textContent = fmtTime(t, 1) + "  " + vals.join("  ");
    const flip = x(t) > (left + right) / 2;
    label.setAttribute("x", flip ? x(t) - 6 : x(t) + 6);
    label.setAttribute("text-anchor", flip ? "end" : "start");
    rule.setAttribute("visibility", "visible"); label.setAttribute("visibility", "visible");
  });
  svg.addEventListener("mouseleave", () => {
    rule.setAttribute("visibility", "hidden"); label.setAttribute("visibility", "hidden");
  });
}

window.EdgeCharts = { lineChart, fmtNum, fmtTime, PALETTE };
})();
