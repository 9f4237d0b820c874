// daqhub dashboard: polls api/state for what changed since the last tick and draws it.
// Plots are redrawn only while on screen, so a lab of 40 instruments costs the browser
// (and the machine running the lab) no more than the handful of plots in view.
// Ticks count within one run (the state's run id): a page left open while the next run
// took over the address showed the last run's instruments, "running", for good.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const headers = token ? { "X-Daqhub-Token": token } : {};
let run = "", since = 0, rate = 4, historyMs = 60000, failures = 0, ended = false;
let rows = {}, channels = {};
const onScreen = new Set(), dirty = new Set();
const ENDED_POLL_MS = 10000;  // after the run ended: only to notice the next one here
const PLOT_CONFIG = { staticPlot: true, responsive: false };
const PLOT_EVERY_MS = 500, DRAW_SHARE = 0.15;  // see draw()
let nextDrawAt = 0;

const observer = new IntersectionObserver(entries => {
  for (const e of entries) {
    const key = e.target.dataset.key;
    if (e.isIntersecting) { onScreen.add(key); dirty.add(key); } else onScreen.delete(key);
  }
});

function el(tag, attrs = {}, text = "") {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text) n.textContent = text;
  return n;
}

function channel(key, kind, unit = "", axisUnit = "") {
  if (channels[key]) return channels[key];
  const card = el("div", { class: "card", "data-key": key, "data-kind": kind });
  document.getElementById("plots").appendChild(card);
  observer.observe(card);
  return (channels[key] = { key, kind, unit, axisUnit, card, t: [], v: [], trace: null, frame: null });
}

function row(inst) {
  if (rows[inst.id]) return rows[inst.id];
  const tr = el("tr", { "data-instrument": inst.id });
  const cells = {};
  for (const name of ["id", "flavor", "type", "state", "rate", "values", "measurements",
                      "errors", "restarts", "reconnects", "last_error"]) {
    const cls = ["measurements", "errors", "restarts", "reconnects", "rate"].includes(name)
      ? "num" : name === "last_error" ? "err" : name;
    cells[name] = tr.appendChild(el("td", { class: cls, "data-col": name }));
  }
  cells.id.textContent = inst.id; cells.flavor.textContent = inst.flavor;
  cells.type.textContent = inst.type;
  document.querySelector("#instruments tbody").appendChild(tr);
  const opt = el("option", { value: inst.id }, inst.id);
  document.getElementById("cmd-instrument").appendChild(opt);
  return (rows[inst.id] = { cells, values: {} });
}

function setText(node, text) { if (node.textContent !== text) node.textContent = text; }

function updateRow(inst) {
  const r = row(inst), c = r.cells;
  setText(c.state, inst.state); c.state.className = "state-" + inst.state;
  setText(c.rate, `${inst.rate_hz.toFixed(1)} / ${inst.requested_hz} Hz`);
  c.rate.classList.toggle("slow", inst.state === "running" && inst.rate_hz < 0.9 * inst.requested_hz);
  for (const [name, text] of Object.entries(inst.values)) {
    let span = r.values[name];
    if (!span) {
      span = r.values[name] = c.values.appendChild(el("span", { class: "value", "data-key": `${inst.id}/${name}` }));
      span.appendChild(el("b", {}, name + " "));
      span.appendChild(el("span", { class: "v" }));
    }
    setText(span.lastChild, text || "-");
  }
  // a remote run without the service's health action reports no error counts: "-"
  for (const name of ["measurements", "errors", "restarts", "reconnects"])
    setText(c[name], String(inst[name] ?? "-"));
  setText(c.last_error, inst.last_error); c.last_error.title = inst.last_error;
}

function list(id, items, text, empty, title = () => "") {
  const ul = document.getElementById(id);
  const lines = items.map(text);
  if (ul.dataset.shown === JSON.stringify(lines)) return;
  ul.dataset.shown = JSON.stringify(lines);
  ul.replaceChildren(...(lines.length ? lines.map((t, i) => el("li", { title: title(items[i]) }, t))
                                      : [el("li", { class: "none" }, empty)]));
}

function bytes(n) { return n > 1e6 ? (n / 1e6).toFixed(1) + " MB" : n > 1e3 ? (n / 1e3).toFixed(1) + " kB" : n + " B"; }

function progress(r) {
  // steps_done counts every step of every cycle; the page shows where the current cycle is
  const inCycle = r.steps ? r.steps_done - r.cycles * r.steps : r.steps_done;
  const where = r.state === "running" && r.steps
    ? `step ${inCycle + 1} of ${r.steps}` + (r.repeat ? `, cycle ${r.cycles + 1}` : "")
    : `${r.steps_done} step(s)` + (r.repeat ? ` in ${r.cycles} cycle(s)` : "");
  return `${r.instrument}: ${r.state}, ${where}` + (r.error ? ` - ${r.error}` : "");
}

const alarms = [];
function reset() {
  observer.disconnect();
  for (const c of Object.values(channels)) Plotly.purge(c.card);
  rows = {}; channels = {}; alarms.length = 0; onScreen.clear(); dirty.clear();
  for (const sel of ["#instruments tbody", "#cmd-instrument", "#plots"])
    document.querySelector(sel).replaceChildren();
}

