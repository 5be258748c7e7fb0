// Croupier dashboard: plain JavaScript, no build step, charts drawn as SVG.
// Reads the admin API with the admin key kept in this tab's sessionStorage:
//   GET /v1/experiments, /v1/experiments/{key}, …/results, …/allocations, …/history,
//   GET /v1/audit?experiment=; actions POST /v1/experiments/{key}/{start|pause|resume|stop|…}.
// Every value from the server is put into the page as text (never as HTML).
"use strict";

const KEY_STORAGE = "croupier.adminKey";
const REFRESH_MS = 5000;
const COLORS = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2",
  "#ca8a04", "#db2777", "#4b5563", "#65a30d"];
const SVG_NS = "http://www.w3.org/2000/svg";

// actions: which statuses allow them, what the confirm dialog says
const ACTIONS = [
  { name: "start", label: "Start", from: ["draft"], cls: "primary",
    confirm: "Start serving and counting this experiment?" },
  { name: "pause", label: "Pause", from: ["running"],
    confirm: "Pause? Everyone gets the control and nothing is counted until you resume." },
  { name: "resume", label: "Resume", from: ["paused"], cls: "primary",
    confirm: "Resume allocating traffic?" },
  { name: "stop", label: "Stop", from: ["running", "paused"],
    confirm: "Stop the experiment and serve the chosen winner to everyone?" },
  { name: "rollback", label: "Roll back", from: ["running", "paused"], cls: "danger",
    confirm: "Roll back? Everyone gets the control from now on." },
  { name: "archive", label: "Archive", from: ["completed", "rolled_back"],
    confirm: "Archive this ended experiment?" },
];

const state = { timer: null, busy: false, again: false, winner: {}, banner: null };

// ---------------------------------------------------------------- DOM helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "onclick" || k === "onsubmit" || k === "onchange") node[k] = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(node, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// ---------------------------------------------------------------- formatting

function fmtNum(x, digits = 4) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "—";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e6 || a < 1e-4) return x.toExponential(2);
  if (Number.isInteger(x)) return x.toLocaleString("en-US");
  return String(Number(x.toPrecision(digits)));
}

function fmtP(p) {
  if (p === null || p === undefined || !Number.isFinite(p)) return "—";
  if (p === 0) return "< 1e-300";
  return p < 1e-4 ? p.toExponential(1) : p.toFixed(4);
}

function fmtPct(x, digits = 1) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "—";
  return (100 * x).toFixed(digits) + "%";
}

function fmtInt(x) {
  return Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "—";
}

function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "medium" });
}

function badge(text, cls) {
  return el("span", { class: "badge " + (cls || text) }, text.replace("_", " "));
}

function swatch(i) {
  const s = el("span", { class: "swatch" });
  s.style.background = COLORS[i % COLORS.length];
  return s;
}

// ---------------------------------------------------------------- API

class AuthError extends Error {}

async function api(path, method = "GET", body = undefined) {
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (!key) throw new AuthError("Enter an admin key.");
  const headers = { Authorization: "Bearer " + key };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (r.status === 401 || r.status === 403) {
    sessionStorage.removeItem(KEY_STORAGE);
    throw new AuthError((data && data.detail) || "The key was refused.");
  }
  if (!r.ok) throw new Error((data && data.detail) || `${method} ${path}: HTTP ${r.status}`);
  return data;
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------- banner & chrome

function showBanner(text, isError) {
  state.banner = text ? { text, isError } : null;
  const b = document.getElementById("banner");
  b.hidden = !text;
  b.textContent = text || "";
  b.className = isError ? "error" : "";
}

function setCrumbs(key) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(el("a", { href: "#/" }, "Experiments"));
  if (key) nav.append(el("span", {}, " / ", key));
}

function setUpdated(text) {
  document.getElementById("updated").textContent = text;
}

// ---------------------------------------------------------------- charts

const W = 560, H = 220, M = { l: 52, r: 14, t: 10, b: 28 };

function timeTicks(t0, t1, n) {
  const span = t1 - t0, out = [];
  for (let i = 0; i <= n; i++) out.push(t0 + (span * i) / n);
  return out;
}

function timeLabel(t, span) {
  const d = new Date(t);
  if (span > 2 * 86400e3) return d.toLocaleDateString("en-GB", { month: "short", day: "numeric" });
  const o = { hour: "2-digit", minute: "2-digit", hour12: false };
  if (span < 600e3) o.second = "2-digit";
  return d.toLocaleTimeString("en-GB", o);
}

