// sesskit viewer: draws a Trace (Python's Trace.to_dict()). One ES module, no imports (anywidget loads it
// from a blob: URL), nothing fetched. Trace text is set as text (textContent, setAttribute), never markup.
//
// Pure parts first (node --test tests/js), then the DOM:
//   fold      deltas -> states: a checkpoint every CHECK steps plus undo records, so a move applies or
//             undoes only the deltas in between;
//   heap      one lane per session (holders -> box), y and height computed from the data (no overlap, no
//             DOM measuring); keyed lanes, filled only near the heap's view and redrawn only on change;
//   timeline  series gathered while folding, drawn once on a canvas at the pixel width; a move only
//             shifts the marker (uPlot's lesson);
//   steps     a virtualised list of fixed-height rows, and the step's why.

const CHECK = 64;
const SIDES = ["server", "client"];
const MAPS = ["sessions", "ssls", "refs"];

// ---- folding (pure)

/** The state before step 0: nothing exists yet. */
export function emptyState() {
  return { sessions: new Map(), ssls: new Map(), refs: new Map(), caches: { client: null, server: null }, time: 0 };
}

/** A copy sharing the entity objects, which are replaced whole, never mutated. */
export function cloneState(s) {
  const c = { caches: { ...s.caches }, time: s.time };
  for (const m of MAPS) c[m] = new Map(s[m]);
  return c;
}

/** Remove each removed label, then insert each [index, label] in order (Python's _apply_edit). */
export function applyEdit(members, edit) {
  const out = members.slice();
  for (const label of edit.removed || []) {
    const k = out.indexOf(label);
    if (k >= 0) out.splice(k, 1);
  }
  for (const [index, label] of edit.inserted || []) out.splice(index, 0, label);
  return out;
}

/**
 * Apply one step's delta to `state` in place; a later state replaces an earlier one whole (absent keys
 * mean null/false). Returns the undo record: [[where, key, previous value or undefined], ...].
 */
export function applyDelta(state, delta) {
  const undo = [];
  if (!delta) return undo;
  for (const m of MAPS) {
    const d = delta[m];
    if (!d) continue;
    for (const key of Object.keys(d)) {
      undo.push([m, key, state[m].get(key)]);
      state[m].set(key, d[key]);
    }
  }
  for (const side of Object.keys(delta.caches || {})) {
    const c = delta.caches[side];
    const prev = state.caches[side];
    undo.push(["caches", side, prev]);
    const members = c.members ? c.members.slice() : applyEdit(prev ? prev.members : [], c.edit || {});
    state.caches[side] = { side: c.side, size: c.size, members, stats: c.stats || {} };
  }
  if (delta.time != null) {
    undo.push(["time", null, state.time]);
    state.time = delta.time;
  }
  return undo;
}

/** Revert what applyDelta did. */
export function undoDelta(state, undo) {
  for (let k = undo.length - 1; k >= 0; k--) {
    const [m, key, prev] = undo[k];
    if (m === "time") state.time = prev;
    else if (m === "caches") state.caches[key] = prev;
    else if (prev === undefined) state[m].delete(key);
    else state[m].set(key, prev);
  }
}

/** -1, out of range or not a whole number: the last step; an empty trace: -1. */
export function clampStep(step, length) {
  if (length <= 0) return -1;
  const n = step === null || step === undefined || step === "" ? -1 : Number(step);
  return Number.isInteger(n) && n >= 0 && n < length ? n : length - 1;
}

/** All steps folded once: checkpoints, undo records, and the timeline's series. `append` extends it. */
export class TraceFold {
  constructor(steps) {
    this.steps = [];
    this.tail = emptyState(); // after the last step
    this.checkpoints = []; // [k]: the state after step k*CHECK
    this.undos = [];
    this.series = new Map(); // label -> {pts: [step, refcount, ...], cache: [from, to, ...], open, freed}
    this.cacheSize = { client: [], server: [] }; // [step, size, ...]
    this.frees = []; // [step, label, ...]
    this.dangles = []; // steps where a pointer started dangling
    this.errors = []; // refused steps
    this.maxRef = 1;
    this.maxCache = 1;
    this.append(steps);
  }

  get length() {
    return this.steps.length;
  }

  append(steps) {
    const s = this.tail;
    for (const step of steps) {
      const i = this.steps.length;
      const d = step.changes || {};
      this.steps.push(step);
      for (const [label, v] of Object.entries(d.sessions || {})) {
        let ser = this.series.get(label);
        if (!ser) this.series.set(label, (ser = { pts: [], cache: [], open: -1, freed: -1 }));
        const rc = v.freed ? 0 : v.refcount | 0;
        if (ser.pts[ser.pts.length - 1] !== rc || !ser.pts.length) ser.pts.push(i, rc);
        this.maxRef = Math.max(this.maxRef, rc);
        const cached = !!v.cache && !v.freed;
        if (cached && ser.open < 0) ser.open = i;
        if (!cached && ser.open >= 0) {
          ser.cache.push(ser.open, i);
          ser.open = -1;
        }
        if (v.freed && ser.freed < 0) this.frees.push((ser.freed = i), label);
      }
      for (const [id, r] of Object.entries(d.refs || {})) {
        const before = s.refs.get(id);
        if (r.dangling && !(before && before.dangling) && this.dangles.at(-1) !== i) this.dangles.push(i);
      }
      if (step.error) this.errors.push(i);
      this.undos.push(applyDelta(s, d));
      for (const side of SIDES) {
        if (!(d.caches && d.caches[side])) continue;
        const p = this.cacheSize[side];
        const size = s.caches[side].size;
        if (p.at(-1) !== size || !p.length) p.push(i, size);
        this.maxCache = Math.max(this.maxCache, size);
      }
      if (i % CHECK === 0) this.checkpoints.push(cloneState(s));
    }
  }
}

/** A movable state: goto(i) applies or undoes the deltas between, or starts from a checkpoint. */
export class Cursor {
  constructor(fold) {
    this.fold = fold;
    this.index = -1;
    this.state = emptyState();
  }

  goto(i) {
    const f = this.fold;
    if (i < 0) {
      this.index = -1;
      return (this.state = emptyState());
    }
    const base = i - (i % CHECK);
    const near = this.index >= 0 && Math.abs(i - this.index) <= CHECK;
    if (!near && !(this.index >= base && this.index <= i)) {
      this.state = cloneState(f.checkpoints[base / CHECK]);
      this.index = base;
    }
    while (this.index < i) applyDelta(this.state, f.steps[++this.index].changes);
    while (this.index > i) undoDelta(this.state, f.undos[this.index--]);
    return this.state;
  }
}