function apply(s) {
  rate = s.rate_hz;
  if (s.run !== run) {  // another run answers here: start over, from its tick 0
    if (run) reset();
    run = s.run;
    if (!s.channels) { since = 0; return; }
  }
  historyMs = s.history_s * 1000; ended = s.ended;
  document.getElementById("title").textContent = s.title;
  if (s.channels) for (const c of s.channels) channel(c.key, c.kind, c.unit, c.axis_unit);
  for (const inst of s.instruments) updateRow(inst);
  for (const [key, pts] of Object.entries(s.series)) {
    const c = channel(key, "scalar");
    for (let i = 0; i < pts.t.length; i++) { c.t.push(pts.t[i]); c.v.push(pts.v[i]); }
    const horizon = c.t[c.t.length - 1] - historyMs;
    let drop = 0;
    while (drop < c.t.length && c.t[drop] < horizon) drop++;
    if (drop) { c.t.splice(0, drop); c.v.splice(0, drop); }
    dirty.add(key);
  }
  for (const [key, tr] of Object.entries(s.traces)) { channel(key, "spectrum").trace = tr; dirty.add(key); }
  for (const [key, fr] of Object.entries(s.frames)) { channel(key, "image").frame = fr; dirty.add(key); }
  for (const a of s.alarms) alarms.push(a);
  list("alarms", alarms.slice(-50).reverse(),
       a => `${new Date(a.time * 1000).toLocaleTimeString()} ${a.message}`, "none");
  list("routines", s.routines, progress, "none");
  list("files", s.files, f => `${f.name} (${f.bytes != null ? bytes(f.bytes) : f.rows + " rows"})`,
       "none yet", f => f.path);
  const cmd = document.getElementById("commands");
  cmd.hidden = !s.commands;
  const status = document.getElementById("status");
  status.className = s.problem ? "lost" : ended ? "ended" : "";
  status.textContent = (ended ? "the run ended - " : "") +
    `updated ${new Date().toLocaleTimeString()}` +
    (s.dropped ? ` - page dropped ${s.dropped} batch(es) to keep up` : "") +
    (s.unreadable ? ` - ${s.unreadable} batch(es) unreadable` : "") +
    (s.problem ? ` - ${s.problem}` : "");
  since = s.tick;
  requestAnimationFrame(draw);
}

function layout(c, extra) {
  return Object.assign({
    title: { text: `${c.key}${c.unit ? " [" + c.unit + "]" : ""}`, font: { size: 12 }, x: 0.02 },
    margin: { l: 52, r: 8, t: 26, b: 28 }, height: 198, showlegend: false,
    font: { size: 10 },
  }, extra);
}

// Drawing is budgeted: a pass redraws the changed plots on screen, and the next pass
// waits until drawing has taken at most DRAW_SHARE of the time (and PLOT_EVERY_MS at
// least). A few plots in view refresh twice a second; a screenful of them less often,
// so the browser never takes the CPU the lab on the same machine needs.
function draw() {
  const start = performance.now();
  if (start < nextDrawAt) return;
  for (const key of dirty) {
    const c = channels[key];
    if (!onScreen.has(key)) continue;
    dirty.delete(key);
    if (c.kind === "scalar") {
      Plotly.react(c.card, [{ x: c.t.map(t => new Date(t)), y: c.v, mode: "lines",
                               line: { width: 1.5, color: "#1f77b4" } }],
                   layout(c, { xaxis: { type: "date" } }), PLOT_CONFIG);
    } else if (c.kind === "spectrum" && c.trace) {
      Plotly.react(c.card, [{ x: c.trace.x, y: c.trace.y, mode: "lines",
                               line: { width: 1.5, color: "#d62728" } }],
                   layout(c, { xaxis: { title: { text: c.axisUnit } } }), PLOT_CONFIG);
    } else if (c.kind === "image" && c.frame) {
      Plotly.react(c.card, [{ z: c.frame.z, type: "heatmap", colorscale: "Viridis", showscale: false }],
                   layout(c, { yaxis: { autorange: "reversed", scaleanchor: "x" } }), PLOT_CONFIG);
    }
  }
  const spent = performance.now() - start;
  nextDrawAt = start + Math.max(PLOT_EVERY_MS, spent / DRAW_SHARE);
}

async function poll() {
  try {
    const r = await fetch(`api/state?since=${since}`, { headers, cache: "no-store" });
    if (!r.ok) throw new Error(`${r.status}: ${await r.text()}`);
    apply(await r.json());
    failures = 0;
  } catch (e) {
    failures++;
    const status = document.getElementById("status");
    if (!ended) {  // an ended run's dashboard closes: its last word stays on the page
      status.className = "lost";
      status.textContent = `no update (${e.message}); retrying`;
    }
  }
  setTimeout(poll, ended ? ENDED_POLL_MS : Math.min(10000, (1000 / rate) * (1 + failures)));
}

// The box shows the latest command, marked while it is on its way, then its own outcome:
// an error, no answer (the dashboard gone) or an unreadable one, never the one before.
let commandsSent = 0;
document.getElementById("command-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const out = document.getElementById("cmd-result");
  const show = (text, cls) => { out.textContent = text; out.className = cls; };
  let args;
  try { args = JSON.parse(document.getElementById("cmd-args").value || "[]"); }
  catch (e) { show("args: not JSON", "failed"); return; }
  const body = { instrument: document.getElementById("cmd-instrument").value,
                 method: document.getElementById("cmd-method").value, args };
  const what = `${body.instrument}.${body.method}`, mine = ++commandsSent;
  show(`${what}: sending ...`, "sending");
  let text, failed = true;
  try {
    const r = await fetch("api/call", { method: "POST", headers: { ...headers, "Content-Type": "application/json" },
                                        body: JSON.stringify(body) });
    const raw = await r.text();
    if (r.headers.get("Content-Type")?.includes("json")) {
      const answer = JSON.parse(raw);
      text = JSON.stringify(answer); failed = !answer.ok;
    } else text = `${r.status}: ${raw}`;
  } catch (e) {
    text = `${e instanceof SyntaxError ? "unreadable answer" : "no answer"} (${e.message})`;
  }
  if (mine === commandsSent) show(`${what}: ${text}`, failed ? "failed" : "");
});

poll();