// Step lines over time. series: [{name, color, dashed, points: [[tMillis, y], …]}]
// y: {min, max, log, ticks: [values], format}; hlines: [{y, cls, label}]
function timeChart({ id, series, t0, t1, y, hlines = [] }) {
  if (t1 <= t0) t1 = t0 + 1000;
  const iw = W - M.l - M.r, ih = H - M.t - M.b;
  const tf = (v) => (y.log ? Math.log10(Math.max(v, y.min)) : v);
  const lo = tf(y.min), hi = tf(y.max);
  const X = (t) => M.l + ((t - t0) / (t1 - t0)) * iw;
  const Y = (v) => M.t + ih - ((Math.min(Math.max(tf(v), lo), hi) - lo) / (hi - lo || 1)) * ih;
  const root = svg("svg", { class: "chart", id, viewBox: `0 0 ${W} ${H}`, role: "img" });
  for (const v of y.ticks) {
    root.append(svg("line", { class: "grid-line", x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v) }),
      svg("text", { x: M.l - 6, y: Y(v) + 4, "text-anchor": "end" }, y.format(v)));
  }
  timeTicks(t0, t1, 4).forEach((t, i, all) => {
    const anchor = i === 0 ? "start" : i === all.length - 1 ? "end" : "middle";
    root.append(svg("text", { x: X(t), y: H - 8, "text-anchor": anchor },
      timeLabel(t, t1 - t0)));
  });
  root.append(svg("line", { class: "axis", x1: M.l, x2: W - M.r, y1: M.t + ih, y2: M.t + ih }));
  for (const h of hlines) {
    root.append(svg("line", { class: h.cls, x1: M.l, x2: W - M.r, y1: Y(h.y), y2: Y(h.y) }),
      svg("text", { x: W - M.r - 2, y: Y(h.y) - 4, "text-anchor": "end" }, h.label));
  }
  for (const s of series) {
    if (!s.points.length) continue;
    let d = "";
    s.points.forEach(([t, v], i) => {
      d += i === 0 ? `M${X(t).toFixed(1)},${Y(v).toFixed(1)}`
        : `H${X(t).toFixed(1)}V${Y(v).toFixed(1)}`;
    });
    d += `H${X(t1).toFixed(1)}`;
    const path = svg("path", { class: "series", d, stroke: s.color,
      "stroke-dasharray": s.dashed ? "6 4" : null, "data-points": s.points.length },
    svg("title", {}, s.name));
    root.append(path);
  }
  return root;
}

function legend(items) {
  return el("div", { class: "legend" }, items.map(({ name, color, dashed }) => {
    const s = el("span", { class: "swatch" });
    s.style.background = dashed ? "transparent" : color;
    if (dashed) s.style.border = `2px dashed ${color}`;
    return el("span", {}, s, name);
  }));
}

// room on the left for the longest row label (about 7 px a character at 12 px)
function labelWidth(labels) {
  const longest = Math.max(0, ...labels.map((l) => l.length));
  return Math.min(Math.max(longest * 7 + 14, 72), 220);
}

