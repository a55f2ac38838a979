// The Busline monitor page: polls the "all" document (relative to this
// page) and draws it. Every value goes in through textContent, never as
// HTML: topics, patterns and errors come from the network.
"use strict";

const params = new URLSearchParams(location.search);
const interval = Math.max(100, Number(params.get("interval")) || 1000);
const keep = 60; // samples per chart

// The tiles: what a person looks for first. rate: show the per-second
// change of the value; alert: the tile turns red when the value grows.
const tiles = [
  { id: "published", label: "Published /s", rate: true, get: d => d.Stats.Bus && d.Stats.Bus.Published, sub: v => "total " + fmt(v) },
  { id: "delivered", label: "Delivered /s", rate: true, get: d => d.Stats.Bus && d.Stats.Bus.Delivered, sub: v => "total " + fmt(v) },
  { id: "dropped", label: "Dropped", alert: true, get: d => d.Stats.Bus && d.Stats.Bus.Dropped, sub: (v, r) => fmt(r) + " /s" },
  { id: "failed", label: "Handler failures", alert: true, get: d => d.Stats.Bus && (d.Stats.Bus.Failed + d.Stats.Bus.Abandoned), sub: (v, r) => fmt(r) + " /s" },
  { id: "queued", label: "Queue depth", get: d => d.Stats.Bus && d.Stats.Bus.Queued, sub: () => "events waiting in async queues" },
  { id: "exported", label: "Exported /s", rate: true, get: d => sum(d.Stats.Bridges, b => b.Stats.Exported), sub: v => "total " + fmt(v) },
  { id: "imported", label: "Imported /s", rate: true, get: d => sum(d.Stats.Bridges, b => b.Stats.Imported), sub: v => "total " + fmt(v) },
  { id: "gaps", label: "Events missed (gaps)", alert: true, get: d => sum(d.Stats.Bridges, b => b.Stats.GapEvents), sub: (v, r, d) => fmt(sum(d.Stats.Bridges, b => b.Stats.Gaps)) + " gaps" },
  { id: "bridgedrops", label: "Bridge drops", alert: true, get: d => sum(d.Stats.Bridges, b => b.Stats.OutboxDropped + b.Stats.ImportDropped + b.Stats.ExportRejected + b.Stats.EncodeErrors + b.Stats.DecodeErrors + b.Stats.SignatureRejected), sub: (v, r) => fmt(r) + " /s" },
  { id: "outbox", label: "Outbox depth", get: d => sum(d.Stats.Bridges, b => b.Stats.OutboxDepth), sub: () => "exports waiting for Redis" },
  { id: "errors", label: "Errors reported", alert: true, get: d => d.Stats.Errors.Total, sub: (v, r, d) => fmt(d.Stats.Errors.Error) + " error, " + fmt(d.Stats.Errors.Warn) + " warn" },
];

const history = {}; // id -> [{t, v}]
let samples = 0;

function sum(list, f) { return (list || []).reduce((a, x) => a + (f(x) || 0), 0); }
function fmt(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return "–";
  if (Math.abs(n) >= 100 || Number.isInteger(n)) return Math.round(n).toLocaleString("en-US");
  return n.toFixed(1);
}
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k === undefined || k === null ? "" : String(k));
  return e;
}
function since(t) {
  if (!t || t.startsWith("0001-")) return "never";
  const s = Math.round((Date.now() - Date.parse(t)) / 1000);
  return s < 60 ? s + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
}

function buildTiles() {
  const box = document.getElementById("tiles");
  for (const t of tiles) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 " + (keep - 1) + " 100");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.append(document.createElementNS("http://www.w3.org/2000/svg", "polyline"));
    const tile = el("div", { class: "tile", id: "tile-" + t.id });
    tile.append(el("div", { class: "label" }, t.label), el("div", { class: "value", id: "v-" + t.id }, "–"),
      el("div", { class: "sub", id: "s-" + t.id }), svg);
    box.append(tile);
    history[t.id] = [];
  }
}

// rate returns the per-second change between the last two samples.
function rate(h) {
  if (h.length < 2) return 0;
  const a = h[h.length - 2], b = h[h.length - 1];
  return b.t > a.t ? Math.max(0, (b.v - a.v) / ((b.t - a.t) / 1000)) : 0;
}