// ---- the heap (pure)

export const ROW = 26; // px: one holder chip per row
export const BOX_MIN = 54; // px: the session box (label, the big refcount, a badge)
export const GAP = 6; // px between lanes

/** A stable hue per label (golden-angle steps over its number), kept out of the reds that mean danger. */
export function hueOf(label) {
  const m = /(\d+)/.exec(String(label));
  let n = m ? Number(m[1]) : 0;
  if (!m) for (const ch of String(label)) n = (n * 31 + ch.charCodeAt(0)) >>> 0;
  return Math.round(30 + ((n * 137.508) % 360) * (300 / 360));
}

const dangles = (r, state) => !!r.dangling || !!(state.sessions.get(r.session) || {}).freed;

/**
 * The heap as lanes, in creation order: one per SSL without a session, one per session that is live,
 * still pointed at, just freed (`justFreed`), or any freed one with `showFreed`. A lane lists its
 * holders (SSLs, cache places, user pointers); y and h follow from its row count, so lanes never overlap.
 * Returns {lanes, hiddenFreed: [labels], height}.
 */
export function heapLanes(state, opts = {}) {
  const holders = new Map();
  const hold = (label, x) => (holders.get(label) || holders.set(label, []).get(label)).push(x);
  const lanes = [];
  const hiddenFreed = [];
  let y = 0;
  const push = (lane) => {
    lane.y = y;
    lane.h = Math.max(Math.max(1, lane.holders.length) * ROW, lane.session ? BOX_MIN : ROW) + GAP;
    y += lane.h;
    lanes.push(lane);
  };
  for (const s of state.ssls.values()) {
    if (s.freed) continue;
    const text = "SSL " + s.name + (s.sent_shutdown ? " · shut down" : "") + (s.cleared ? " · cleared" : "");
    const x = { kind: "ssl", key: "ssl:" + s.name, name: s.name, text, line: "solid" };
    if (!s.session) push({ key: "n:" + s.name, label: s.name, holders: [x] });
    else hold(s.session, Object.assign(x, { danger: !!(state.sessions.get(s.session) || {}).freed }));
  }
  for (const side of SIDES) {
    const c = state.caches[side];
    const n = c ? c.members.length : 0;
    // #k counts from the head; the strip marks the tail, the next to be evicted
    for (let k = 0; k < n; k++) {
      const text = `${side} cache #${k + 1}` + (n > 1 && k === n - 1 ? " (tail)" : "");
      hold(c.members[k], { kind: "cache", key: "cache:" + side, text, line: "solid" });
    }
  }
  for (const r of state.refs.values()) {
    const danger = dangles(r, state);
    if (r.released && danger) continue; // given back, then freed: nothing is held any more
    hold(r.session, {
      kind: "ref",
      key: "ref:" + r.id,
      id: String(r.id),
      refKind: r.kind,
      text: `${r.kind} #${r.id} via ${r.via}` + (danger ? " · dangling" : r.released ? " · released" : ""),
      line: r.released ? "dotted" : r.kind === "get0" ? "dashed" : "solid",
      danger,
      released: !!r.released,
    });
  }
  for (const [label, s] of state.sessions) {
    const hs = holders.get(label) || [];
    if (s.freed && !hs.length && !(opts.justFreed && opts.justFreed.has(label)) && !opts.showFreed) {
      hiddenFreed.push(label);
    } else push({ key: "s:" + label, label, session: s, holders: hs });
  }
  return { lanes, hiddenFreed, height: y };
}

/** A lane's columns in a heap panel `width` px wide: chip, arrow (>= 36 px), box; never wider than it. */
export function layoutColumns(width) {
  const w = Math.max(200, width || 600);
  const pad = 8;
  const box = w < 480 ? 112 : 132;
  const chip = Math.max(88, Math.min(230, w - box - pad - 36));
  return { chip, arrow: w - pad - box - chip, box, pad, total: w };
}

/** What a lane shows, as one string: the lane is redrawn only when it changes. */
export function laneSignature(lane) {
  const s = lane.session;
  let sig = s ? `${s.refcount}|${s.cache}|${s.freed}|${s.resumable}|${s.side}` : "ssl";
  // a cache chip's "#k" moves with every insertion at the head: updated in place, not part of this
  for (const x of lane.holders) sig += `|${x.key}:${x.kind === "cache" ? "" : x.text}:${x.line}:${x.danger}`;
  return sig;
}

// A cache strip's title; a client SSL_CTX in OpenSSL's default mode, SSL_SESS_CACHE_SERVER, caches
// nothing (SSL_CTX_set_session_cache_mode(3), all versions to 3.x).
export function stripTitle(side, c, config) {
  const off = side === "client" && (config || {}).client_cache === false;
  return `${side} cache${off ? " · not caching: mode SSL_SESS_CACHE_SERVER (client caching not enabled)" : ""} · ${c.size} session${c.size === 1 ? "" : "s"} · head → tail`;
}