// Per-arm mean with its interval; the control's mean as a dashed reference line.
function forestChart({ id, arms, format }) {
  const rows = arms.map((a, i) => ({ ...a, i })).filter((a) => a.mean !== null);
  const rowH = 30, h = M.t + M.b + Math.max(rows.length, 1) * rowH;
  const left = labelWidth(rows.map((a) => a.arm + (a.control ? " (control)" : "")));
  const root = svg("svg", { class: "chart", id, viewBox: `0 0 ${W} ${h}`, role: "img" });
  if (!rows.length) {
    root.append(svg("text", { x: W / 2, y: h / 2, "text-anchor": "middle" }, "No data yet"));
    return root;
  }
  let lo = Infinity, hi = -Infinity;
  for (const a of rows) {
    const [l, u] = a.ci || [a.mean, a.mean];
    lo = Math.min(lo, l, a.mean); hi = Math.max(hi, u, a.mean);
  }
  if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
  const iw = W - left - M.r;
  const X = (v) => left + ((v - lo) / (hi - lo)) * iw;
  for (let k = 0; k <= 4; k++) {
    const v = lo + ((hi - lo) * k) / 4;
    root.append(svg("line", { class: "grid-line", x1: X(v), x2: X(v), y1: M.t, y2: h - M.b }),
      svg("text", { x: X(v), y: h - 8, "text-anchor": k === 4 ? "end" : "middle" }, format(v)));
  }
  const control = rows.find((a) => a.control);
  if (control) {
    root.append(svg("line", { class: "ref", x1: X(control.mean), x2: X(control.mean),
      y1: M.t, y2: h - M.b }));
  }
  rows.forEach((a, r) => {
    const cy = M.t + r * rowH + rowH / 2, color = COLORS[a.i % COLORS.length];
    root.append(svg("text", { class: "label", x: left - 8, y: cy + 4, "text-anchor": "end" },
      a.arm + (a.control ? " (control)" : "")));
    if (a.ci) {
      root.append(svg("line", { class: "ci", x1: X(a.ci[0]), x2: X(a.ci[1]), y1: cy, y2: cy,
        stroke: color, "stroke-width": 3, "stroke-linecap": "round" }));
    }
    root.append(svg("circle", { class: "mean", cx: X(a.mean), cy, r: 5, fill: color },
      svg("title", {}, `${a.arm}: ${format(a.mean)}` +
        (a.ci ? ` [${format(a.ci[0])}, ${format(a.ci[1])}]` : ""))));
  });
  return root;
}

// Horizontal bars of P(best), with the stopping threshold for thompson.
function pBestChart({ id, arms, threshold }) {
  const rowH = 30, h = M.t + M.b + Math.max(arms.length, 1) * rowH;
  const left = labelWidth(arms.map((a) => a.arm));
  const iw = W - left - M.r - 48;
  const X = (v) => left + v * iw;
  const root = svg("svg", { class: "chart", id, viewBox: `0 0 ${W} ${h}`, role: "img" });
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    root.append(svg("line", { class: "grid-line", x1: X(v), x2: X(v), y1: M.t, y2: h - M.b }),
      svg("text", { x: X(v), y: h - 8, "text-anchor": "middle" }, fmtPct(v, 0)));
  }
  arms.forEach((a, i) => {
    const cy = M.t + i * rowH + rowH / 2, p = a.p_best;
    root.append(svg("text", { class: "label", x: left - 8, y: cy + 4, "text-anchor": "end" },
      a.arm));
    if (p === null || p === undefined) {
      root.append(svg("text", { x: left + 4, y: cy + 4 }, "—"));
      return;
    }
    root.append(svg("rect", { class: "bar", x: left, y: cy - 9, height: 18,
      width: Math.max(p * iw, 1).toFixed(1), fill: COLORS[i % COLORS.length], rx: 2 },
    svg("title", {}, `${a.arm}: ${fmtPct(p, 2)}`)),
    svg("text", { class: "label", x: X(p) + 6, y: cy + 4 }, fmtPct(p)));
  });
  if (threshold) {
    root.append(svg("line", { class: "alpha", x1: X(threshold), x2: X(threshold),
      y1: M.t, y2: h - M.b }, svg("title", {}, `stop threshold ${fmtPct(threshold, 0)}`)));
  }
  return root;
}

function miniWeights(weights, arms) {
  const w = 90, h = 10, root = svg("svg", { class: "minibar", width: w, height: h,
    viewBox: `0 0 ${w} ${h}` });
  let x = 0;
  arms.forEach((arm, i) => {
    const share = weights[arm.key] || 0;
    if (share <= 0) return;
    root.append(svg("rect", { x: x.toFixed(2), y: 0, width: (share * w).toFixed(2), height: h,
      fill: COLORS[i % COLORS.length] }, svg("title", {}, `${arm.key}: ${fmtPct(share)}`)));
    x += share * w;
  });
  return root;
}

// ---------------------------------------------------------------- views

function renderLogin(message) {
  clearTimer();
  setCrumbs(null);
  setUpdated("");
  document.getElementById("signout").hidden = true;
  const input = el("input", { id: "admin-key", type: "password", autocomplete: "off",
    placeholder: "crp_…", "aria-label": "Admin key" });
  const form = el("form", { id: "login-form", onsubmit: (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    showBanner(null);
    route();
  } }, input, el("button", { class: "primary", type: "submit" }, "Open"));
  document.getElementById("main").replaceChildren(el("div", { class: "card login" },
    el("h2", {}, "Admin key"),
    el("p", { class: "muted" }, "The dashboard reads the admin API. The key stays in this " +
      "browser tab (sessionStorage) and is sent only to this server."),
    message ? el("p", { class: "error-text" }, message) : null, form));
  input.focus();
}

