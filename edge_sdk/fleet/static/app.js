// The fleet dashboard: hash routes (#/, #/device/FLEET/ID, #/alerts, #/rollouts) rendered
// from the JSON API, re-read when the server sends a "change" event. Read-only.
"use strict";

const { lineChart, fmtNum, fmtTime } = window.EdgeCharts;
const RANGES = [["15m", 900], ["1h", 3600], ["6h", 21600], ["24h", 86400], ["7d", 604800], ["30d", 2592000]];
const state = { sort: "device", desc: false, fleet: "", status: "", search: "", range: 3600, view: null };

// h("td", {class: "x"}, "text", child...) → element; text is always text, never HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

const pct = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(v < 0.1 && v > 0 ? 1 : 0) + "%");
const num = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
function ago(s) {
  if (s === null || s === undefined) return "–";
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
const badge = (status) => h("span", { class: "badge " + status }, status);
const exitsText = (rates) => Object.entries(rates || {}).map(([k, v]) => k + ": " + pct(v)).join("  ") || "–";
const deviceHref = (d) => "#/device/" + encodeURIComponent(d.fleet) + "/" + encodeURIComponent(d.device);

// ---- fleet table ------------------------------------------------------------------
const COLUMNS = [
  ["device", "device", (d) => h("a", { href: deviceHref(d) }, d.device)],
  ["fleet", "fleet", (d) => d.fleet],
  ["status", "status", (d) => badge(d.status)],
  ["model", "model", (d) => (d.model ? d.model + " " + d.model_version : "–")],
  ["latency_p50_ms", "p50 ms", (d) => num(d.latency_p50_ms)],
  ["latency_p95_ms", "p95 ms", (d) => num(d.latency_p95_ms)],
  ["throughput_per_s", "per s", (d) => num(d.throughput_per_s, 1)],
  ["errors", "errors", (d) => (d.errors === null ? "–" : d.errors)],
  ["cache_hit_rate", "cache hits", (d) => pct(d.cache_hit_rate)],
  ["exit_rates", "exits", (d) => exitsText(d.exit_rates)],
  ["last_seen_s_ago", "last seen", (d) => ago(d.last_seen_s_ago)],
];
const NUMERIC = new Set(["latency_p50_ms", "latency_p95_ms", "throughput_per_s", "errors", "cache_hit_rate", "last_seen_s_ago"]);

function sortKey(d, key) {
  if (key === "model") return (d.model || "") + " " + (d.model_version || "");
  if (key === "exit_rates") return Object.values(d.exit_rates || {})[0] ?? -1;
  return d[key];
}

function sortedDevices(devices) {
  const q = state.search.toLowerCase();
  const rows = devices.filter((d) =>
    (!state.fleet || d.fleet === state.fleet) && (!state.status || d.status === state.status) &&
    (!q || (d.device + " " + d.model).toLowerCase().includes(q)));
  const dir = state.desc ? -1 : 1;
  rows.sort((a, b) => {
    const x = sortKey(a, state.sort), y = sortKey(b, state.sort);
    if (x === y) return a.device < b.device ? -1 : 1;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * dir;
  });
  return rows;
}

function summary(devices, alerts) {
  const online = devices.filter((d) => d.status === "online");
  const total = online.reduce((s, d) => s + (d.throughput_per_s || 0), 0);
  const p95s = online.map((d) => d.latency_p95_ms).filter((v) => v !== null).sort((a, b) => a - b);
  const card = (label, value, cls) => h("div", { class: "card " + (cls || "") }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));
  return h("section", { class: "cards" },
    card("devices", devices.length),
    card("online", online.length, "ok"),
    card("offline", devices.filter((d) => d.status === "offline").length, devices.some((d) => d.status === "offline") ? "bad" : ""),
    card("inferences per s", fmtNum(total)),
    card("median p95 ms", p95s.length ? num(p95s[Math.floor(p95s.length / 2)]) : "–"),
    card("alerts", alerts.length, alerts.length ? "warn" : ""));
}

