#include "coordinator/status_page.h"

namespace fanmap {

const char kStatusPageHtml[] = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fanmap status</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .5em; }
#summary { margin: .5em 0 1em; }
#summary span { display: inline-block; margin-right: 1.5em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { padding: .2em .7em; border-bottom: 1px solid #ddd; text-align: right; }
th:nth-child(-n+3), td:nth-child(-n+3) { text-align: left; }
#error { color: #a00; }
</style>
</head>
<body>
<h1>fanmap <span id="state">…</span></h1>
<div id="error"></div>
<div id="summary"></div>
<h2>Workers (<span id="worker-count">0</span>)</h2>
<table>
<thead><tr><th>id</th><th>name</th><th>host</th><th>slots</th><th>in flight</th>
<th>tasks done</th><th>mean task (ms)</th><th>last seen (s ago)</th></tr></thead>
<tbody id="workers"></tbody>
</table>
<h2>Left the run (<span id="departed-count">0</span>)</h2>
<table>
<thead><tr><th>id</th><th>name</th><th>host</th><th>tasks done</th><th>mean task (ms)</th>
<th>why it left</th></tr></thead>
<tbody id="departed"></tbody>
</table>
<noscript>This page needs JavaScript; the same data is at <a href="status">/status</a>.</noscript>
<script>
"use strict";
function cell(row, text) { row.insertCell().textContent = text; }
function fill(id, rows, columns) {
  const body = document.getElementById(id);
  body.replaceChildren();
  for (const w of rows) {
    const row = body.insertRow();
    row.className = "worker";
    for (const c of columns) cell(row, c(w));
  }
}
function duration(s) {
  if (s === null) return "unknown";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
}
function show(st) {
  document.getElementById("state").textContent = st.state;
  const items = st.items;
  const parts = [
    "done " + items.done + (items.total !== null ? " of " + items.total : ""),
    "read " + items.read, "failed " + items.failed, "in flight " + items.in_flight,
    "retried " + items.retried, st.rate_per_s.toFixed(1) + " items/s",
    "ETA " + duration(st.eta_s), "elapsed " + duration(st.elapsed_s),
    st.workers.length + " workers on " + st.hosts + " hosts, " + st.slots + " slots"];
  const summary = document.getElementById("summary");
  summary.replaceChildren();
  for (const p of parts) summary.appendChild(document.createElement("span")).textContent = p;
  document.getElementById("worker-count").textContent = st.workers.length;
  document.getElementById("departed-count").textContent = st.departed_count;
  fill("workers", st.workers, [w => w.id, w => w.name, w => w.host, w => w.slots,
       w => w.in_flight, w => w.tasks_done, w => w.mean_task_ms.toFixed(2),
       w => (w.last_seen_ms_ago / 1000).toFixed(1)]);
  fill("departed", st.departed.slice().reverse(), [w => w.id, w => w.name, w => w.host,
       w => w.tasks_done, w => w.mean_task_ms.toFixed(2), w => w.why_left]);
}
async function refresh() {
  try {
    const response = await fetch("status", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    show(await response.json());
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent =
        "cannot read the status (" + e.message + "): the run may be over";
  }
  setTimeout(refresh, 1000);
}
refresh();
</script>
</body>
</html>
)html";

}  // namespace fanmap