/** A sentence for screen readers: the step, the sessions (12 at most), the caches, dangling pointers. */
export function summarize(state, step, last) {
  const out = step ? [`step ${step.index} of ${last}: ${step.op} ${step.target || ""}`.trim() + "."] : [];
  const live = [...state.sessions.values()].filter((s) => !s.freed);
  const some = live.slice(0, 12).map((s) => `${s.label} refcount ${s.refcount}` + (s.cache ? ` in ${s.cache} cache` : ""));
  out.push(live.length ? `${live.length} live sessions: ${some.join(", ")}${live.length > 12 ? ", …" : ""}.` : "No live sessions.");
  for (const side of SIDES) {
    const c = state.caches[side];
    if (c) out.push(`${side} cache: ${c.members.join(", ") || "empty"}.`);
  }
  const bad = [...state.refs.values()].filter((r) => !r.released && dangles(r, state));
  if (bad.length) out.push(`Dangling pointers: ${bad.map((r) => `#${r.id} to ${r.session}`).join(", ")}.`);
  return out.join(" ");
}

// ---- timeline (pure)

/**
 * A step series (change points [step, value, ...], each value held until the next) within steps [a, b),
 * squeezed to `width` px for `n` steps: one bucket per pixel column holding points,
 * [px, first, min, max, last, ...] flat. Each bucket keeps the min and max of its points.
 */
export function bucketSeries(pts, n, width, a = 0, b = n) {
  const out = [];
  const scale = width / Math.max(1, n);
  let k = -1;
  for (let j = 0; j < pts.length; j += 2) {
    if (pts[j] < a || pts[j] >= b) continue;
    const v = pts[j + 1];
    const x = Math.floor(pts[j] * scale);
    if (k < 0 || out[k] !== x) {
      k = out.length;
      out.push(x, v, v, v, v);
    } else {
      out[k + 2] = Math.min(out[k + 2], v);
      out[k + 3] = Math.max(out[k + 3], v);
      out[k + 4] = v;
    }
  }
  return out;
}

/** The value a step series holds at step s (undefined before its first point). */
export function valueAt(pts, s) {
  let v;
  for (let j = 0; j < pts.length && pts[j] <= s; j += 2) v = pts[j + 1];
  return v;
}

/** Axis labels for n steps over `width` px: 1-2-5 spacing, about one per 70 px, from 0. */
export function ticks(n, width) {
  if (n <= 0) return [];
  const want = Math.max(2, Math.floor(width / 70));
  let step;
  for (let m = 1; !step; m *= 10) step = [1, 2, 5].map((f) => f * m).find((x) => (n - 1) / x <= want);
  const out = [];
  for (let s = 0; s < n; s += step) out.push(s);
  return out;
}

// ---- URL fragment (pure)

const params = (hash) => new URLSearchParams(String(hash || "").replace(/^#/, ""));

/** This viewer's step in a fragment like `#step2=4&step=5`, or null. */
export function parseHash(hash, key) {
  const v = params(hash).get(key);
  return v !== null && /^-?\d+$/.test(v) ? Number(v) : null;
}

/** The fragment with `key` set to `value`; the other keys (other viewers') untouched, in order. */
export function updateHash(hash, key, value) {
  const p = params(hash);
  p.set(key, String(value));
  return "#" + p.toString();
}

// ---- the viewer

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "style") e.style.cssText = v; // through the CSSOM: allowed under a strict CSP
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  e.append(...kids.filter((x) => x != null));
  return e;
}
// unchanged text is not rewritten: a new text node costs layout and paint
const setText = (e, t) => e.textContent !== t && (e.textContent = t);
const div = (cls, ...kids) => h("div", { class: cls }, ...kids);
const span = (cls, text) => h("span", { class: cls, text });
const button = (text, label, cls = "") => h("button", { type: "button", class: "sk-btn " + cls, "aria-label": label, title: label, text });
const section = (cls, title, ...kids) => h("section", { class: cls, "aria-label": title }, h("h3", { class: "sk-h", text: title }), ...kids);
const typing = (t) => t.isContentEditable || (/^(TEXTAREA|SELECT|INPUT)$/.test(t.tagName) && t.type !== "range");
const LIST_ROW = 24; // px: a step list row
const LIST_ROWS = 14; // rows in view
const MARGIN = 120; // px of heap drawn above and below its view
const STRIP = 40; // cache members shown from the head

class Viewer {
  constructor(model, el) {
    this.model = model;
    const key = model.get("hash_key");
    this.hashKey = typeof key === "string" && key ? key : null; // only static pages touch the URL
    this.lanes = new Map(); // lane key -> {el, vis, s, sig, y, h, cacheText}
    this.rows = new Map(); // step index -> list row
    this.members = { client: new Map(), server: new Map() };
    this.selected = model.get("selected") || "";
    this.changed = [];
    this.pending = new Map(); // element -> the scrollTop to set in the next frame
    this.own = new Set(); // elements whose next scroll event is ours
    this.cleanups = [];
    this.build(el);
    this.load(model.get("trace"));
    this.wire();
  }

  build(el) {
    // data-lm-suppress-shortcuts: JupyterLab and Notebook 7 leave the keys pressed in here to us
    const root = (this.root = h("div", { class: "sesskit-viewer", tabindex: 0, role: "group", "data-step": -1,
      "aria-label": "sesskit trace viewer", "data-lm-suppress-shortcuts": true }));
    this.head = div("sk-head", (this.metaText = span("sk-meta")), (this.timeText = span("sk-time")));
    this.prevBtn = button("◀", "previous step");
    this.nextBtn = button("▶", "next step");
    this.slider = h("input", { type: "range", min: 0, max: 0, step: 1, value: 0, class: "sk-slider", "aria-label": "step" });
    this.stepLabel = h("span", { class: "sk-steplabel" });
    const controls = div("sk-controls", this.prevBtn, this.slider, this.nextBtn, this.stepLabel);
    if (this.hashKey) {
      this.copyBtn = button("copy link", "copy a link to this step");
      this.copyField = h("input", { type: "text", class: "sk-copyfield", readonly: true, "aria-label": "link to this step", hidden: true });
      controls.append(this.copyBtn, this.copyField);
    }
    this.whyOp = div("sk-whyop");
    this.why = h("p", { class: "sk-why", "data-role": "why" });
    this.result = h("p", { class: "sk-result" });
    this.error = h("p", { class: "sk-errortext", role: "alert" });
    this.whyBox = div("sk-whybox", this.whyOp, this.why, this.result, this.error);
    this.strips = {};
    const strips = div("sk-strips");
    for (const side of SIDES) {
      const st = { title: div("sk-strip-title"), list: h("div", { class: "sk-strip-members", role: "list" }), stats: div("sk-strip-stats") };
      st.box = h("div", { class: "sk-strip", "data-cache-side": side, "data-size": 0 }, st.title, st.list, st.stats);
      strips.append((this.strips[side] = st).box);
    }
    const lg = (cls, text) => span("sk-lg sk-lg-" + cls, text);
    const legend = h("div", { class: "sk-legend", "aria-hidden": "true" },
      lg("solid", "SSL, cache, get1"), lg("dashed", "get0 (borrowed)"), lg("dotted", "released"), lg("danger", "dangling"));
    this.laneBox = div("sk-lanes");
    this.freedText = h("span");
    this.freedBtn = button("show", "show or hide freed sessions", "sk-small");
    this.freedNote = div("sk-freed", this.freedText, " ", this.freedBtn);
    this.heapScroll = div("sk-heapscroll", this.laneBox, this.freedNote);
    this.summary = h("p", { class: "sk-sr" });
    this.heap = section("sk-heap", "Heap", strips, legend, this.heapScroll, this.summary);
    this.spacer = div("sk-list-spacer");
    this.list = h("div", { class: "sk-list", role: "list", "aria-label": "steps" }, this.spacer);
    this.canvas = h("canvas", { class: "sk-canvas", role: "img" });
    this.marker = h("div", { class: "sk-marker", "aria-hidden": "true" });
    this.yAxis = h("div", { class: "sk-yaxis", "aria-hidden": "true" });
    this.xAxis = h("div", { class: "sk-xaxis", "aria-hidden": "true" });
    this.plot = div("sk-plot", this.canvas, this.marker, this.xAxis);
    const tlLegend = h("div", { class: "sk-legend", "aria-hidden": "true" }, span(null, "refcount per session (thick: in a cache)"), span(null, "× freed"),
      span("sk-danger-text", "▼ a pointer dangles · ! refused"), span(null, "below: cache sizes (server solid, client dashed)"));
    root.append(this.head, controls, this.whyBox, div("sk-main", this.heap, section("sk-side", "Steps", this.list)),
      section("sk-timeline", "Timeline", div("sk-tl", this.yAxis, this.plot), tlLegend));
    el.append(root);
  }

  /** A whole trace: at mount and on change:trace. */
  load(trace) {
    this.meta = (trace && trace.meta) || {};
    this.reset(new TraceFold(((trace && trace.steps) || []).slice()));
    const fromHash = this.hashKey ? parseHash(location.hash, this.hashKey) : null;
    this.goto(fromHash ?? this.model.get("step"));
  }

  reset(fold) {
    this.fold = fold;
    this.cursor = new Cursor(fold);
    this.index = -2;
    for (const x of [...this.lanes.values(), ...this.rows.values()]) (x.el || x).remove();
    this.lanes.clear();
    this.rows.clear();
    for (const side of SIDES) {
      this.members[side].clear();
      this.strips[side].list.replaceChildren();
      this.strips[side].shown = null;
    }
    const c = this.meta.config || {};
    const bits = [this.meta.title || this.meta.scenario, this.meta.engine && "engine " + this.meta.engine, this.meta.openssl_version,
      c.tls && "TLS " + c.tls, c.tickets != null && (c.tickets ? "tickets on" : "tickets off"),
      c.cache_size != null && "cache size " + c.cache_size, c.timeout != null && `timeout ${c.timeout} s`];
    this.metaText.textContent = bits.filter(Boolean).join(" · ");
    this.resized();
  }

  /** After the number of steps (or the width) changed: slider range, list height, timeline. */
  resized() {
    const n = this.fold.length;
    this.slider.max = String(Math.max(0, n - 1));
    this.spacer.style.height = n * LIST_ROW + "px";
    this.list.style.height = Math.min(Math.max(n, 1), LIST_ROWS) * LIST_ROW + "px";
    this.drawTimeline();
  }

  goto(i, fromUser) {
    const n = this.fold.length;
    i = clampStep(i, n);
    if (i === this.index) return;
    const state = this.cursor.goto(i);
    const step = this.fold.steps[i];
    this.index = i;
    this.root.setAttribute("data-step", String(i));
    this.slider.value = String(Math.max(0, i));
    this.drawList(true);
    setText(this.timeText, `t = ${state.time} s`);
    this.stepLabel.textContent = step ? `step ${i} of ${n - 1} · ${step.op} ${step.target || ""}` : "no steps";
    this.slider.setAttribute("aria-valuetext", this.stepLabel.textContent);
    this.prevBtn.disabled = i <= 0;
    this.nextBtn.disabled = i >= n - 1;
    this.whyOp.textContent = step ? `${step.op} ${step.target || ""}` : "";
    this.why.textContent = step ? step.why || "" : "No steps yet.";
    const result = step && step.result != null ? "result: " + step.result : "";
    setText(this.result, result);
    this.result.hidden = !result;
    const err = step && step.error;
    this.error.textContent = err ? `refused (${err.kind || "error"}): ${err.message || ""} (nothing changed)` : "";
    this.error.hidden = !err;
    this.whyBox.classList.toggle("is-error", !!err);
    this.drawHeap(state, step);
    this.marker.style.left = n ? ((i + 0.5) / n) * 100 + "%" : "0";
    this.summary.textContent = summarize(state, step, n - 1);
    if (fromUser) {
      this.model.set("step", i);
      this.model.save_changes();
      if (this.hashKey) {
        clearTimeout(this.urlTimer);
        this.urlTimer = setTimeout(() => this.writeUrl(), 300);
      }
    }
  }

  // the URL follows once a move settles, not each step: a history write costs more than a step's drawing
  writeUrl() {
    if (!this.urlTimer) return;
    clearTimeout(this.urlTimer);
    this.urlTimer = 0;
    history.replaceState(history.state, "", updateHash(location.hash, this.hashKey, this.index));
  }

  // -- heap: each lane has an element with its session's data-* attributes; the lanes near the view
  // are shown (absolutely, at their computed y) and filled; the others stay empty and hidden
  drawHeap(state, step) {
    const touched = Object.keys((step && step.changes && step.changes.sessions) || {});
    const justFreed = new Set(touched.filter((k) => step.changes.sessions[k].freed));
    const { lanes, hiddenFreed, height } = heapLanes(state, { justFreed, showFreed: this.showFreed });
    this.shown = lanes;
    this.laneBox.style.height = height + "px";
    const want = new Set(lanes.map((l) => l.key));
    for (const [key, rec] of this.lanes) if (!want.has(key)) this.lanes.delete(key) && rec.el.remove();
    let cur = this.laneBox.firstChild; // document order = lane order, for screen readers
    for (const lane of lanes) {
      let rec = this.lanes.get(lane.key);
      if (!rec) this.lanes.set(lane.key, (rec = { el: h("div", { class: "sk-lane", hidden: true }), vis: false }));
      const s = lane.session;
      if (s && rec.s !== s) {
        rec.s = s;
        const a = { session: lane.label, refcount: s.freed ? 0 : s.refcount | 0, cache: s.cache || "none", freed: !!s.freed };
        for (const k in a) rec.el.setAttribute("data-" + k, String(a[k]));
        rec.el.classList.toggle("is-freed", !!s.freed);
      }
      if (rec.el === cur) cur = cur.nextSibling;
      else this.laneBox.insertBefore(rec.el, cur);
    }
    // what this step changed: marked, and scrolled into the heap's view if it is out of it
    for (const el of this.changed) el.classList.remove("is-changed");
    this.changed = touched.map((k) => this.lanes.get("s:" + k)).filter(Boolean).map((r) => r.el);
    for (const el of this.changed) el.classList.add("is-changed");
    const first = lanes.find((l) => l.session && touched.includes(l.label));
    const top = this.heapTop || 0;
    const view = this.heapH || 460;
    if (first && (first.y < top || first.y + first.h > top + view)) {
      this.heapTop = Math.max(0, Math.min(first.y - 8, height - view)); // as the browser clamps it
      this.scrollLater(this.heapScroll, this.heapTop);
    }
    this.placeLanes();
    const nf = hiddenFreed.length;
    this.freedNote.hidden = !nf && !this.showFreed;
    const some = hiddenFreed.slice(0, 12).join(", ") + (nf > 12 ? ", …" : "");
    setText(this.freedText, this.showFreed ? "freed sessions shown" : `${nf} freed earlier: ${some}`);
    setText(this.freedBtn, this.showFreed ? "hide freed" : "show");
    for (const side of SIDES) this.drawStrip(side, state.caches[side]);
  }

  placeLanes() {
    const top = (this.heapTop || 0) - MARGIN;
    const bottom = (this.heapTop || 0) + (this.heapH || 460) + MARGIN;
    for (const lane of this.shown || []) {
      const rec = this.lanes.get(lane.key);
      const vis = lane.y + lane.h > top && lane.y < bottom;
      if (vis !== rec.vis) rec.el.hidden = !(rec.vis = vis);
      if (!vis) continue;
      const sig = laneSignature(lane);
      if (rec.sig !== sig) this.fillLane(rec, lane, (rec.sig = sig));
      else if (rec.cacheText) {
        const text = lane.holders.find((x) => x.kind === "cache").text;
        if (rec.cacheText.nodeValue !== text) rec.cacheText.nodeValue = rec.cacheText.parentNode.title = text;
      }
      if (rec.y !== lane.y || rec.h !== lane.h) {
        rec.el.style.top = (rec.y = lane.y) + "px";
        rec.el.style.height = (rec.h = lane.h) + "px";
      }
    }
  }

  fillLane(rec, lane) {
    const s = lane.session;
    const rows = div("sk-holders");
    rec.cacheText = null;
    for (const x of lane.holders) {
      const mods = (x.danger ? " is-danger" : "") + (x.released ? " is-released" : "");
      const sel = x.kind === "cache" ? null : x.key;
      const cls = `sk-chip sk-chip-${x.kind}${mods}${sel && sel === this.selected ? " is-selected" : ""}`;
      const chip = h("span", { class: cls, title: x.text, "data-select": sel, tabindex: sel && 0 });
      const text = document.createTextNode(x.text);
      chip.append(text);
      if (x.kind === "cache") rec.cacheText = text;
      const data = x.kind === "ssl" ? { ssl: x.name, "points-to": s ? lane.label : "", freed: false } : { ref: x.id, kind: x.refKind, dangling: x.danger };
      if (x.kind !== "cache") for (const k in data) chip.setAttribute("data-" + k, String(data[k]));
      rows.append(div("sk-row", chip, s ? span(`sk-arrow sk-${x.line}${mods}`) : span("sk-none", "no session")));
    }
    if (!s) return rec.el.replaceChildren(rows);
    if (!lane.holders.length) rows.append(h("div", { class: "sk-row sk-none", text: s.freed ? "nothing points here" : "no holder shown" }));
    rec.el.style.setProperty("--hue", hueOf(lane.label));
    const key = "session:" + lane.label;
    const rc = String(s.freed ? 0 : s.refcount);
    const where = (s.cache ? `, in the ${s.cache} cache` : "") + (s.freed ? ", freed" : "");
    const box = h("div", { class: "sk-box" + (key === this.selected ? " is-selected" : ""), "data-select": key, tabindex: 0 },
      span("sk-label", lane.label), span("sk-rc", rc),
      h("span", { class: "sk-badge", text: (s.side || "") + (s.freed ? " · freed" : s.resumable ? "" : " · not resumable") }));
    box.title = `${lane.label}: refcount ${rc}`;
    box.setAttribute("aria-label", box.title + where);
    rec.el.replaceChildren(rows, box);
  }

  drawStrip(side, c) {
    const st = this.strips[side];
    st.box.hidden = !c;
    if (!c) return;
    const s = c.stats || {};
    st.box.setAttribute("data-size", String(c.size));
    setText(st.title, stripTitle(side, c, this.meta.config));
    setText(st.stats, `hits ${s.hits ?? 0} · misses ${s.misses ?? 0} · timeouts ${s.timeouts ?? 0} · cache full ${s.cache_full ?? 0}`);
    if (st.shown === c.members) return;
    const els = this.members[side];
    const keep = new Set((st.shown = c.members));
    for (const [label, e] of els) if (!keep.has(label)) els.delete(label) && e.remove();
    let cur = st.list.firstChild;
    c.members.forEach((label, k) => {
      let e = els.get(label);
      if (!e) {
        e = h("span", { class: "sk-member", role: "listitem", "data-member": label, "data-select": "session:" + label, text: label });
        els.set(label, e);
        e.style.setProperty("--hue", hueOf(label));
      }
      e.classList.toggle("is-tail", k === c.members.length - 1);
      e.hidden = k >= STRIP && k < c.members.length - 1; // a long row wraps slowly
      e.classList.toggle("is-selected", "session:" + label === this.selected);
      if (e === cur) cur = cur.nextSibling;
      else st.list.insertBefore(e, cur);
    });
    st.list.toggleAttribute("data-empty", !c.members.length);
  }

  // -- steps: only the rows in view, plus a few, exist
  drawList(follow) {
    const n = this.fold.length;
    const viewH = Math.min(Math.max(n, 1), LIST_ROWS) * LIST_ROW;
    let top = this.listTop || 0;
    const y = this.index * LIST_ROW;
    if (follow && this.index >= 0 && (y < top || y + LIST_ROW > top + viewH)) {
      this.listTop = top = Math.max(0, Math.min(y - (viewH >> 1), n * LIST_ROW - viewH));
      this.scrollLater(this.list, top); // the list scrolls, never the page
    }
    const first = Math.max(0, Math.floor(top / LIST_ROW) - 6);
    const last = Math.min(n - 1, Math.ceil((top + viewH) / LIST_ROW) + 6);
    for (const [i, row] of this.rows) if (i < first || i > last) this.rows.delete(i) && row.remove();
    for (let i = first; i <= last; i++) {
      let row = this.rows.get(i);
      if (!row) {
        const st = this.fold.steps[i];
        const cls = "sk-item" + (st.error ? " is-error" : "");
        row = h("div", { class: cls, role: "listitem", "data-role": "step-item", "data-index": i, title: st.why || "", style: `top:${i * LIST_ROW}px` },
          span("sk-i", String(i)), span("sk-op", st.op), span("sk-target", st.target || ""));
        this.rows.set(i, row);
        this.list.append(row);
      }
      if (row.classList.toggle("is-current", i === this.index)) row.setAttribute("aria-current", "step");
      else row.removeAttribute("aria-current");
    }
  }

  // -- timeline: drawn once per trace, append, resize or theme change; a move only shifts the marker
  drawTimeline() {
    const f = this.fold;
    const n = f.length;
    const W = this.width || 600;
    const H1 = 150; // px: refcounts
    const H2 = 46; // px: cache sizes
    const dpr = globalThis.devicePixelRatio || 1;
    const cv = this.canvas;
    cv.width = Math.round(W * dpr);
    cv.height = Math.round((H1 + H2 + 8) * dpr);
    cv.style.height = H1 + H2 + 8 + "px";
    const about = `refcounts of ${f.series.size} sessions (max ${f.maxRef}), cache sizes (max ${f.maxCache})`;
    cv.setAttribute("aria-label", `Timeline of ${n} steps: ${about}, ${f.frees.length / 2} frees, ${f.dangles.length} dangling.`);
    const ctx = cv.getContext && cv.getContext("2d");
    this.yAxis.replaceChildren();
    this.xAxis.replaceChildren();
    if (!ctx || !n) return;
    const css = getComputedStyle(this.root);
    const v = (name) => css.getPropertyValue("--sk-" + name).trim();
    const colour = (label) => `hsl(${hueOf(label)} ${v("line-s") || "68%"} ${v("line-l") || "34%"})`;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H1 + H2 + 8);
    ctx.lineJoin = "round";
    const X = (s) => (s * W) / n;
    const maxRef = Math.max(1, f.maxRef);
    const Y = (val) => 12 + (H1 - 18) * (1 - val / maxRef);
    const YC = (val) => H1 + H2 - 4 - ((H2 - 10) * val) / Math.max(1, f.maxCache);
    const label = (top, text) => this.yAxis.append(h("span", { class: "sk-ytick", style: `top:${top - 7}px`, text }));
    ctx.strokeStyle = v("grid") || "gray";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let r = 0, every = Math.ceil(maxRef / 6); r <= maxRef; r += every) {
      const y = Math.round(Y(r)) + 0.5;
      ctx.moveTo(0, y);
      ctx.lineTo(W, y);
      label(y, String(r));
    }
    ctx.moveTo(0, H1 + 2.5);
    ctx.lineTo(W, H1 + 2.5);
    ctx.stroke();
    label(YC(f.maxCache), String(f.maxCache));
    label(H1 + H2 / 2 + 4, "cache");
    // a step line over [a, b), one vertical min..max per pixel column where changes crowd
    const path = (pts, a, b, y, endX = Math.max(X(b), X(a) + 1)) => {
      const bk = bucketSeries(pts, n, W, a, b);
      let prev = valueAt(pts, a - 1);
      ctx.beginPath();
      if (prev !== undefined) ctx.moveTo(X(a), y(prev));
      for (let k = 0; k < bk.length; k += 5) {
        const x = bk[k] + 0.5;
        ctx[prev === undefined ? "moveTo" : "lineTo"](x, y(prev ?? bk[k + 1]));
        ctx.lineTo(x, y(bk[k + 1]));
        if (bk[k + 2] !== bk[k + 3]) {
          ctx.moveTo(x, y(bk[k + 2]));
          ctx.lineTo(x, y(bk[k + 3]));
          ctx.moveTo(x, y(bk[k + 4]));
        }
        prev = bk[k + 4];
      }
      if (prev !== undefined) ctx.lineTo(endX, y(prev));
      ctx.stroke();
    };
    // many sessions: fainter lines, so the crowd reads as density rather than a solid block
    const alpha = Math.max(0.3, Math.min(1, 40 / f.series.size));
    let idx = 0;
    for (const [name, ser] of f.series) {
      const off = f.series.size > 40 ? 0 : ((idx++ % 5) - 2) * 1.5; // few: equal refcounts side by side
      const y = (val) => Y(val) + off;
      ctx.strokeStyle = colour(name);
      ctx.globalAlpha = 0.3 * alpha;
      ctx.lineWidth = 7;
      const iv = ser.open >= 0 ? ser.cache.concat(ser.open, n) : ser.cache;
      for (let k = 0; k < iv.length; k += 2) path(ser.pts, iv[k], iv[k + 1], y);
      ctx.globalAlpha = alpha;
      ctx.lineWidth = 1.6;
      if (ser.freed < 0) path(ser.pts, ser.pts[0], n, y);
      else path(ser.pts, ser.pts[0], ser.freed + 1, y, X(ser.freed) + 0.5);
    }
    ctx.globalAlpha = 1;
    for (let k = 0; k < f.frees.length; k += 2) {
      const [x, y, d] = [X(f.frees[k]) + 0.5, Y(0), 3.5]; // a cross at refcount 0
      ctx.strokeStyle = colour(f.frees[k + 1]);
      ctx.beginPath();
      for (const e of [d, -d]) {
        ctx.moveTo(x - d, y - e);
        ctx.lineTo(x + d, y + e);
      }
      ctx.stroke();
    }
    ctx.fillStyle = v("danger") || "red";
    for (const s of f.dangles) {
      const x = X(s + 0.5);
      ctx.beginPath();
      ctx.moveTo(x - 5, 1);
      ctx.lineTo(x + 5, 1);
      ctx.lineTo(x, 9);
      ctx.fill();
    }
    ctx.font = "bold 12px sans-serif";
    ctx.textAlign = "center";
    for (const s of f.errors) ctx.fillText("!", X(s + 0.5), 11);
    ctx.lineWidth = 1.5;
    for (const side of SIDES) {
      ctx.strokeStyle = v(side === "server" ? "fg" : "muted") || "gray";
      ctx.setLineDash(side === "server" ? [] : [4, 3]);
      const pts = f.cacheSize[side];
      if (pts.length) path(pts, pts[0], n, YC);
    }
    ctx.setLineDash([]);
    for (const s of ticks(n, W)) this.xAxis.append(h("span", { class: "sk-xtick", style: `left:${((s + 0.5) / n) * 100}%`, text: String(s) }));
  }

  // -- events
  wire() {
    const on = (target, type, fn, opts) => {
      target.addEventListener(type, fn, opts);
      this.cleanups.push(() => target.removeEventListener(type, fn, opts));
    };
    const onModel = (name, fn) => {
      this.model.on(name, fn);
      this.cleanups.push(() => this.model.off(name, fn));
    };
    const move = (i) => this.goto(Math.max(0, Math.min(this.fold.length - 1, i)), true);
    on(this.slider, "input", () => move(Number(this.slider.value)));
    for (const t of ["change", "keyup", "click"]) on(this.root, t, () => this.writeUrl());
    on(this.prevBtn, "click", () => move(this.index - 1));
    on(this.nextBtn, "click", () => move(this.index + 1));
    on(this.root, "keydown", (e) => {
      // the range input moves itself on arrow keys (and fires input); text fields keep their keys
      if (e.target === this.slider || typing(e.target) || e.altKey || e.ctrlKey || e.metaKey) return;
      const to = { ArrowLeft: -1, ArrowRight: 1 }[e.key];
      if (to === undefined && e.key !== "Home" && e.key !== "End") return;
      e.preventDefault();
      move(e.key === "Home" ? 0 : e.key === "End" ? this.fold.length - 1 : this.index + to);
    });
    // ours (done or due this frame) is known: reading scrollTop would force a layout in mid-scrub
    const scrolled = (el, fn) => on(el, "scroll", () => this.pending.has(el) || this.own.delete(el) || fn(el.scrollTop), { passive: true });
    scrolled(this.list, (t) => this.drawList(false, (this.listTop = t)));
    scrolled(this.heapScroll, (t) => this.placeLanes((this.heapTop = t)));
    on(this.list, "click", (e) => {
      const row = e.target.closest("[data-role=step-item]");
      if (row) move(Number(row.getAttribute("data-index")));
    });
    // the timeline: a click or a drag picks the step under the pointer
    const pick = (e) => move(Math.floor((e.offsetX / (this.plot.clientWidth || 1)) * this.fold.length));
    on(this.canvas, "pointerdown", (e) => {
      this.dragging = true;
      this.canvas.setPointerCapture(e.pointerId);
      pick(e);
    });
    on(this.canvas, "pointermove", (e) => this.dragging && pick(e));
    on(this.canvas, "pointerup", () => (this.dragging = false));
    on(this.freedBtn, "click", () => {
      this.showFreed = !this.showFreed;
      const i = this.index;
      this.index = -2;
      this.goto(i);
    });
    const select = (e) => {
      const t = e.target.closest("[data-select]");
      if (!t) return false;
      this.setSelected(t.getAttribute("data-select"));
      this.model.set("selected", this.selected);
      this.model.save_changes();
      return true;
    };
    on(this.heap, "click", select);
    on(this.heap, "keydown", (e) => (e.key === "Enter" || e.key === " ") && select(e) && e.preventDefault());
    if (this.copyBtn) on(this.copyBtn, "click", () => this.copyLink());
    if (this.hashKey) {
      on(window, "hashchange", () => {
        const s = parseHash(location.hash, this.hashKey);
        if (s !== null) this.goto(s);
      });
    }
    onModel("change:trace", () => this.load(this.model.get("trace")));
    onModel("change:step", () => this.goto(this.model.get("step")));
    onModel("change:selected", () => this.setSelected(this.model.get("selected") || ""));
    onModel("msg:custom", (msg) => this.onMessage(msg || {}));
    const ro = new ResizeObserver((entries) => {
      for (const { target, contentRect: r } of entries) {
        if (target === this.plot && r.width > 0 && Math.floor(r.width) !== this.width) {
          this.width = Math.floor(r.width);
          this.drawTimeline();
        } else if (target === this.heap && r.width > 0) {
          const c = layoutColumns(r.width);
          this.root.style.setProperty("--sk-chip-w", c.chip + "px");
          this.root.style.setProperty("--sk-box-w", c.box + "px");
        } else if (target === this.heapScroll && r.height > 0) {
          this.heapH = r.height;
          this.placeLanes();
        }
      }
    });
    for (const x of [this.plot, this.heap, this.heapScroll]) ro.observe(x);
    this.cleanups.push(() => ro.disconnect());
    on(matchMedia("(prefers-color-scheme: dark)"), "change", () => this.drawTimeline());
  }

  /** Scroll `el` in the next frame, whose layout is due anyway (scrollTop forces one on a dirty DOM). */
  scrollLater(el, top) {
    this.pending.set(el, top);
    this.raf ||= requestAnimationFrame(() => {
      this.raf = 0;
      for (const [e, t] of this.pending) {
        if (Math.round(e.scrollTop) === t) continue;
        e.scrollTop = t;
        this.own.add(e); // its scroll event is ours
      }
      this.pending.clear();
    });
  }

  setSelected(key) {
    this.selected = key;
    for (const e of this.root.querySelectorAll(".is-selected")) e.classList.remove("is-selected");
    for (const e of this.root.querySelectorAll("[data-select]")) if (key && e.getAttribute("data-select") === key) e.classList.add("is-selected");
  }

  /** The kernel's messages: {type: "append", steps} (new steps) and {type: "truncate", length}. */
  onMessage(msg) {
    const n = this.fold.length;
    if (msg.type === "append" && Array.isArray(msg.steps) && msg.steps.length) {
      const i = this.index;
      this.fold.append(msg.steps);
      this.resized();
      this.index = -2; // redrawn even where it stays: "of N", the marker's place
      this.goto(i === n - 1 && this.model.get("follow") !== false ? this.fold.length - 1 : i);
    } else if (msg.type === "truncate" && Number.isInteger(msg.length) && msg.length >= 0 && msg.length < n) {
      const i = this.index;
      this.reset(new TraceFold(this.fold.steps.slice(0, msg.length)));
      this.goto(Math.min(i, msg.length - 1));
    }
  }

  copyLink() {
    const url = location.href.split("#")[0] + updateHash(location.hash, this.hashKey, this.index);
    const done = (text) => {
      this.copyBtn.textContent = text;
      clearTimeout(this.copyTimer);
      this.copyTimer = setTimeout(() => (this.copyBtn.textContent = "copy link"), 1600);
    };
    const fallback = () => {
      // no clipboard (permission refused, or not a secure context): select the link for the reader
      this.copyField.hidden = false;
      this.copyField.value = url;
      this.copyField.select();
      done("copy the selected link");
    };
    if (navigator.clipboard) navigator.clipboard.writeText(url).then(() => done("copied"), fallback);
    else fallback();
  }

  destroy() {
    for (const c of this.cleanups.splice(0)) c();
    clearTimeout(this.copyTimer);
    clearTimeout(this.urlTimer);
    cancelAnimationFrame(this.raf);
    this.root.remove();
  }
}