async function loadList() {
  const experiments = await api("/v1/experiments");
  const results = await Promise.all(experiments.map((e) => (e.status === "draft"
    ? Promise.resolve(null)
    : api(`/v1/experiments/${enc(e.key)}/results`).catch((err) => {
      if (err instanceof AuthError) throw err;
      return null;
    }))));
  return { experiments, results };
}

function leaderOf(res) {
  if (!res) return null;
  const withP = res.arms.filter((a) => a.p_best !== null);
  if (!withP.length) return null;
  return withP.reduce((best, a) => (a.p_best > best.p_best ? a : best));
}

function renderList({ experiments, results }) {
  setCrumbs(null);
  if (!experiments.length) {
    return [el("div", { class: "card empty" },
      el("h2", {}, "No experiments yet"),
      el("p", { class: "muted" }, "Create one with POST /v1/experiments (see the README), " +
        "start it, and it appears here."))];
  }
  const rows = experiments.map((e, i) => {
    const res = results[i], lead = leaderOf(res);
    const exposures = res ? res.arms.reduce((s, a) => s + a.exposures, 0) : 0;
    return el("tr", { "data-experiment": e.key },
      el("td", {}, el("a", { href: `#/e/${enc(e.key)}` }, e.key),
        e.name ? el("div", { class: "muted" }, e.name) : null),
      el("td", {}, badge(e.status)),
      el("td", {}, e.policy),
      el("td", { class: "num exposures" }, fmtInt(exposures)),
      el("td", { class: "leader" }, lead
        ? [swatch(res.arms.indexOf(lead)), lead.arm,
          el("span", { class: "muted" }, `  P(best) ${fmtPct(lead.p_best)}`)]
        : el("span", { class: "muted" }, "—")),
      el("td", {}, miniWeights(e.weights, e.arms)),
      el("td", {}, res ? res.recommendation.action : "—"));
  });
  return [el("div", { class: "card scroll" },
    el("h2", {}, `Experiments (${experiments.length})`),
    el("table", { id: "experiments" },
      el("thead", {}, el("tr", {}, ["Experiment", "Status", "Policy", "Exposures", "Leader",
        "Weights", "Recommendation"].map((h) => el("th", { class: h === "Exposures" ? "num" : null }, h)))),
      el("tbody", {}, rows)))];
}

async function loadDetail(key) {
  const k = enc(key);
  const [exp, results, allocations, history, audit] = await Promise.all([
    api(`/v1/experiments/${k}`),
    api(`/v1/experiments/${k}/results`),
    api(`/v1/experiments/${k}/allocations`),
    api(`/v1/experiments/${k}/history`),
    api(`/v1/audit?experiment=${k}&limit=15`),
  ]);
  return { exp, results, allocations, history, audit };
}

async function runAction(exp, action) {
  const spec = ACTIONS.find((a) => a.name === action);
  let body;
  let question = `${spec.label} “${exp.key}”: ${spec.confirm}`;
  if (action === "stop") {
    const winner = state.winner[exp.key];
    body = winner ? { winner } : undefined;
    question += `\nWinner: ${winner || "the control"}.`;
  }
  if (!window.confirm(question)) return;
  try {
    const out = await api(`/v1/experiments/${enc(exp.key)}/${action}`, "POST", body);
    showBanner(`${exp.key}: ${spec.label.toLowerCase()} done — status ${out.status}.`, false);
  } catch (err) {
    if (err instanceof AuthError) { renderLogin(err.message); return; }
    showBanner(`${spec.label} failed: ${err.message}`, true);
  }
  await refresh();
}

function actionBar(exp, results) {
  const buttons = ACTIONS.map((a) => el("button", {
    type: "button", class: a.cls || null, "data-action": a.name,
    disabled: !a.from.includes(exp.status),
    onclick: () => runAction(exp, a.name),
  }, a.label));
  const recommended = results.recommendation.action === "stop" ? results.recommendation.arm : null;
  if (!(exp.key in state.winner)) state.winner[exp.key] = recommended || "";
  const select = el("select", { id: "winner", "aria-label": "Winner when stopping",
    onchange: (ev) => { state.winner[exp.key] = ev.target.value; } },
  el("option", { value: "" }, "winner: control"),
  exp.arms.map((a) => el("option", { value: a.key }, "winner: " + a.key)));
  select.value = state.winner[exp.key];
  const stopIndex = ACTIONS.findIndex((a) => a.name === "stop");
  buttons.splice(stopIndex + 1, 0, select);
  return el("div", { class: "actions" }, buttons);
}

