// DashboardHtml (status_http.h): the coordinator's web page. One file, no
// external assets (the coordinator may run where nothing else can be
// reached): inline CSS, JavaScript that polls /status and /history every
// 2 s, and SVG line charts. Once it has drawn, it sets data-points (chart
// points drawn) and data-step on <body> and the title, for tests.
#include "coordinator/status_http.h"

namespace bert {

const char* DashboardHtml() {
  return R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>bert run</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 6px 0; }
.state { display: inline-block; padding: 1px 8px; border-radius: 4px; color: #fff; background: #777; font-size: 14px; }
.state.running { background: #2a7; } .state.checkpointing { background: #27a; } .state.recovering { background: #a72; }
.state.failed { background: #c33; } .state.done { background: #555; } .state.starting { background: #999; }
#banner { color: #c33; font-weight: bold; min-height: 1.4em; }
.bar { height: 8px; background: #eee; border-radius: 4px; margin: 6px 0 10px 0; }
.bar > div { height: 8px; background: #2a7; border-radius: 4px; width: 0; }
.figures { display: flex; flex-wrap: wrap; gap: 6px 22px; margin-bottom: 12px; }
.figures b { font-weight: 600; }
.charts { display: flex; gap: 14px; flex-wrap: wrap; }
.chart { border: 1px solid #ddd; border-radius: 4px; padding: 4px 6px; }
.chart h2 { font-size: 13px; margin: 0; font-weight: 600; }
.legend span { margin-right: 10px; font-size: 12px; }
svg text { font-size: 10px; fill: #555; }
table { border-collapse: collapse; margin-top: 14px; }
th, td { padding: 3px 10px; text-align: right; border-bottom: 1px solid #eee; }
th { background: #f4f4f4; } td.left, th.left { text-align: left; }
tr.straggler td { background: #fff3cd; } tr.dead td { background: #f8d7da; }
</style>
</head>
<body data-points="0" data-step="0">
<h1>bert run <span id="run">?</span> <span id="state" class="state">?</span></h1>
<div id="banner"></div>
<div class="bar"><div id="progress"></div></div>
<div class="figures" id="figures"></div>
<div class="charts">
  <div class="chart"><h2>Loss</h2><div class="legend"><span style="color:#d62728">&#9632; loss</span></div>
    <svg id="loss" width="350" height="200"></svg></div>
  <div class="chart"><h2>Accuracy</h2><div class="legend"><span style="color:#1f77b4">&#9632; MLM</span>
    <span style="color:#ff7f0e">&#9632; NSP</span></div><svg id="accuracy" width="350" height="200"></svg></div>
  <div class="chart"><h2>Throughput (samples/s)</h2><div class="legend"><span style="color:#2ca02c">&#9632; samples/s</span></div>
    <svg id="throughput" width="350" height="200"></svg></div>
</div>
<table id="workers"><thead><tr><th>rank</th><th class="left">host</th><th class="left">device</th><th class="left">state</th>
<th>heartbeat</th><th>step</th><th>step ms</th><th>compute ms</th><th>data wait</th><th>memory</th><th class="left">straggler</th>
</tr></thead><tbody></tbody></table>
<script>
"use strict";
const SVG = "http://www.w3.org/2000/svg";
function fmt(v, digits) { return v === null || v === undefined || !isFinite(v) ? "-" : Number(v).toFixed(digits); }
function pct(v) { return v === null || v === undefined || !isFinite(v) ? "-" : (100 * v).toFixed(1) + "%"; }
function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "-";
  s = Math.round(s); const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
  return h ? h + "h" + String(m).padStart(2, "0") + "m" : m ? m + "m" + String(r).padStart(2, "0") + "s" : r + "s";
}
function bytes(v) {
  if (!v) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; ++i; }
  return v.toFixed(i ? 1 : 0) + " " + units[i];
}
function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const k in attrs) node.setAttribute(k, attrs[k]);
  if (text !== undefined) node.textContent = text;
  return node;
}
// Draws the series [{ys, color}] over xs; returns the points drawn.
function chart(id, xs, series) {
  const svg = document.getElementById(id);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height"), L = 52, R = 8, T = 8, B = 22;
  const values = [];
  for (const s of series) for (const y of s.ys) if (y !== null && isFinite(y)) values.push(y);
  if (!xs.length || !values.length) {
    svg.appendChild(el("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, "no data yet"));
    return 0;
  }
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1e-9 * Math.max(1, Math.abs(hi))) { const pad = Math.abs(hi) * 0.05 || 0.5; lo -= pad; hi += pad; }
  const x0 = xs[0], x1 = xs[xs.length - 1] > x0 ? xs[xs.length - 1] : x0 + 1;
  const px = x => L + (x - x0) / (x1 - x0) * (W - L - R), py = y => T + (hi - y) / (hi - lo) * (H - T - B);
  for (let i = 0; i <= 4; ++i) {
    const y = lo + (hi - lo) * i / 4;
    svg.appendChild(el("line", {x1: L, x2: W - R, y1: py(y), y2: py(y), stroke: "#eee"}));
    svg.appendChild(el("text", {x: L - 4, y: py(y) + 3, "text-anchor": "end"}, Math.abs(y) >= 1000 ? y.toFixed(0) : y.toPrecision(3)));
  }
  svg.appendChild(el("line", {x1: L, x2: L, y1: T, y2: H - B, stroke: "#999"}));
  svg.appendChild(el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#999"}));
  svg.appendChild(el("text", {x: L, y: H - 6, "text-anchor": "start"}, "step " + x0));
  svg.appendChild(el("text", {x: W - R, y: H - 6, "text-anchor": "end"}, "step " + xs[xs.length - 1]));
  let drawn = 0;
  for (const s of series) {
    let points = [];
    const flush = () => {
      if (points.length === 1) {
        const [x, y] = points[0].split(",");
        svg.appendChild(el("circle", {cx: x, cy: y, r: 3, fill: s.color}));
      } else if (points.length > 1) {
        svg.appendChild(el("polyline", {points: points.join(" "), fill: "none", stroke: s.color, "stroke-width": 2.5,
                                        "stroke-linejoin": "round", class: "series"}));
      }
      drawn += points.length; points = [];
    };
    for (let i = 0; i < xs.length; ++i) {
      const y = s.ys[i];
      if (y === null || !isFinite(y)) { flush(); continue; }
      points.push(px(xs[i]).toFixed(1) + "," + py(y).toFixed(1));
    }
    flush();
  }
  return drawn;
}
function figure(name, value) { return "<span>" + name + " <b>" + value + "</b></span>"; }
function render(s, h) {
  document.getElementById("run").textContent = s.run;
  const state = document.getElementById("state");
  state.textContent = s.state; state.className = "state " + s.state;
  document.getElementById("progress").style.width = (100 * s.progress).toFixed(1) + "%";
  const stragglers = s.stragglers.length ? s.stragglers.join(", ") : "none";
  document.getElementById("figures").innerHTML = [
    figure("step", s.step + "/" + s.total_steps + " (" + pct(s.progress) + ")"), figure("epoch", s.epoch),
    figure("loss", fmt(s.loss, 4) + " (avg " + fmt(s.loss_avg, 4) + ")"),
    figure("MLM acc", fmt(s.mlm_accuracy, 3)), figure("NSP acc", fmt(s.nsp_accuracy, 3)),
    figure("lr", s.lr === null ? "-" : Number(s.lr).toExponential(2)),
    figure("samples/s", fmt(s.samples_per_s, 1)), figure("tokens/s", fmt(s.tokens_per_s, 0)),
    figure("MFU", pct(s.mfu)), figure("data wait", pct(s.data_wait_fraction)), figure("ETA", duration(s.eta_s)),
    figure("checkpoint", s.last_checkpoint || "none"), figure("restarts", s.restarts),
    figure("stragglers", stragglers)].join("");
  const banner = document.getElementById("banner");
  banner.textContent = s.state === "failed" ? "run failed: " + s.exit_reason
    : s.state === "preempted" ? "run preempted (resumes from its checkpoint): " + s.exit_reason : "";
  const tbody = document.querySelector("#workers tbody");
  tbody.innerHTML = "";
  for (const w of s.workers) {
    const row = tbody.insertRow();
    row.className = w.straggler ? "straggler" : w.state === "dead" ? "dead" : "";
    const cells = [w.rank, w.host || "-", w.device || "-", w.state,
      w.heartbeat_age_s === undefined ? "-" : fmt(w.heartbeat_age_s, 1) + " s", w.step === undefined ? "-" : w.step,
      fmt(w.step_time_ms, 1), fmt(w.compute_ms, 1), pct(w.data_wait_fraction), bytes(w.rss_bytes),
      w.straggler ? "yes (" + fmt(w.slowness, 2) + "x)" : ""];
    cells.forEach((text, i) => { const c = row.insertCell(); c.textContent = text; if (i === 1 || i === 2 || i === 3 || i === 10) c.className = "left"; });
  }
  let points = 0;
  points += chart("loss", h.step, [{ys: h.loss, color: "#d62728"}]);
  points += chart("accuracy", h.step, [{ys: h.mlm_accuracy, color: "#1f77b4"}, {ys: h.nsp_accuracy, color: "#ff7f0e"}]);
  points += chart("throughput", h.step, [{ys: h.samples_per_s, color: "#2ca02c"}]);
  document.body.dataset.points = points;
  document.body.dataset.step = s.step;
  document.title = "bert " + s.run + ": step " + s.step + "/" + s.total_steps + " " + s.state;
}
const token = new URLSearchParams(location.search).get("token");
const request = {cache: "no-store", headers: token ? {"Authorization": "Bearer " + token} : {}};
async function get(path) {
  const r = await fetch(path, request);
  if (!r.ok) throw new Error(path + ": HTTP " + r.status + (r.status == 401 ? " (open the page as /?token=TOKEN)" : ""));
  return r.json();
}
async function refresh() {
  try {
    const [s, h] = await Promise.all([get("status"), get("history")]);
    render(s, h);
  } catch (e) {
    document.getElementById("banner").textContent = "coordinator unreachable (" + e + "); showing the last state";
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
)HTML";
}

}  // namespace bert