// ---- entry points

/** anywidget calls this; returns the cleanup. */
function render({ model, el }) {
  const v = new Viewer(model, el);
  if (model.get("ui")) new OpBar(v, model, el.classList.add("sesskit-stepper"));
  return () => v.destroy();
}

/** anywidget's model interface over a Map, for pages without Jupyter (send does nothing). */
export function makeModel(values) {
  const data = new Map(Object.entries(values));
  const handlers = new Map();
  const emit = (name, ...args) => [...(handlers.get(name) || [])].forEach((fn) => fn(...args));
  return {
    get: (name) => data.get(name),
    set(name, value) {
      if (data.get(name) === value) return;
      data.set(name, value);
      emit("change:" + name, value);
    },
    save_changes() {},
    send() {},
    on: (name, fn) => (handlers.get(name) || handlers.set(name, new Set()).get(name)).add(fn),
    off: (name, fn) => (fn ? handlers.get(name)?.delete(fn) : name ? handlers.delete(name) : handlers.clear()),
    _emit: emit, // delivers "msg:custom" as a kernel would (tests, pages that feed steps)
  };
}

/** Draws `trace` into `el` without Jupyter; options {hashKey, title}; returns the cleanup. */
export function mountStatic(el, trace, options = {}) {
  const model = makeModel({ trace, step: -1, selected: "", follow: true, hash_key: options.hashKey || null });
  const cleanup = render({ model, el });
  const root = el.querySelector(".sesskit-viewer");
  root.classList.add("sesskit-static");
  if (options.title) root.setAttribute("aria-label", "sesskit trace viewer: " + options.title);
  return cleanup;
}