function allocationCard(exp, results, allocations) {
  const arms = exp.arms.map((a) => a.key);
  const end = exp.ended_at ? Date.parse(exp.ended_at) : Date.parse(results.computed_at);
  const points = allocations.map((a) => [Date.parse(a.at), a.weights]);
  const t0 = points.length ? points[0][0] : end;
  const series = arms.map((arm, i) => ({ name: arm, color: COLORS[i % COLORS.length],
    points: points.map(([t, w]) => [t, w[arm] || 0]) }));
  return el("div", { class: "card" },
    el("h2", {}, "Allocation over time"),
    timeChart({ id: "chart-allocation", series, t0, t1: Math.max(end, t0),
      y: { min: 0, max: 1, ticks: [0, 0.25, 0.5, 0.75, 1], format: (v) => fmtPct(v, 0) } }),
    legend(series),
    el("div", { class: "muted" }, `${allocations.length} allocation change` +
      (allocations.length === 1 ? "" : "s") +
      (allocations.length ? ` — last: ${allocations[allocations.length - 1].reason}` : "")));
}

function pValueCard(exp, results, history) {
  const armIndex = Object.fromEntries(exp.arms.map((a, i) => [a.key, i]));
  const now = Date.parse(results.computed_at);
  const current = {};
  for (const c of results.comparisons) current[`reward|two_sided|${c.arm}`] = c.sequential_p_value;
  for (const g of results.guardrails) current[`${g.metric}|guardrail|${g.arm}`] = g.sequential_p_value;
  // an always-valid p-value is 1 at the start; the history holds the looks that lowered it
  const start = exp.started_at ? Date.parse(exp.started_at) : null;
  const series = history.sequential.map((s) => {
    const pts = s.points.map((p) => [Date.parse(p.at), p.p_value]);
    if (start !== null && (!pts.length || (pts[0][0] > start && pts[0][1] < 1))) {
      pts.unshift([start, 1]);
    }
    const cur = current[`${s.metric}|${s.kind}|${s.arm}`];
    if (cur !== undefined) pts.push([now, cur]);
    const guard = s.kind === "guardrail";
    return { name: guard ? `${s.arm} — guardrail ${s.metric}` : `${s.arm} vs ${s.vs}`,
      color: COLORS[armIndex[s.arm] % COLORS.length], dashed: guard, points: pts };
  });
  const alpha = history.alpha;
  let minP = alpha / 10;
  let t0 = now;
  for (const s of series) {
    for (const [t, p] of s.points) { if (p > 0) minP = Math.min(minP, p); t0 = Math.min(t0, t); }
  }
  const lowExp = Math.max(Math.floor(Math.log10(minP)), -16);
  const step = Math.max(1, Math.ceil(-lowExp / 5));
  const ticks = [];
  for (let e = 0; e >= lowExp; e -= step) ticks.push(10 ** e);
  return el("div", { class: "card" },
    el("h2", {}, "Sequential p-value over time (always valid)"),
    timeChart({ id: "chart-pvalue", series, t0, t1: now,
      y: { min: 10 ** lowExp, max: 1, log: true, ticks,
        format: (v) => (v >= 0.001 ? String(v) : "1e" + Math.round(Math.log10(v))) },
      hlines: [{ y: alpha, cls: "alpha", label: `α = ${fmtNum(alpha)}` }] }),
    series.length ? legend(series)
      : el("div", { class: "muted" }, "No evaluation recorded yet."));
}

function meanCard(results) {
  const binary = results.metric.type === "binary";
  const format = binary ? (v) => fmtPct(v, 1) : (v) => fmtNum(v, 3);
  return el("div", { class: "card" },
    el("h2", {}, `Mean of ${results.metric.name} with ${fmtPct(results.confidence_level, 0)} ` +
      `interval (${results.metric.direction})`),
    forestChart({ id: "chart-means", arms: results.arms, format }));
}

function pBestCard(exp, results) {
  return el("div", { class: "card" },
    el("h2", {}, "P(best)"),
    pBestChart({ id: "chart-pbest", arms: results.arms,
      threshold: exp.policy === "thompson" ? exp.p_best_threshold : null }));
}