function filters(fleets) {
  const sel = (id, options, value, set) => h("select", { id, onchange: (e) => { set(e.target.value); render(); } },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
  return h("div", { class: "filters" },
    h("label", {}, "fleet ", sel("filter-fleet", [["", "all"], ...fleets.map((f) => [f, f])], state.fleet, (v) => (state.fleet = v))),
    h("label", {}, "status ", sel("filter-status", [["", "all"], ["online", "online"], ["offline", "offline"], ["unknown", "unknown"]], state.status, (v) => (state.status = v))),
    h("input", { id: "filter-search", type: "search", placeholder: "device or model…", value: state.search,
      oninput: (e) => { state.search = e.target.value; renderTable(); } }));
}

function fleetTable(devices) {
  const head = h("tr", {}, COLUMNS.map(([key, label]) => h("th", {
    class: (NUMERIC.has(key) ? "num " : "") + (state.sort === key ? (state.desc ? "sorted desc" : "sorted asc") : ""),
    onclick: () => { state.desc = state.sort === key ? !state.desc : false; state.sort = key; renderTable(); },
  }, label)));
  const rows = sortedDevices(devices).map((d) => h("tr", { "data-device": d.device, class: d.status },
    COLUMNS.map(([key, , cell]) => h("td", { class: NUMERIC.has(key) ? "num" : "" }, cell(d)))));
  return h("table", { id: "fleet-table", class: "grid" }, h("thead", {}, head),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: COLUMNS.length, class: "muted" }, "no devices match"))));
}

let lastFleet = null;
function renderTable() {
  const old = document.getElementById("fleet-table");
  if (old && lastFleet) old.replaceWith(fleetTable(lastFleet.devices));
}

async function fleetView(main) {
  const [fleet, alerts] = await Promise.all([getJSON("/api/fleet"), getJSON("/api/alerts")]);
  lastFleet = fleet;
  setAlertCount(alerts.alerts);
  const caption = h("p", { class: "muted" }, fleet.devices.length + " devices · updated " + fmtTime(fleet.now, 1));
  main.replaceChildren(summary(fleet.devices, alerts.alerts), filters(fleet.fleets), fleetTable(fleet.devices), caption);
}

// ---- device page -------------------------------------------------------------------
function series(points, field) {
  return points.map((p) => [p.t + 0, p[field]]);
}

function exitSeries(points) {
  const stages = [...new Set(points.flatMap((p) => Object.keys(p.exit_rates || {})))].sort();
  return stages.map((s) => ({ name: "stage " + s, values: points.map((p) => [p.t, p.exit_rates && s in p.exit_rates ? p.exit_rates[s] : null]) }));
}

function deviceCharts(s) {
  const base = { start: s.start, end: s.end, step: s.step };
  const pts = s.points;
  const one = (title, unit, field, name, extra) => lineChart({ ...base, title, unit, yMin: 0, ...extra, series: [{ name, values: series(pts, field) }] });
  return h("section", { class: "charts" },
    lineChart({ ...base, title: "Latency", unit: "ms", yMin: 0, series: [
      { name: "p50", values: series(pts, "latency_p50") }, { name: "p95", values: series(pts, "latency_p95") },
      { name: "p99", values: series(pts, "latency_p99") }] }),
    one("Throughput", "inferences/s", "throughput", "per s"),
    one("Errors", "per min", "errors_per_min", "errors/min"),
    one("Cache hits", "share of inferences", "cache_hit_rate", "hit rate", { percent: true }),
    lineChart({ ...base, title: "Early exits", unit: "share per stage", yMin: 0, percent: true, series: exitSeries(pts).length ? exitSeries(pts) : [{ name: "exits", values: [] }] }),
    one("CPU", "%", "cpu_percent", "cpu %"),
    one("Memory", "MB RSS", "rss_mb", "rss MB"),
    one("Temperature", "°C", "temperature_c", "°C", { yMin: undefined }));
}

function table(id, cols, rows, empty) {
  return h("table", { id, class: "grid compact" }, h("thead", {}, h("tr", {}, cols.map(([label]) => h("th", {}, label)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, cols.map(([, cell]) => h("td", {}, cell(r)))))
      : h("tr", {}, h("td", { colspan: cols.length, class: "muted" }, empty))));
}

const when = (ts) => new Date(ts * 1000).toLocaleString([], { hour12: false });

async function deviceView(main, fleet, device) {
  const body = await getJSON(`/api/device?fleet=${encodeURIComponent(fleet)}&device=${encodeURIComponent(device)}&range=${state.range}`);
  const d = body.device;
  const facts = [["fleet", d.fleet], ["model", d.model ? d.model + " " + d.model_version : "–"], ["agent", d.agent_version || "–"],
    ["boot", (d.boot_id || "").slice(0, 8) || "–"], ["p95", num(d.latency_p95_ms) + " ms"], ["throughput", num(d.throughput_per_s, 1) + "/s"],
    ["cache hits", pct(d.cache_hit_rate)], ["last seen", ago(d.last_seen_s_ago)]];
  const ranges = h("div", { class: "ranges" }, RANGES.map(([label, secs]) => h("button", {
    class: secs === state.range ? "active" : "", "data-range": secs, onclick: () => { state.range = secs; render(); },
  }, label)));
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← all devices")),
    h("div", { class: "device-head" }, h("h1", {}, d.device, " ", badge(d.status)), ranges),
    h("dl", { class: "facts" }, facts.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v)))),
    deviceCharts(body.series),
    h("h2", {}, "Deployments"),
    table("deploys", [["time", (r) => when(r.ts)], ["rollout", (r) => r.rollout_id], ["version", (r) => r.version],
      ["phase", (r) => badge(r.phase)], ["reason", (r) => r.reason || ""]], body.deploys, "no deployments reported"),
    h("h2", {}, "Alerts"),
    alertTable(body.alerts, false));
}