// ---- the Stepper's bar (model with `ui`)
// once per model: new steps join the model's trace (later views, saved state)
function initialize({ model }) {
  const fn = (m) => {
    const s = model.get("trace")?.steps;
    if (s && m?.type === "append") s.push(...m.steps);
    else if (s && m?.type === "truncate") s.length = Math.min(s.length, m.length);
  };
  model.on("msg:custom", fn);
  return () => model.off("msg:custom", fn);
}

class OpBar {
  constructor(v, model) {
    Object.assign(this, { v, model, sent: -1 });
    v.root.prepend((this.el = div("sk-bar")));
    const g = v.goto.bind(v);
    v.goto = (i, u) => (g(i, u), this.shown());
    const fn = () => this.draw(), sel = () => {
      const x = this.f.object, o = x.value;
      x.value = model.get("selected");
      if (x.selectedIndex < 0) x.value = o;
      this.on();
    };
    model.on("change:ui", fn);
    model.on("change:selected", sel);
    v.cleanups.push(() => (model.off("change:ui", fn), model.off("change:selected", sel)));
    this.draw();
  }

  // reused, options updated in place: rebuilding hundreds of options delays the paint
  field(k, l, o, v) {
    const x = (this.f[k] = this.old[k] || h(o ? "select" : "input", { type: o ? null : "number", min: 0 }));
    o?.forEach(([a, t], i) => {
      const e = x.options[i] || x.appendChild(h("option"));
      if (e.value != a) e.value = a;
      if (e.text !== t) e.text = t;
    });
    while (o && x.options.length > o.length) x.lastChild.remove();
    x.value = v ?? "";
    x.disabled = false;
    return h("label", { class: "sesskit-" + k }, l + " ", x);
  }

