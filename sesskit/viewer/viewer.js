// sesskit viewer: draws a Trace (Python's Trace.to_dict()) in the browser.
//
// One plain ES module with no imports: anywidget loads it from a blob: URL, and static pages import it
// from a blob of inlined text, so it can neither import siblings nor fetch anything.
// Text from a trace is always inserted as text (textContent / setAttribute), never parsed as markup.
//
// Parts, pure first (tested with `node --test tests/js`), then the DOM:
//   folding    deltas -> states; checkpoints every CHECK steps plus per-step undo records, so moving
//              to a nearby step applies or undoes only the deltas in between;
//   timeline   per-session change points gathered while folding, drawn once per trace change on a
//              canvas (downsampled to the pixel width); scrubbing only moves a marker;
//   heap       one lane per session (holders -> session box); heights come from the data, so lanes
//              never overlap and nothing is measured from the DOM; lanes are keyed and only the lanes
//              whose content changed are redrawn;
//   steps      a virtualised list (fixed row height) and the shown step's why.

const CHECK = 64; // a checkpoint (full state copy) every CHECK steps
const SIDES = ["server", "client"];

// ---------------------------------------------------------------- folding (pure)

/** The state before step 0: nothing exists yet. */
export function emptyState() {
  return { sessions: new Map(), ssls: new Map(), refs: new Map(), caches: { client: null, server: null }, time: 0 };
}