// ---- alerts and rollouts -------------------------------------------------------------
function alertTable(alerts, withDevice) {
  const cols = [["time", (a) => when(a.ts)]];
  if (withDevice) cols.push(["device", (a) => h("a", { href: deviceHref(a) }, a.fleet + "/" + a.device)]);
  cols.push(["kind", (a) => a.kind], ["severity", (a) => badge(a.severity)], ["message", (a) => a.message]);
  return table("alerts", cols, alerts, "no alerts");
}

function setAlertCount(alerts) {
  document.getElementById("alert-count").textContent = alerts.length ? String(alerts.length) : "";
}

async function alertsView(main) {
  const body = await getJSON("/api/alerts");
  setAlertCount(body.alerts);
  main.replaceChildren(h("h1", {}, "Alerts"), alertTable(body.alerts, true));
}

function progress(label, part) {
  const share = (n) => (part.targeted ? (100 * n) / part.targeted : 0);
  return h("div", { class: "progress-row" }, h("span", { class: "plabel" }, label),
    h("div", { class: "bar", title: `${part.active} active, ${part.updating} updating, ${part.failed} failed of ${part.targeted}` },
      h("i", { class: "ok", "data-w": Math.round(share(part.active)) }), h("i", { class: "mid", "data-w": Math.round(share(part.updating)) }),
      h("i", { class: "bad", "data-w": Math.round(share(part.failed)) })),
    h("span", { class: "pcount" }, `${part.active}/${part.targeted} active` + (part.updating ? ` · ${part.updating} updating` : "") +
      (part.failed ? ` · ${part.failed} failed` : "")));
}

async function rolloutsView(main) {
  const body = await getJSON("/api/rollouts");
  const cards = body.rollouts.map((r) => h("article", { class: "rollout" },
    h("header", {}, h("strong", {}, r.name + " " + r.version), " ", badge(r.outcome), " ", h("span", { class: "muted" }, r.phase)),
    h("p", { class: "muted" }, `${r.rollout} · fleet ${r.fleet} · group ${r.group} · canary ${r.canary_percent}% · started ${when(r.started)}`),
    progress("canary", r.canary), progress("rest", r.rest),
    h("details", {}, h("summary", {}, r.targeted + " devices"),
      table("rollout-devices", [["device", (d) => d.device], ["canary", (d) => (d.canary ? "yes" : "")],
        ["status", (d) => badge(d.status)], ["reason", (d) => d.reason]], r.devices, "none"))));
  main.replaceChildren(h("h1", {}, "Rollouts"), cards.length ? h("div", {}, cards) : h("p", { class: "muted" }, "no rollouts recorded"));
  // Bar widths through the CSSOM: the page's CSP allows no inline style attributes.
  for (const i of main.querySelectorAll(".bar i")) i.style.width = i.dataset.w + "%";
}

// ---- routing and live updates --------------------------------------------------------
function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "device" && parts.length >= 3) return ["device", parts[1], parts[2]];
  if (parts[0] === "alerts" || parts[0] === "rollouts") return [parts[0]];
  return ["fleet"];
}

let rendering = null, again = false;
async function render() {
  if (rendering) { again = true; return rendering; }
  const [view, ...args] = route();
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.tab === (view === "device" ? "fleet" : view));
  const main = document.getElementById("main");
  const views = { fleet: fleetView, device: deviceView, alerts: alertsView, rollouts: rolloutsView };
  rendering = views[view](main, ...args).catch((e) => {
    main.replaceChildren(h("p", { class: "error" }, "Could not load: " + e.message));
  }).finally(() => {
    rendering = null;
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
    if (again) { again = false; render(); }
  });
  return rendering;
}

function live() {
  const dot = document.getElementById("live");
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => { dot.textContent = "live"; dot.className = "live on"; });
  es.addEventListener("change", () => render());
  es.addEventListener("error", () => { dot.textContent = "reconnecting…"; dot.className = "live off"; });
}

window.addEventListener("hashchange", render);
render();
live();