  btn(n, l, t, fn) {
    const b = h("button", { type: "button", class: "sk-btn sesskit-btn-" + n, title: t, text: l });
    b.onclick = fn;
    return b;
  }

  draw() {
    const ui = this.model.get("ui"), row = (...k) => div("sk-barrow", ...k), p = (c, text) => text && h("p", { class: c, text });
    this.old = this.f || {};
    this.f = {};
    this.bs = [];
    const acts = this.field("object", "acts on", ui.acts_on.o, ui.acts_on.v);
    this.f.object.onchange = () => (this.model.set("selected", this.f.object.value), this.model.save_changes(), this.on());
    const ops = ui.ops.map((o) => [this.bs.push([this.btn(o.n, o.l, o.t, () => this.op(o.n)), o.on]) && this.bs.at(-1)[0], o.arg && this.field(o.arg.k, o.arg.l, o.arg.o, o.arg.v)]);
    const pr = h("input", { type: "checkbox", checked: ui.predict });
    pr.onchange = () => this.send({ op: "predict", on: pr.checked });
    const q = ui.question && div("sesskit-question", ui.question + " ", this.field("guess", "refcount after:"),
      this.btn("answer", "answer", "", () => this.send({ op: "answer", guess: this.num("guess") })));
    this.el.replaceChildren((this.status = p("sesskit-status", " ")), (this.note = div("sesskit-notice", ui.notice || "")), row(acts), row(...ops.flat()),
      row(h("label", { class: "sesskit-predict" }, pr, " predict"), span("sesskit-score", ui.score), this.btn("undo", "undo", "take the last step back", () => this.send({ op: "undo" })),
        this.btn("reset", "reset", "a new lab, same settings", () => this.send({ op: "reset" }))),
      q, p("sesskit-verdict" + (ui.right === false ? " is-wrong" : ""), ui.verdict), p("sesskit-error", ui.error));
    this.on();
    this.shown();
  }