function table(id, headers, rows) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, headers.map(([h, num]) => el("th", { class: num ? "num" : null }, h)))),
    el("tbody", {}, rows));
}

function armsTable(results) {
  const binary = results.metric.type === "binary";
  const f = binary ? (v) => fmtPct(v, 2) : (v) => fmtNum(v);
  return table("arms", [["Arm"], ["Weight", 1], ["Exposures", 1], ["Expected", 1],
    [binary ? "Conversions" : "Rewards", 1], ["Mean", 1], ["Interval", 1], ["P(best)", 1],
    ["Expected loss", 1]],
  results.arms.map((a, i) => el("tr", {},
    el("td", {}, swatch(i), a.arm, a.control ? el("span", { class: "muted" }, " control") : null),
    el("td", { class: "num" }, fmtPct(a.weight)),
    el("td", { class: "num" }, fmtInt(a.exposures)),
    el("td", { class: "num" }, fmtNum(a.expected_exposures, 5)),
    el("td", { class: "num" }, binary ? fmtNum(a.sum) : fmtInt(a.count)),
    el("td", { class: "num" }, f(a.mean)),
    el("td", { class: "num" }, a.ci ? `[${f(a.ci[0])}, ${f(a.ci[1])}]` : "—"),
    el("td", { class: "num" }, fmtPct(a.p_best)),
    el("td", { class: "num" }, fmtNum(a.expected_loss, 3)))));
}

function comparisonsTable(results) {
  const binary = results.metric.type === "binary";
  const f = binary ? (v) => fmtPct(v, 2) : (v) => fmtNum(v);
  return table("comparisons", [["Arm vs control"], ["Difference", 1], ["Interval", 1],
    ["Lift", 1], ["p", 1], ["p (Holm)", 1], ["Sequential p", 1], ["Significant"]],
  results.comparisons.map((c) => el("tr", {},
    el("td", {}, `${c.arm} vs ${c.vs}`),
    el("td", { class: "num" }, f(c.diff)),
    el("td", { class: "num" }, c.diff_ci ? `[${f(c.diff_ci[0])}, ${f(c.diff_ci[1])}]` : "—"),
    el("td", { class: "num" }, fmtPct(c.lift)),
    el("td", { class: "num" }, fmtP(c.p_value)),
    el("td", { class: "num" }, fmtP(c.p_value_adjusted)),
    el("td", { class: "num" }, fmtP(c.sequential_p_value)),
    el("td", {}, c.significant ? badge("yes", "good") : el("span", { class: "muted" }, "no")))));
}

function guardrailsTable(results) {
  if (!results.guardrails.length) {
    return el("p", { class: "muted" }, "No guardrail metrics (a metric with max_degradation " +
      "or max_relative_degradation).");
  }
  const meanOf = (metric, arm) => {
    const m = results.metrics && results.metrics[metric];
    const a = m && m.arms.find((x) => x.arm === arm);
    return a ? a.mean : null;
  };
  return table("guardrails", [["Metric"], ["Arm vs control"], ["Arm mean", 1],
    ["Control mean", 1], ["Difference", 1], ["p (one-sided)", 1], ["Sequential p", 1],
    ["Status"]],
  results.guardrails.map((g) => el("tr", {},
    el("td", {}, g.metric),
    el("td", {}, `${g.arm} vs ${g.vs}`),
    el("td", { class: "num" }, fmtNum(meanOf(g.metric, g.arm))),
    el("td", { class: "num" }, fmtNum(meanOf(g.metric, g.vs))),
    el("td", { class: "num" }, fmtNum(g.diff)),
    el("td", { class: "num" }, fmtP(g.p_value)),
    el("td", { class: "num" }, fmtP(g.sequential_p_value)),
    el("td", {}, g.breached ? badge("breached", "bad") : badge("ok", "good")))));
}

function auditTable(audit) {
  if (!audit.length) return el("p", { class: "muted" }, "No changes recorded.");
  return table("audit", [["When"], ["Who"], ["Action"], ["Details"]],
    audit.map((a) => el("tr", {},
      el("td", {}, fmtTime(a.at)), el("td", {}, a.actor), el("td", {}, a.action),
      el("td", { class: "mono" }, JSON.stringify(a.details).slice(0, 160)))));
}