function drawTiles(d) {
  const now = Date.parse(d.Stats.Now);
  for (const t of tiles) {
    const v = t.get(d);
    const h = history[t.id];
    if (v === undefined || v === null) continue;
    h.push({ t: now, v: v });
    if (h.length > keep + 1) h.shift();
    const r = rate(h);
    const shown = t.rate ? r : v;
    document.getElementById("v-" + t.id).textContent = fmt(shown);
    document.getElementById("v-" + t.id).dataset.raw = String(v);
    document.getElementById("s-" + t.id).textContent = t.sub ? t.sub(v, r, d) : "";
    document.getElementById("tile-" + t.id).classList.toggle("alert", !!t.alert && v > 0);
    // The chart: rates for counters, values for depths and alerts.
    const pts = [];
    for (let i = 1; i < h.length; i++) pts.push(t.rate || t.alert ? rate(h.slice(0, i + 1)) : h[i].v);
    const max = Math.max(1, ...pts);
    const off = keep - pts.length;
    document.querySelector("#tile-" + t.id + " polyline").setAttribute("points",
      pts.map((p, i) => (off + i) + "," + (100 - 95 * p / max).toFixed(1)).join(" "));
  }
}

function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  const out = [];
  for (const cells of rows) {
    const tr = el("tr");
    for (const c of cells) {
      const td = typeof c === "object" && c !== null ? el("td", { class: c.cls || "", title: c.title || "" }, c.text)
        : el("td", { class: typeof c === "number" ? "num" : "" }, typeof c === "number" ? fmt(c) : c);
      tr.append(td);
    }
    out.push(tr);
  }
  body.replaceChildren(...out);
}

function draw(d) {
  drawTiles(d);
  fill("connections", d.Connections.Connections.map(c => [c.Bridge, c.Kind, c.Node, c.Route,
    { text: c.Connected ? "connected" : (c.Since.startsWith("0001-") ? "not yet" : "down"), cls: c.Connected ? "up" : "down" },
    since(c.Since), c.Failures, { text: c.LastError ? c.LastError + " (" + since(c.LastErrorAt) + ")" : "", cls: "wrap" }]));
  fill("routes", d.Routes.Routes.map(r => [r.Bridge, r.Index, r.Pattern, r.Direction, r.Delivery, r.Stream || r.Channel,
    r.Exported, r.Imported, r.EncodeErrors, r.ExportRejected, r.DecodeErrors, r.SignatureRejected, r.ImportDropped,
    fmt(r.Gaps) + " (" + fmt(r.GapEvents) + ")", r.Delivery === "pubsub" ? "shared" : r.OutboxDepth]));
  const subs = d.Subscriptions;
  document.getElementById("subcount").textContent = subs.Total + (subs.Truncated ? " (first " + subs.Subscriptions.length + " shown)" : "");
  fill("subscriptions", subs.Subscriptions.map(s => [s.Name, s.Pattern, s.Kind, s.Policy, s.Group, s.Delivered,
    { text: fmt(s.Dropped), cls: s.Dropped > 0 ? "num down" : "num" }, s.Failed, s.Panics,
    s.Capacity ? fmt(s.Queued) + " / " + fmt(s.Capacity) : "", s.Capacity ? s.HighWater : "", { text: s.Where, cls: "wrap" }]));
  const errs = d.Errors;
  document.getElementById("errcount").textContent = fmt(errs.Counts.Total) + " since start";
  fill("errors", errs.Errors.map(e => [new Date(e.Time).toLocaleTimeString(), { text: e.Level, cls: e.Level }, e.Kind,
    { text: e.Error, cls: "wrap", title: Object.entries(e.Attrs || {}).map(([k, v]) => k + "=" + v).join("\n") }]));
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const res = await fetch("all", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const d = await res.json();
    draw(d);
    samples++;
    document.body.dataset.samples = String(samples);
    const h = document.body.dataset.history ? document.body.dataset.history + "," : "";
    document.body.dataset.history = h + (d.Stats.Bus ? d.Stats.Bus.Published : 0);
    status.textContent = "live";
    status.className = "status ok";
    document.getElementById("updated").textContent = "updated " + new Date(d.Stats.Now).toLocaleTimeString() + ", every " + interval / 1000 + " s";
  } catch (err) {
    status.textContent = "unreachable: " + err.message;
    status.className = "status bad";
  }
  setTimeout(poll, interval);
}

buildTiles();
poll();