/** A copy that shares the (immutable) entity objects: they are replaced, never mutated. */
export function cloneState(s) {
  return {
    sessions: new Map(s.sessions),
    ssls: new Map(s.ssls),
    refs: new Map(s.refs),
    caches: { client: s.caches.client, server: s.caches.server },
    time: s.time,
  };
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

/** A cache's new state from its delta: whole members, or an edit of the previous members. */
export function nextCache(prev, c) {
  const members = c.members ? c.members.slice() : applyEdit(prev ? prev.members : [], c.edit || {});
  return { side: c.side, size: c.size, members, stats: c.stats || {} };
}

const KINDS = [
  ["sessions", "sessions"],
  ["ssls", "ssls"],
  ["refs", "refs"],
];

/**
 * Apply one step's delta to `state` in place; later states replace earlier ones whole.
 * Returns the undo record: [[mapName, key, previous value or undefined], ...] plus caches and time.
 */
export function applyDelta(state, delta) {
  const undo = [];
  if (!delta) return undo;
  for (const [field, map] of KINDS) {
    const d = delta[field];
    if (!d) continue;
    const m = state[map];
    for (const key of Object.keys(d)) {
      undo.push([map, key, m.get(key)]);
      m.set(key, d[key]);
    }
  }
  if (delta.caches) {
    for (const side of Object.keys(delta.caches)) {
      undo.push(["caches", side, state.caches[side]]);
      state.caches[side] = nextCache(state.caches[side], delta.caches[side]);
    }
  }
  if (delta.time !== undefined && delta.time !== null) {
    undo.push(["time", null, state.time]);
    state.time = delta.time;
  }
  return undo;
}

/** Revert what applyDelta did (walks the record backwards). */
export function undoDelta(state, undo) {
  for (let k = undo.length - 1; k >= 0; k--) {
    const [map, key, prev] = undo[k];
    if (map === "time") state.time = prev;
    else if (map === "caches") state.caches[key] = prev;
    else if (prev === undefined) state[map].delete(key);
    else state[map].set(key, prev);
  }
}

/** The state after step `upto` (default: the last), folded from scratch: the reference the rest must match. */
export function foldTrace(trace, upto) {
  const steps = trace.steps || [];
  const last = upto === undefined ? steps.length - 1 : Math.min(upto, steps.length - 1);
  const s = emptyState();
  for (let i = 0; i <= last; i++) applyDelta(s, steps[i].changes);
  return s;
}

/** -1, out of range or not a whole number -> the last step; an empty trace -> -1. */
export function clampStep(step, length) {
  if (length <= 0) return -1;
  if (step === null || step === undefined || step === "") return length - 1;
  const n = Number(step);
  if (!Number.isInteger(n) || n < 0 || n >= length) return length - 1;
  return n;
}

/** Plain data for comparing states (tests, summaries). */
export function stateToPlain(s) {
  const obj = (m) => Object.fromEntries([...m.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
  const cache = (c) => c && { side: c.side, size: c.size, members: c.members.slice(), stats: c.stats };
  return {
    sessions: obj(s.sessions),
    ssls: obj(s.ssls),
    refs: obj(s.refs),
    caches: { client: cache(s.caches.client), server: cache(s.caches.server) },
    time: s.time,
  };
}

/**
 * All steps folded once: checkpoints, undo records, and the timeline's series.
 * `append` extends it; a truncated trace is folded again (rare: undo in the Stepper).
 */
export class TraceFold {
  constructor(steps) {
    this.steps = [];
    this.tail = emptyState(); // the state after the last step
    this.checkpoints = []; // checkpoints[k] = state after step k*CHECK
    this.undos = [];
    // timeline series
    this.series = new Map(); // label -> {pts: [step, refcount, ...], cache: [start, end, ...], freed: step|-1}
    this.cacheSize = { client: [], server: [] }; // [step, size, ...]
    this.frees = []; // [step, label, ...]
    this.dangles = []; // steps where a pointer started dangling
    this.errors = []; // steps refused with an error
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
      this.steps.push(step);
      const d = step.changes || {};
      if (d.sessions) {
        for (const label of Object.keys(d.sessions)) {
          const v = d.sessions[label];
          let ser = this.series.get(label);
          if (!ser) this.series.set(label, (ser = { pts: [], cache: [], freed: -1, open: -1 }));
          const rc = v.freed ? 0 : v.refcount | 0;
          const p = ser.pts;
          if (!p.length || p[p.length - 1] !== rc) p.push(i, rc);
          if (rc > this.maxRef) this.maxRef = rc;
          const inCache = !!v.cache && !v.freed;
          if (inCache && ser.open < 0) ser.open = i;
          if (!inCache && ser.open >= 0) {
            ser.cache.push(ser.open, i);
            ser.open = -1;
          }
          if (v.freed && ser.freed < 0) {
            ser.freed = i;
            this.frees.push(i, label);
          }
        }
      }
      if (d.refs) {
        for (const id of Object.keys(d.refs)) {
          const before = s.refs.get(id);
          if (d.refs[id].dangling && !(before && before.dangling)) {
            if (this.dangles[this.dangles.length - 1] !== i) this.dangles.push(i);
          }
        }
      }
      if (step.error) this.errors.push(i);
      this.undos.push(applyDelta(s, d));
      if (d.caches) {
        for (const side of SIDES) {
          if (!d.caches[side]) continue;
          const size = s.caches[side].size;
          const p = this.cacheSize[side];
          if (!p.length || p[p.length - 1] !== size) p.push(i, size);
          if (size > this.maxCache) this.maxCache = size;
        }
      }
      if (i % CHECK === 0) this.checkpoints.push(cloneState(s));
    }
  }

  /** A fresh copy of the state after step i. */
  stateAt(i) {
    const k = Math.floor(i / CHECK);
    const s = cloneState(this.checkpoints[k]);
    for (let j = k * CHECK + 1; j <= i; j++) applyDelta(s, this.steps[j].changes);
    return s;
  }
}

/** A movable state: goto(i) applies or undoes only the deltas between, or starts at a checkpoint. */
export class Cursor {
  constructor(fold) {
    this.fold = fold;
    this.index = -1;
    this.state = emptyState();
  }

  goto(i) {
    const f = this.fold;
    if (i === this.index) return this.state;
    if (i < 0) {
      this.index = -1;
      this.state = emptyState();
      return this.state;
    }
    const near = Math.abs(i - this.index) <= CHECK && this.index >= 0;
    const base = Math.floor(i / CHECK) * CHECK;
    if (!near && !(this.index >= base && this.index <= i)) {
      this.state = cloneState(f.checkpoints[base / CHECK]);
      this.index = base;
    }
    while (this.index < i) applyDelta(this.state, f.steps[++this.index].changes);
    while (this.index > i) undoDelta(this.state, f.undos[this.index--]);
    return this.state;
  }
}

// ---------------------------------------------------------------- the heap (pure)

export const ROW = 26; // one holder chip per row, px
export const BOX_MIN = 54; // the session box's least height (label + the big refcount)
export const GAP = 6; // between lanes

/** A stable hue per label (golden-angle spacing on its number), avoiding the reds kept for danger. */
export function hueOf(label) {
  const m = /(\d+)/.exec(String(label));
  let n = 0;
  if (m) n = Number(m[1]);
  else for (const ch of String(label)) n = (n * 31 + ch.charCodeAt(0)) >>> 0;
  return Math.round(30 + ((n * 137.508) % 360) * (300 / 360)); // squeezed into 30..330: no red
}

function refDangles(r, state) {
  const target = state.sessions.get(r.session);
  return !!r.dangling || !!(target && target.freed);
}

/**
 * The heap at a state as lanes: one per session that is live or still pointed at (or just freed, or all
 * freed ones when showFreed), one per SSL without a session. Each lane lists its holders (SSL, cache,
 * user pointers) and has y/h computed from its row count, so lanes never overlap.
 * Returns {lanes, hiddenFreed: [labels], height}.
 */
export function heapLanes(state, opts = {}) {
  const justFreed = opts.justFreed || new Set();
  const holders = new Map();
  const hold = (label, h) => {
    const a = holders.get(label);
    if (a) a.push(h);
    else holders.set(label, [h]);
  };
  const loose = [];
  for (const s of state.ssls.values()) {
    if (s.freed) continue;
    const extra = (s.sent_shutdown ? " · shut down" : "") + (s.cleared ? " · cleared" : "");
    const h = { kind: "ssl", key: "ssl:" + s.name, name: s.name, text: "SSL " + s.name + extra, line: "solid" };
    if (s.session) {
      h.danger = !!(state.sessions.get(s.session) || {}).freed;
      hold(s.session, h);
    } else loose.push(h);
  }
  for (const side of SIDES) {
    const c = state.caches[side];
    if (!c) continue;
    const n = c.members.length;
    c.members.forEach((label, k) => {
      // #k counts from the head; the strip above marks the tail ("next evicted")
      hold(label, { kind: "cache", key: "cache:" + side, side, text: side + " cache #" + (k + 1) + (n > 1 && k === n - 1 ? " (tail)" : ""), line: "solid" });
    });
  }
  for (const r of state.refs.values()) {
    const danger = refDangles(r, state);
    if (r.released && danger) continue; // given back, then freed: the pointer holds nothing any more
    const note = danger ? " · dangling" : r.released ? " · released" : "";
    hold(r.session, {
      kind: "ref",
      key: "ref:" + r.id,
      id: String(r.id),
      refKind: r.kind,
      text: r.kind + " #" + r.id + " via " + r.via + note,
      line: r.released ? "dotted" : r.kind === "get0" ? "dashed" : "solid",
      danger,
      released: !!r.released,
    });
  }
  const lanes = [];
  const hiddenFreed = [];
  let y = 0;
  const push = (lane) => {
    const rows = Math.max(1, lane.holders.length);
    lane.y = y;
    lane.h = Math.max(rows * ROW, lane.kind === "session" ? BOX_MIN : ROW) + GAP;
    y += lane.h;
    lanes.push(lane);
  };
  for (const h of loose) push({ key: "n:" + h.name, kind: "ssl", label: h.name, holders: [h] });
  for (const [label, s] of state.sessions) {
    const hs = holders.get(label) || [];
    if (s.freed && !hs.length && !justFreed.has(label) && !opts.showFreed) {
      hiddenFreed.push(label);
      continue;
    }
    push({ key: "s:" + label, kind: "session", label, session: s, holders: hs });
  }
  return { lanes, hiddenFreed, height: y };
}

/**
 * Horizontal layout of a lane for a panel `width` px wide: holder chip, arrow (at least 24 px) and
 * session box, never wider than the panel. The renderer sets these as CSS variables.
 */
export function layoutColumns(width) {
  const w = Math.max(200, width || 600);
  const pad = 8;
  const box = w < 480 ? 104 : 132;
  const chip = Math.max(88, Math.min(230, Math.floor((w - box - pad) * 0.62)));
  const arrow = w - pad - box - chip;
  return { chip, arrow, box, pad, total: chip + arrow + box + pad };
}

/** A lane's content as one string: the lane is redrawn only when it changes. */
export function laneSignature(lane) {
  let sig = lane.kind;
  const s = lane.session;
  if (s) sig += `|${s.refcount}|${s.cache || ""}|${!!s.freed}|${!!s.resumable}|${s.side}`;
  for (const h of lane.holders) {
    // a cache chip's "#k" changes whenever the cache's head moves: it is updated in place instead
    sig += "|" + h.key + ":" + (h.kind === "cache" ? "" : h.text) + ":" + h.line + ":" + !!h.danger;
  }
  return sig;
}

/** A sentence for screen readers: the step, every session (up to 12), the caches, dangling pointers. */
export function summarize(state, step, last) {
  const parts = [];
  if (step) parts.push(`step ${step.index} of ${last}: ${step.op} ${step.target || ""}`.trim() + ".");
  const live = [...state.sessions.values()].filter((s) => !s.freed);
  const shown = live.slice(0, 12).map((s) => `${s.label} refcount ${s.refcount}` + (s.cache ? ` in ${s.cache} cache` : ""));
  parts.push(
    live.length
      ? `${live.length} live session${live.length === 1 ? "" : "s"}: ${shown.join(", ")}${live.length > 12 ? ", …" : ""}.`
      : "No live sessions.",
  );
  for (const side of SIDES) {
    const c = state.caches[side];
    if (c) parts.push(`${side} cache: ${c.members.length ? c.members.join(", ") : "empty"}.`);
  }
  const dangling = [...state.refs.values()].filter((r) => !r.released && refDangles(r, state));
  if (dangling.length) parts.push(`Dangling pointers: ${dangling.map((r) => `#${r.id} to ${r.session}`).join(", ")}.`);
  return parts.join(" ");
}

// ---------------------------------------------------------------- timeline (pure)

/**
 * A step series (change points [step, value, ...], each value held until the next point) inside
 * steps [a, b) squeezed to `width` pixels over `n` steps: one bucket per pixel column that has points,
 * [px, first, min, max, last] (flat). Each bucket keeps the min and max of its points.
 */
export function bucketSeries(pts, n, width, a = 0, b = n) {
  const out = [];
  const scale = width / Math.max(1, n);
  let px = -1;
  let k = out.length;
  for (let j = 0; j < pts.length; j += 2) {
    const s = pts[j];
    if (s < a || s >= b) continue;
    const v = pts[j + 1];
    const x = Math.floor(s * scale);
    if (x !== px) {
      px = x;
      k = out.length;
      out.push(x, v, v, v, v);
    } else {
      if (v < out[k + 2]) out[k + 2] = v;
      if (v > out[k + 3]) out[k + 3] = v;
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

/** Tick steps for an axis of n steps over `width` px: a 1-2-5 spacing, about one label per 70 px. */
export function ticks(n, width) {
  if (n <= 0) return [];
  const want = Math.max(2, Math.floor(width / 70));
  let step = 1;
  for (let m = 1; ; m *= 10) {
    const c = [1, 2, 5].map((f) => f * m).find((x) => (n - 1) / x <= want);
    if (c) {
      step = c;
      break;
    }
  }
  const out = [];
  for (let s = 0; s < n; s += step) out.push(s);
  return out;
}

// ---------------------------------------------------------------- URL fragment (pure)

/** The step in a `#a=1&step=5` fragment under `key`, or null. */
export function parseHash(hash, key) {
  const p = new URLSearchParams(String(hash || "").replace(/^#/, ""));
  if (!p.has(key)) return null;
  const v = p.get(key);
  return /^-?\d+$/.test(v) ? Number(v) : null;
}

/** The fragment with `key` set to `value`, other keys untouched (and in their order). */
export function updateHash(hash, key, value) {
  const p = new URLSearchParams(String(hash || "").replace(/^#/, ""));
  p.set(key, String(value));
  return "#" + p.toString();
}

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  if (attrs) {
    for (const k of Object.keys(attrs)) {
      const v = attrs[k];
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k === "style") e.style.cssText = v; // CSSOM, not a style attribute: fine under a strict CSP
      else e.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
  return e;
}

const inTextField = (t) =>
  t && (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || (t.tagName === "INPUT" && t.type !== "range"));

// ---------------------------------------------------------------- the viewer

class Viewer {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.hashKey = typeof model.get("hash_key") === "string" && model.get("hash_key") ? model.get("hash_key") : null;
    this.lanes = new Map(); // lane key -> {el, sig, cacheText}
    this.listRows = new Map(); // step index -> row element
    this.memberEls = { client: new Map(), server: new Map() };
    this.shownMembers = { client: null, server: null };
    this.showFreed = false;
    this.selected = model.get("selected") || "";
    this.width = 0;
    this.cleanups = [];
    this.build();
    this.load(model.get("trace"));
    this.wire();
  }

  // -- skeleton (built once; the trace fills it)
  build() {
    const root = h("div", { class: "sesskit-viewer", tabindex: 0, role: "group", "aria-label": "sesskit trace viewer", "data-step": -1 });
    if (this.hashKey) root.classList.add("sesskit-static");
    this.root = root;
    this.head = h("div", { class: "sk-head" });
    this.prevBtn = h("button", { type: "button", class: "sk-btn", "aria-label": "previous step", title: "previous step (←)", text: "◀" });
    this.nextBtn = h("button", { type: "button", class: "sk-btn", "aria-label": "next step", title: "next step (→)", text: "▶" });
    this.slider = h("input", { type: "range", min: 0, max: 0, step: 1, value: 0, class: "sk-slider", "aria-label": "step" });
    this.stepLabel = h("span", { class: "sk-steplabel", "aria-live": "polite" });
    const controls = h("div", { class: "sk-controls" }, this.prevBtn, this.slider, this.nextBtn, this.stepLabel);
    if (this.hashKey) {
      this.copyBtn = h("button", { type: "button", class: "sk-btn sk-copy", "aria-label": "copy a link to this step", text: "copy link" });
      this.copyField = h("input", { type: "text", class: "sk-copyfield", readonly: true, "aria-label": "link to this step", hidden: true });
      controls.append(this.copyBtn, this.copyField);
    }
    this.whyOp = h("div", { class: "sk-whyop" });
    this.why = h("p", { class: "sk-why", "data-role": "why" });
    this.result = h("p", { class: "sk-result" });
    this.error = h("p", { class: "sk-errortext", role: "alert" });
    const whyBox = h("div", { class: "sk-whybox" }, this.whyOp, this.why, this.result, this.error);
    this.whyBox = whyBox;
    // heap: caches as ordered strips, then the lanes
    this.strips = {};
    const stripBox = h("div", { class: "sk-strips" });
    for (const side of SIDES) {
      const title = h("div", { class: "sk-strip-title" });
      const list = h("div", { class: "sk-strip-members", role: "list" });
      const stats = h("div", { class: "sk-strip-stats" });
      const box = h("div", { class: "sk-strip", "data-cache-side": side, "data-size": 0 }, title, list, stats);
      this.strips[side] = { box, title, list, stats };
      stripBox.append(box);
    }
    this.laneBox = h("div", { class: "sk-lanes" });
    this.freedNote = h("div", { class: "sk-freed" });
    this.freedText = h("span");
    this.freedBtn = h("button", { type: "button", class: "sk-btn sk-small", text: "show" });
    this.freedNote.append(this.freedText, " ", this.freedBtn);
    this.summary = h("p", { class: "sk-sr", "aria-live": "polite" });
    const legend = h(
      "div",
      { class: "sk-legend", "aria-hidden": "true" },
      h("span", { class: "sk-lg sk-lg-solid", text: "SSL / cache / get1" }),
      h("span", { class: "sk-lg sk-lg-dashed", text: "get0 (borrowed)" }),
      h("span", { class: "sk-lg sk-lg-dotted", text: "released" }),
      h("span", { class: "sk-lg sk-lg-danger", text: "dangling" }),
    );
    this.heapScroll = h("div", { class: "sk-heapscroll" }, this.laneBox, this.freedNote);
    this.heap = h(
      "section",
      { class: "sk-heap", "aria-label": "heap: SSLs, sessions and their refcounts, both caches" },
      h("h3", { class: "sk-h", text: "Heap" }),
      stripBox,
      legend,
      this.heapScroll,
      this.summary,
    );
    // steps list (virtualised)
    this.listSpacer = h("div", { class: "sk-list-spacer" });
    this.list = h("div", { class: "sk-list", role: "list", "aria-label": "steps", tabindex: -1 }, this.listSpacer);
    const side = h("section", { class: "sk-side", "aria-label": "steps" }, h("h3", { class: "sk-h", text: "Steps" }), this.list);
    // timeline
    this.canvas = h("canvas", { class: "sk-canvas", role: "img", "aria-label": "timeline" });
    this.marker = h("div", { class: "sk-marker", "aria-hidden": "true" });
    this.yAxis = h("div", { class: "sk-yaxis", "aria-hidden": "true" });
    this.xAxis = h("div", { class: "sk-xaxis", "aria-hidden": "true" });
    this.plot = h("div", { class: "sk-plot" }, this.canvas, this.marker, this.xAxis);
    const tlLegend = h(
      "div",
      { class: "sk-tl-legend", "aria-hidden": "true" },
      h("span", { text: "lines: refcount per session (thick while in a cache)" }),
      h("span", { text: "× freed" }),
      h("span", { class: "sk-danger-text", text: "▼ a pointer starts dangling · ! refused" }),
      h("span", { text: "lower band: cache sizes (server solid, client dashed)" }),
    );
    this.timeline = h("section", { class: "sk-timeline", "aria-label": "timeline" }, h("h3", { class: "sk-h", text: "Timeline" }), h("div", { class: "sk-tl" }, this.yAxis, this.plot), tlLegend);
    root.append(this.head, controls, whyBox, h("div", { class: "sk-main" }, this.heap, side), this.timeline);
    this.el.append(root);
  }

  // -- a whole trace (mount, or change:trace)
  load(trace) {
    trace = trace || {};
    this.trace = trace;
    this.meta = trace.meta || {};
    this.fold = new TraceFold((trace.steps || []).slice());
    this.cursor = new Cursor(this.fold);
    this.index = -2;
    for (const l of this.lanes.values()) l.el.remove();
    this.lanes.clear();
    for (const side of SIDES) {
      this.memberEls[side].clear();
      this.shownMembers[side] = null;
      this.strips[side].list.replaceChildren();
    }
    for (const r of this.listRows.values()) r.remove();
    this.listRows.clear();
    this.afterLength();
    let want = this.model.get("step");
    if (this.hashKey) {
      const fromHash = parseHash(location.hash, this.hashKey);
      if (fromHash !== null) want = fromHash;
    }
    this.goto(clampStep(want, this.fold.length), false);
  }

  /** After the number of steps changed: slider range, list height, timeline. */
  afterLength() {
    const n = this.fold.length;
    this.slider.max = String(Math.max(0, n - 1));
    this.slider.disabled = n <= 1;
    this.listSpacer.style.height = n * ROW_LIST + "px";
    this.list.style.height = Math.min(Math.max(n, 1), LIST_ROWS) * ROW_LIST + "px";
    this.drawTimeline();
  }

  // -- moving
  goto(i, fromUser) {
    const n = this.fold.length;
    i = clampStep(i, n);
    if (i === this.index) return;
    const state = this.cursor.goto(i);
    this.index = i;
    const step = i >= 0 ? this.fold.steps[i] : null;
    this.root.setAttribute("data-step", String(i));
    this.slider.value = String(Math.max(0, i));
    this.drawHead(state, step, n);
    this.drawWhy(step, n);
    this.drawHeap(state, step);
    this.drawList();
    this.marker.style.left = n ? ((i + 0.5) / n) * 100 + "%" : "0";
    this.summary.textContent = summarize(state, step, n - 1);
    if (fromUser) {
      this.model.set("step", i);
      this.model.save_changes();
      if (this.hashKey) history.replaceState(history.state, "", updateHash(location.hash, this.hashKey, i));
    }
  }

  drawHead(state, step, n) {
    const m = this.meta;
    const c = m.config || {};
    const bits = [];
    if (m.title) bits.push(m.title);
    else if (m.scenario) bits.push(m.scenario);
    if (m.engine) bits.push("engine " + m.engine);
    if (m.openssl_version) bits.push(m.openssl_version);
    if (c.tls) bits.push("TLS " + c.tls);
    if (c.tickets !== undefined) bits.push(c.tickets ? "tickets on" : "tickets off");
    if (c.cache_size !== undefined) bits.push("cache size " + c.cache_size);
    if (c.timeout !== undefined) bits.push("timeout " + c.timeout + " s");
    const text = bits.join(" · ");
    if (this.headText !== text) {
      this.headText = text;
      this.head.replaceChildren(h("span", { class: "sk-meta", text }), h("span", { class: "sk-time" }));
    }
    this.head.lastChild.textContent = "t = " + state.time + " s";
    this.stepLabel.textContent = step ? `step ${step.index ?? this.index} of ${n - 1} · ${step.op} ${step.target || ""}` : "no steps";
    this.prevBtn.disabled = this.index <= 0;
    this.nextBtn.disabled = this.index >= n - 1;
  }

  drawWhy(step) {
    this.whyOp.textContent = step ? `${step.op} ${step.target || ""}` : "";
    this.why.textContent = step ? step.why || "" : "This trace has no steps yet.";
    this.result.textContent = step && step.result != null ? "result: " + step.result : "";
    this.result.hidden = !(step && step.result != null);
    const err = step && step.error;
    this.error.textContent = err ? `refused (${err.kind || "error"}): ${err.message || ""} Nothing changed.` : "";
    this.error.hidden = !err;
    this.whyBox.classList.toggle("is-error", !!err);
  }

  // -- heap
  drawHeap(state, step) {
    const justFreed = new Set();
    const ds = step && step.changes && step.changes.sessions;
    if (ds) for (const k of Object.keys(ds)) if (ds[k].freed) justFreed.add(k);
    const { lanes, hiddenFreed } = heapLanes(state, { justFreed, showFreed: this.showFreed });
    const want = new Set(lanes.map((l) => l.key));
    for (const [key, rec] of this.lanes) {
      if (!want.has(key)) {
        rec.el.remove();
        this.lanes.delete(key);
      }
    }
    // keyed reconcile: walk the wanted order, moving/creating only what differs
    let cur = this.laneBox.firstChild;
    for (const lane of lanes) {
      let rec = this.lanes.get(lane.key);
      const sig = laneSignature(lane);
      if (!rec) {
        rec = { el: h("div", { class: "sk-lane" }), sig: null, cacheText: null };
        this.lanes.set(lane.key, rec);
      }
      if (rec.sig !== sig) {
        this.fillLane(rec, lane);
        rec.sig = sig;
      } else if (rec.cacheText) {
        const c = lane.holders.find((x) => x.kind === "cache");
        if (c && rec.cacheText.nodeValue !== c.text) {
          rec.cacheText.nodeValue = c.text;
          rec.cacheText.parentNode.title = c.text;
        }
      }
      if (rec.h !== lane.h) {
        rec.el.style.height = lane.h + "px";
        rec.h = lane.h;
      }
      if (rec.el === cur) cur = cur.nextSibling;
      else this.laneBox.insertBefore(rec.el, cur);
    }
    this.laneBox.classList.toggle("sk-many", lanes.length > 120);
    const nf = hiddenFreed.length;
    this.freedNote.hidden = !nf && !this.showFreed;
    this.freedText.textContent = this.showFreed
      ? "freed sessions shown"
      : `${nf} freed earlier${nf ? ": " + hiddenFreed.slice(0, 12).join(", ") + (nf > 12 ? ", …" : "") : ""}`;
    this.freedBtn.textContent = this.showFreed ? "hide freed" : "show";
    for (const side of SIDES) this.drawStrip(side, state.caches[side]);
  }

  fillLane(rec, lane) {
    const el = rec.el;
    const s = lane.session;
    rec.cacheText = null;
    for (const a of el.getAttributeNames()) if (a.startsWith("data-")) el.removeAttribute(a);
    el.className = "sk-lane";
    const rows = h("div", { class: "sk-holders" });
    for (const hd of lane.holders) {
      const chip = h("span", { class: `sk-chip sk-chip-${hd.kind}`, "data-select": hd.kind === "cache" ? null : hd.key, title: hd.text });
      const text = document.createTextNode(hd.text);
      chip.append(text);
      if (hd.kind === "ssl") {
        chip.setAttribute("data-ssl", hd.name);
        chip.setAttribute("data-points-to", s ? lane.label : "");
        chip.setAttribute("data-freed", "false");
        chip.tabIndex = 0;
      } else if (hd.kind === "ref") {
        chip.setAttribute("data-ref", hd.id);
        chip.setAttribute("data-kind", hd.refKind);
        chip.setAttribute("data-dangling", String(!!hd.danger));
        chip.tabIndex = 0;
      } else rec.cacheText = text;
      if (hd.key === this.selected) chip.classList.add("is-selected");
      const arrow = s ? h("span", { class: `sk-arrow sk-${hd.line}` + (hd.danger ? " is-danger" : "") + (hd.released ? " is-released" : "") }) : null;
      if (hd.danger) chip.classList.add("is-danger");
      if (hd.released) chip.classList.add("is-released");
      rows.append(h("div", { class: "sk-row" }, chip, arrow));
    }
    if (!s) {
      el.classList.add("sk-lane-loose");
      rows.append(h("span", { class: "sk-nosession", text: "no session" }));
      el.replaceChildren(rows);
      return;
    }
    if (!lane.holders.length) rows.append(h("div", { class: "sk-row sk-none", text: s.freed ? "nothing points here" : "no holder shown" }));
    el.setAttribute("data-session", lane.label);
    el.setAttribute("data-refcount", String(s.freed ? 0 : s.refcount | 0));
    el.setAttribute("data-cache", s.cache || "none");
    el.setAttribute("data-freed", String(!!s.freed));
    el.style.setProperty("--hue", hueOf(lane.label));
    if (s.freed) el.classList.add("is-freed");
    const key = "session:" + lane.label;
    const badges = [];
    badges.push(s.side || "");
    if (s.freed) badges.push("freed");
    else badges.push(s.resumable ? "resumable" : "not resumable");
    const box = h(
      "div",
      { class: "sk-box" + (key === this.selected ? " is-selected" : ""), "data-select": key, tabindex: 0, "aria-label": `${lane.label}: refcount ${s.freed ? 0 : s.refcount}${s.cache ? ", in the " + s.cache + " cache" : ""}${s.freed ? ", freed" : ""}` },
      h("span", { class: "sk-label", text: lane.label }),
      h("span", { class: "sk-rc", text: String(s.freed ? 0 : s.refcount), title: "refcount" }),
      h("span", { class: "sk-badge", text: badges.join(" · ") }),
    );
    el.replaceChildren(rows, box);
  }

  drawStrip(side, c) {
    const st = this.strips[side];
    const members = c ? c.members : [];
    st.box.setAttribute("data-size", String(c ? c.size : 0));
    st.box.hidden = !c;
    if (!c) return;
    const s = c.stats || {};
    const cfg = this.meta.config || {};
    const off = side === "client" && cfg.client_cache === false ? " (caching off)" : "";
    st.title.textContent = `${side} cache${off} · ${c.size} session${c.size === 1 ? "" : "s"} · head → tail`;
    st.stats.textContent = `hits ${s.hits ?? 0} · misses ${s.misses ?? 0} · timeouts ${s.timeouts ?? 0} · cache full ${s.cache_full ?? 0}`;
    if (this.shownMembers[side] === members) return;
    this.shownMembers[side] = members;
    const els = this.memberEls[side];
    const keep = new Set(members);
    for (const [label, e] of els) {
      if (!keep.has(label)) {
        e.remove();
        els.delete(label);
      }
    }
    let cur = st.list.firstChild;
    members.forEach((label, k) => {
      let e = els.get(label);
      if (!e) {
        e = h("span", { class: "sk-member", role: "listitem", "data-member": label, "data-select": "session:" + label, text: label });
        e.style.setProperty("--hue", hueOf(label));
        els.set(label, e);
      }
      e.classList.toggle("is-tail", k === members.length - 1);
      e.classList.toggle("is-selected", "session:" + label === this.selected);
      if (e === cur) cur = cur.nextSibling;
      else st.list.insertBefore(e, cur);
    });
    if (!members.length) st.list.setAttribute("data-empty", "empty");
    else st.list.removeAttribute("data-empty");
  }

  // -- steps list: only the rows in view (plus a margin) exist
  drawList(scrollToCurrent = true) {
    const n = this.fold.length;
    const viewH = Math.min(Math.max(n, 1), LIST_ROWS) * ROW_LIST;
    let top = this.listTop || 0;
    if (scrollToCurrent && this.index >= 0) {
      const y = this.index * ROW_LIST;
      if (y < top || y + ROW_LIST > top + viewH) {
        top = Math.max(0, Math.min(y - Math.floor(viewH / 2), n * ROW_LIST - viewH));
        this.listTop = top;
        this.list.scrollTop = top; // the list scrolls, never the page
      }
    }
    const first = Math.max(0, Math.floor(top / ROW_LIST) - 6);
    const last = Math.min(n - 1, Math.ceil((top + viewH) / ROW_LIST) + 6);
    for (const [i, row] of this.listRows) {
      if (i < first || i > last) {
        row.remove();
        this.listRows.delete(i);
      }
    }
    for (let i = first; i <= last; i++) {
      let row = this.listRows.get(i);
      if (!row) {
        const st = this.fold.steps[i];
        row = h(
          "div",
          { class: "sk-item" + (st.error ? " is-error" : ""), role: "listitem", "data-role": "step-item", "data-index": i, title: st.why || "" },
          h("span", { class: "sk-i", text: String(i) }),
          h("span", { class: "sk-op", text: st.op }),
          h("span", { class: "sk-target", text: st.target || "" }),
        );
        row.style.top = i * ROW_LIST + "px";
        this.listRows.set(i, row);
        this.list.append(row);
      }
      const on = i === this.index;
      if (row.classList.contains("is-current") !== on) {
        row.classList.toggle("is-current", on);
        if (on) row.setAttribute("aria-current", "step");
        else row.removeAttribute("aria-current");
      }
    }
  }

  // -- timeline: drawn once per trace change / resize / append, never while scrubbing
  drawTimeline() {
    const f = this.fold;
    const n = f.length;
    const cssW = this.width || 600;
    const dpr = (typeof devicePixelRatio === "number" && devicePixelRatio) || 1;
    const H1 = 150; // refcount band
    const H2 = 46; // cache-size band
    const cssH = H1 + H2 + 8;
    const cv = this.canvas;
    cv.width = Math.round(cssW * dpr);
    cv.height = Math.round(cssH * dpr);
    cv.style.height = cssH + "px";
    const ctx = cv.getContext && cv.getContext("2d");
    const labels = [...f.series.keys()];
    const live = labels.filter((l) => f.series.get(l).freed < 0).length;
    cv.setAttribute("aria-label", `Timeline over ${n} steps: refcounts of ${labels.length} sessions (${live} live at the end), max refcount ${f.maxRef}; cache sizes; ${f.frees.length / 2} frees; ${f.dangles.length} steps where a pointer started dangling.`);
    this.yAxis.replaceChildren();
    this.xAxis.replaceChildren();
    if (!ctx || !n) return;
    const cs = getComputedStyle(this.root);
    const v = (name, dflt) => cs.getPropertyValue(name).trim() || dflt;
    const L = v("--sk-line-l", "42%");
    const S = v("--sk-line-s", "70%");
    const fg = v("--sk-fg", "#222");
    const muted = v("--sk-muted", "#888");
    const danger = v("--sk-danger", "#d00");
    const grid = v("--sk-grid", "rgba(128,128,128,.25)");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const W = cssW;
    const xs = W / n;
    const X = (s) => s * xs;
    const top = 12;
    const maxRef = Math.max(1, f.maxRef);
    const Y = (val) => top + (H1 - top - 6) * (1 - val / maxRef);
    // grid lines at integer refcounts
    ctx.lineWidth = 1;
    ctx.strokeStyle = grid;
    const every = Math.max(1, Math.ceil(maxRef / 6));
    for (let r = 0; r <= maxRef; r += every) {
      const y = Math.round(Y(r)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(W, y);
      ctx.stroke();
      this.yAxis.append(h("span", { class: "sk-ytick", style: `top:${y - 7}px`, text: String(r) }));
    }
    this.yAxis.append(h("span", { class: "sk-ytick sk-ylab", style: `top:${H1 + H2 / 2 - 7}px`, text: "cache" }));
    const path = (pts, a, b, off, endX) => {
      // the step line of pts over steps [a, b), downsampled to one vertical min..max per pixel column
      const bk = bucketSeries(pts, n, W, a, b);
      let prev = valueAt(pts, a - 1);
      ctx.beginPath();
      if (prev !== undefined) ctx.moveTo(X(a), Y(prev) + off);
      for (let k = 0; k < bk.length; k += 5) {
        const x = bk[k] + 0.5;
        if (prev !== undefined) ctx.lineTo(x, Y(prev) + off);
        else ctx.moveTo(x, Y(bk[k + 1]) + off);
        ctx.lineTo(x, Y(bk[k + 1]) + off);
        if (bk[k + 2] !== bk[k + 3]) {
          // several changes inside one pixel column: its min..max, then on from the last value
          ctx.moveTo(x, Y(bk[k + 2]) + off);
          ctx.lineTo(x, Y(bk[k + 3]) + off);
          ctx.moveTo(x, Y(bk[k + 4]) + off);
        }
        prev = bk[k + 4];
      }
      if (prev !== undefined) ctx.lineTo(endX === undefined ? Math.max(X(b), X(a) + 1) : endX, Y(prev) + off);
      ctx.stroke();
    };
    ctx.lineJoin = "round";
    let idx = 0;
    for (const [label, ser] of f.series) {
      const col = `hsl(${hueOf(label)} ${S} ${L})`;
      const off = ((idx++ % 5) - 2) * 1.5; // equal refcounts stay visible side by side
      ctx.strokeStyle = col;
      // cache membership: a thick translucent band under the line
      const iv = ser.open >= 0 ? ser.cache.concat([ser.open, n]) : ser.cache;
      if (iv.length) {
        ctx.globalAlpha = 0.3;
        ctx.lineWidth = 7;
        for (let k = 0; k < iv.length; k += 2) path(ser.pts, iv[k], iv[k + 1], off);
        ctx.globalAlpha = 1;
      }
      ctx.lineWidth = 1.6;
      if (ser.freed >= 0) path(ser.pts, ser.pts[0], ser.freed + 1, off, X(ser.freed) + 0.5);
      else path(ser.pts, ser.pts[0], n, off);
    }
    // frees: a cross at refcount 0
    ctx.lineWidth = 1.5;
    for (let k = 0; k < f.frees.length; k += 2) {
      const x = X(f.frees[k]) + 0.5;
      const y = Y(0);
      ctx.strokeStyle = `hsl(${hueOf(f.frees[k + 1])} ${S} ${L})`;
      ctx.beginPath();
      ctx.moveTo(x - 3.5, y - 3.5);
      ctx.lineTo(x + 3.5, y + 3.5);
      ctx.moveTo(x + 3.5, y - 3.5);
      ctx.lineTo(x - 3.5, y + 3.5);
      ctx.stroke();
    }
    // dangling pointers and refused steps: red marks at the top
    ctx.fillStyle = danger;
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
    // cache sizes in their own band
    const maxC = Math.max(1, f.maxCache);
    const YC = (val) => H1 + H2 - 4 - (H2 - 10) * (val / maxC);
    ctx.strokeStyle = grid;
    ctx.beginPath();
    ctx.moveTo(0, H1 + 2.5);
    ctx.lineTo(W, H1 + 2.5);
    ctx.stroke();
    for (const side of SIDES) {
      const pts = f.cacheSize[side];
      if (!pts.length) continue;
      ctx.strokeStyle = side === "server" ? fg : muted;
      ctx.setLineDash(side === "server" ? [] : [4, 3]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let prev;
      for (let k = 0; k < pts.length; k += 2) {
        const x = X(pts[k]);
        if (prev === undefined) ctx.moveTo(x, YC(pts[k + 1]));
        else {
          ctx.lineTo(x, YC(prev));
          ctx.lineTo(x, YC(pts[k + 1]));
        }
        prev = pts[k + 1];
      }
      ctx.lineTo(W, YC(prev));
      ctx.stroke();
      ctx.setLineDash([]);
    }
    ctx.fillStyle = muted;
    ctx.textAlign = "left";
    ctx.font = "11px sans-serif";
    ctx.fillText("max " + f.maxCache, 3, H1 + 14);
    for (const s of ticks(n, W)) {
      this.xAxis.append(h("span", { class: "sk-xtick", style: `left:${((s + 0.5) / n) * 100}%`, text: String(s) }));
    }
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
    const move = (i) => this.goto(i, true);
    on(this.slider, "input", () => move(Number(this.slider.value)));
    on(this.prevBtn, "click", () => move(Math.max(0, this.index - 1)));
    on(this.nextBtn, "click", () => move(Math.min(this.fold.length - 1, this.index + 1)));
    on(this.root, "keydown", (e) => {
      if (inTextField(e.target) || e.altKey || e.ctrlKey || e.metaKey) return;
      if (e.target === this.slider) return; // the range input moves itself (and fires input)
      const last = this.fold.length - 1;
      const to = { ArrowLeft: this.index - 1, ArrowRight: this.index + 1, Home: 0, End: last, PageUp: this.index - 10, PageDown: this.index + 10 }[e.key];
      if (to === undefined || last < 0) return;
      e.preventDefault();
      move(Math.max(0, Math.min(last, to)));
    });
    on(this.list, "scroll", () => {
      this.listTop = this.list.scrollTop;
      this.drawList(false);
    }, { passive: true });
    on(this.list, "click", (e) => {
      const row = e.target.closest("[data-role=step-item]");
      if (row) move(Number(row.getAttribute("data-index")));
    });
    const pick = (e) => {
      const w = this.plot.clientWidth || 1;
      const n = this.fold.length;
      if (n) move(Math.max(0, Math.min(n - 1, Math.floor((e.offsetX / w) * n))));
    };
    on(this.canvas, "pointerdown", (e) => {
      pick(e);
      this.dragging = true;
      if (this.canvas.setPointerCapture) this.canvas.setPointerCapture(e.pointerId);
    });
    on(this.canvas, "pointermove", (e) => this.dragging && pick(e));
    on(this.canvas, "pointerup", () => (this.dragging = false));
    on(this.freedBtn, "click", () => {
      this.showFreed = !this.showFreed;
      const i = this.index;
      this.index = -2;
      this.goto(i, false);
    });
    const select = (e) => {
      const t = e.target.closest("[data-select]");
      if (!t || !this.root.contains(t)) return;
      const key = t.getAttribute("data-select");
      this.setSelected(key);
      this.model.set("selected", key);
      this.model.save_changes();
    };
    on(this.heap, "click", select);
    on(this.heap, "keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        if (e.target.closest("[data-select]")) {
          e.preventDefault();
          select(e);
        }
      }
    });
    if (this.copyBtn) on(this.copyBtn, "click", () => this.copyLink());
    if (this.hashKey) {
      on(window, "hashchange", () => {
        const s = parseHash(location.hash, this.hashKey);
        if (s !== null) this.goto(s, false);
      });
    }
    onModel("change:trace", () => this.load(this.model.get("trace")));
    onModel("change:step", () => {
      const s = clampStep(this.model.get("step"), this.fold.length);
      if (s !== this.index) this.goto(s, false);
    });
    onModel("change:selected", () => this.setSelected(this.model.get("selected") || ""));
    onModel("msg:custom", (msg) => this.onMessage(msg));
    if (typeof ResizeObserver === "function") {
      const ro = new ResizeObserver((entries) => {
        for (const en of entries) {
          const w = Math.floor(en.contentRect.width);
          if (en.target === this.plot && w > 0 && w !== this.width) {
            this.width = w;
            this.drawTimeline();
          } else if (en.target === this.heap && w > 0) {
            const c = layoutColumns(w);
            this.root.style.setProperty("--sk-chip-w", c.chip + "px");
            this.root.style.setProperty("--sk-box-w", c.box + "px");
          }
        }
      });
      ro.observe(this.plot);
      ro.observe(this.heap);
      this.cleanups.push(() => ro.disconnect());
    }
    if (typeof matchMedia === "function") {
      const mq = matchMedia("(prefers-color-scheme: dark)");
      on(mq, "change", () => this.drawTimeline());
    }
  }

  setSelected(key) {
    if (key === this.selected) return;
    this.selected = key;
    for (const e of this.root.querySelectorAll(".is-selected")) e.classList.remove("is-selected");
    if (!key) return;
    for (const e of this.root.querySelectorAll("[data-select]")) {
      if (e.getAttribute("data-select") === key) e.classList.add("is-selected");
    }
  }

  onMessage(msg) {
    if (!msg || typeof msg !== "object") return;
    const n = this.fold.length;
    if (msg.type === "append" && Array.isArray(msg.steps) && msg.steps.length) {
      const atEnd = this.index === n - 1;
      this.fold.append(msg.steps);
      this.afterLength();
      const follow = this.model.get("follow");
      if ((follow === undefined || follow === null || follow) && atEnd) this.goto(this.fold.length - 1, false);
      else this.drawList(false);
      this.drawHead(this.cursor.state, this.fold.steps[this.index], this.fold.length);
    } else if (msg.type === "truncate" && Number.isInteger(msg.length) && msg.length < n) {
      const keep = this.fold.steps.slice(0, Math.max(0, msg.length));
      const i = this.index;
      this.fold = new TraceFold(keep);
      this.cursor = new Cursor(this.fold);
      for (const r of this.listRows.values()) r.remove();
      this.listRows.clear();
      this.index = -2;
      this.afterLength();
      this.goto(Math.min(i, keep.length - 1), false);
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
      this.copyField.hidden = false;
      this.copyField.value = url;
      this.copyField.focus();
      this.copyField.select();
      done("select + copy");
    };
    if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(url).then(() => done("copied"), fallback);
    else fallback();
  }

  destroy() {
    for (const c of this.cleanups.splice(0)) c();
    clearTimeout(this.copyTimer);
    this.root.remove();
  }
}

const ROW_LIST = 24; // step list row height, px
const LIST_ROWS = 14; // rows visible in the step list

// ---------------------------------------------------------------- entry points

function render({ model, el }) {
  const v = new Viewer(model, el);
  return () => v.destroy();
}

/** A model with anywidget's interface over a plain Map, for pages without Jupyter (send is a no-op). */
export function makeModel(values) {
  const data = new Map(Object.entries(values));
  const handlers = new Map();
  const fire = (name, ...args) => {
    for (const fn of [...(handlers.get(name) || [])]) fn(...args);
  };
  return {
    get: (name) => data.get(name),
    set(name, value) {
      if (data.get(name) === value) return;
      data.set(name, value);
      fire("change:" + name, value);
    },
    save_changes() {},
    send() {},
    on(name, fn) {
      for (const n of String(name).split(" ")) {
        if (!handlers.has(n)) handlers.set(n, new Set());
        handlers.get(n).add(fn);
      }
    },
    off(name, fn) {
      if (!name) handlers.clear();
      else if (!fn) handlers.delete(name);
      else if (handlers.has(name)) handlers.get(name).delete(fn);
    },
    _emit: fire, // lets a page (or a test) deliver "msg:custom" as the kernel would
  };
}

/** Draw `trace` into `el` on a page without Jupyter; returns the cleanup. */
export function mountStatic(el, trace, options = {}) {
  const model = makeModel({ trace, step: -1, selected: "", follow: true, hash_key: options.hashKey || null });
  const cleanup = render({ model, el });
  const root = el.querySelector(".sesskit-viewer");
  if (root) {
    root.classList.add("sesskit-static");
    if (options.title) root.setAttribute("aria-label", "sesskit trace viewer: " + options.title);
  }
  return cleanup;
}

export default { render };