function renderDetail({ exp, results, allocations, history, audit }) {
  setCrumbs(exp.key);
  const rec = results.recommendation;
  const srm = results.srm;
  const head = el("div", { class: "head" },
    el("div", { class: "title" },
      el("h1", {}, exp.key),
      exp.name || exp.description
        ? el("div", { class: "muted" }, [exp.name, exp.description].filter(Boolean).join(" — "))
        : null,
      el("div", { class: "meta" },
        el("span", { id: "status" }, badge(exp.status)),
        el("span", {}, `policy ${exp.policy}`),
        exp.policy === "rollout" && exp.stages && exp.stage !== null
          ? el("span", {}, `stage ${exp.stage + 1}/${exp.stages.length} ` +
            `(${fmtPct(exp.stages[exp.stage].share, 0)})`) : null,
        el("span", { class: "muted" }, exp.sticky ? "sticky" : "not sticky"),
        el("span", { class: "muted" }, exp.started_at ? `started ${fmtTime(exp.started_at)}`
          : `created ${fmtTime(exp.created_at)}`),
        exp.winner ? el("span", {}, `winner ${exp.winner}`) : null,
        exp.status_reason ? el("span", { class: "muted" }, `last change: ${exp.status_reason}`)
          : null)),
    actionBar(exp, results));
  const callouts = el("div", { class: "callouts" },
    el("div", { class: "card", id: "recommendation" },
      el("h2", {}, "Recommendation"),
      el("div", {}, el("span", { class: "rec-action " + rec.action }, rec.action),
        rec.arm ? el("strong", {}, rec.arm) : null),
      el("div", { class: "muted" }, rec.reason)),
    el("div", { class: "card", id: "srm" },
      el("h2", {}, "Sample ratio (SRM)"),
      el("div", {}, srm.flag ? badge("mismatch", "bad") : badge("ok", "good"),
        ` p = ${fmtP(srm.p_value)}`),
      el("div", { class: "muted" }, "Exposures against the allocation in force at each " +
        "decision; flagged when p < 0.001.")));
  const charts = el("div", { class: "grid" },
    allocationCard(exp, results, allocations), pValueCard(exp, results, history),
    meanCard(results), pBestCard(exp, results));
  return [head, callouts, charts,
    el("div", { class: "card scroll" }, el("h2", {}, `Arms — ${results.metric.name}`),
      armsTable(results)),
    el("div", { class: "card scroll" }, el("h2", {}, "Comparisons with the control"),
      comparisonsTable(results)),
    el("div", { class: "card scroll" }, el("h2", {}, "Guardrails"), guardrailsTable(results)),
    el("div", { class: "card scroll" }, el("h2", {}, "Recent changes"), auditTable(audit))];
}

// ---------------------------------------------------------------- routing & refresh

function currentKey() {
  const m = location.hash.match(/^#\/e\/(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

async function refresh() {
  if (state.busy) { state.again = true; return; }
  if (!sessionStorage.getItem(KEY_STORAGE)) { renderLogin(); return; }
  state.busy = true;
  const key = currentKey();
  try {
    const nodes = key ? renderDetail(await loadDetail(key)) : renderList(await loadList());
    if (currentKey() !== key) return; // the user navigated meanwhile: the next run draws
    document.getElementById("main").replaceChildren(...nodes);
    document.getElementById("signout").hidden = false;
    setUpdated("updated " + new Date().toLocaleTimeString("en-GB", { hour12: false }));
    if (state.banner && state.banner.loadError) showBanner(null);
  } catch (err) {
    if (err instanceof AuthError) { renderLogin(err.message); return; }
    showBanner(`Could not load: ${err.message}`, true);
    state.banner.loadError = true;
  } finally {
    state.busy = false;
    if (state.again) { state.again = false; refresh(); }
  }
}

function clearTimer() {
  if (state.timer !== null) { clearInterval(state.timer); state.timer = null; }
}

function route() {
  clearTimer();
  if (!sessionStorage.getItem(KEY_STORAGE)) { renderLogin(); return; }
  document.getElementById("main").replaceChildren(el("p", { class: "muted" }, "Loading…"));
  refresh();
  state.timer = setInterval(() => {
    if (document.visibilityState === "visible") refresh();
  }, REFRESH_MS);
}

document.getElementById("signout").onclick = () => {
  sessionStorage.removeItem(KEY_STORAGE);
  showBanner(null);
  renderLogin();
};
window.addEventListener("hashchange", () => { showBanner(null); route(); });
route();