  on() {
    if (this.model.get("ui").seq <= this.sent) return this.lock();
    for (const [b, on] of this.bs) b.disabled = !(on === true || on === this.f.object.value.split(":")[0]);
  }

  lock() {
    for (const x of this.el.querySelectorAll("button,input,select")) x.disabled = true;
  }

  num(k) {
    const x = this.f[k]?.value;
    return x ? +x : null;
  }

  shown() {
    const { v } = this, s = v.fold.steps[v.index];
    this.status.textContent = `${this.model.get("ui").status} · step ${v.index} of ${v.fold.length - 1}: ${s?.op} ${s?.target}`;
  }

  op(n) {
    const { v } = this, i = v.index, last = v.fold.length - 1;
    if (i >= last) return this.send({ op: n });
    this.note.replaceChildren(`You are at step ${i} of ${last}: acting here discards steps ${i + 1}..${last}. `,
      this.btn("branch", "act here (discard)", "", () => this.send({ op: n, at: i })),
      this.btn("end", "go to the end", "", () => (v.goto(last, true), this.note.replaceChildren())));
  }

  send(m) {
    const ui = this.model.get("ui"), f = (k) => this.f[k]?.value;
    if (ui.seq <= this.sent) return;
    this.sent = ui.seq;
    this.lock();
    setTimeout(() => ui === this.model.get("ui") && (this.note.textContent = "No answer yet: with no kernel, run the cell to continue."), 5000);
    this.model.send({ type: "op", seq: ui.seq, acts_on: f("object"), resume: +f("resume"), seconds: this.num("seconds"), side: f("side"), ...m });
  }
}

export default { initialize, render };
