// Unit tests of the viewer's pure functions: `node --test tests/js` (Node 20, no packages, no DOM).
// Real traces come from the Python side, made on the fly with the repository's venv
// (`.venv/bin/python -m sesskit render tour --engine model --out X.json`, and a Lab script below).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

import {
  applyDelta,
  applyEdit,
  bucketSeries,
  clampStep,
  Cursor,
  emptyState,
  heapLanes,
  hueOf,
  layoutColumns,
  laneSignature,
  makeModel,
  parseHash,
  stripTitle,
  summarize,
  ticks,
  TraceFold,
  undoDelta,
  updateHash,
  valueAt,
  ROW,
} from "../../sesskit/viewer/viewer.js";

/** The state after step `upto` (default: the last) folded from scratch: what the viewer must agree with. */
function foldTrace(trace, upto) {
  const steps = trace.steps || [];
  const s = emptyState();
  for (let i = 0; i <= Math.min(upto ?? steps.length, steps.length - 1); i++) applyDelta(s, steps[i].changes);
  return s;
}

// the state after step i, from the checkpoint before it (a fresh Cursor's first move)
const stateAt = (fold, i) => new Cursor(fold).goto(i);

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PYTHON = join(ROOT, ".venv", "bin", "python");

// ---------------------------------------------------------------- helpers

/** A deterministic PRNG (mulberry32), so a failing random trace can be replayed. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const stats = () => ({ connect: 0, connect_good: 0, accept: 0, accept_good: 0, hits: 0, cb_hits: 0, misses: 0, timeouts: 0, cache_full: 0 });
const step0 = () => ({
  index: 0,
  op: "SSL_CTX_new",
  target: "client+server",
  why: "start",
  changes: {
    caches: {
      client: { side: "client", size: 0, members: [], stats: stats() },
      server: { side: "server", size: 0, members: [], stats: stats() },
    },
  },
});

/**
 * A random trace of `n` steps: sessions appear, change refcount, enter and leave caches (as whole
 * member lists or as edits), get freed; SSLs and refs come and go; the clock moves.
 */
function randomTrace(n, seed) {
  const r = rng(seed);
  const pick = (a) => a[Math.floor(r() * a.length)];
  const steps = [step0()];
  const members = { client: [], server: [] };
  const live = [];
  let nextS = 1;
  let nextRef = 1;
  let time = 0;
  for (let i = 1; i < n; i++) {
    const d = {};
    const k = r();
    if (k < 0.3 || !live.length) {
      const label = "S" + nextS++;
      const side = r() < 0.5 ? "server" : "client";
      live.push(label);
      d.sessions = { [label]: { label, side, refcount: 1 + Math.floor(r() * 3), resumable: r() < 0.8 } };
      d.ssls = { ["c" + i]: { name: "c" + i, side, session: label } };
      if (r() < 0.7) {
        const at = Math.floor(r() * (members[side].length + 1));
        const next = members[side].slice();
        next.splice(at, 0, label);
        d.sessions[label].cache = side;
        const asEdit = r() < 0.5;
        d.caches = {
          [side]: asEdit
            ? { side, size: next.length, edit: { removed: [], inserted: [[at, label]] }, stats: stats() }
            : { side, size: next.length, members: next, stats: stats() },
        };
        members[side] = next;
      }
    } else if (k < 0.55) {
      const label = pick(live);
      d.sessions = { [label]: { label, side: "server", refcount: Math.floor(r() * 5) + 1 } };
      d.refs = { [String(nextRef)]: { id: nextRef, kind: r() < 0.5 ? "get0" : "get1", session: label, via: "c1" } };
      nextRef++;
    } else if (k < 0.8) {
      // free a session: leave its cache via an edit (several removals and a reinsertion at times)
      const label = live.splice(Math.floor(r() * live.length), 1)[0];
      d.sessions = { [label]: { label, side: "client", refcount: 0, freed: true } };
      for (const side of ["client", "server"]) {
        if (!members[side].includes(label)) continue;
        const removed = [label];
        const next = members[side].filter((x) => x !== label);
        const inserted = [];
        if (next.length && r() < 0.4) {
          const moved = next.shift();
          removed.push(moved);
          const at = Math.floor(r() * (next.length + 1));
          next.splice(at, 0, moved);
          inserted.push([at, moved]);
        }
        d.caches = { ...(d.caches || {}), [side]: { side, size: next.length, edit: { removed, inserted }, stats: stats() } };
        members[side] = next;
      }
    } else if (k < 0.9) {
      time += 1 + Math.floor(r() * 100);
      d.time = time;
    } else {
      d.ssls = { ["c" + Math.floor(r() * i)]: { name: "cX", side: "client", freed: true } };
    }
    steps.push({ index: i, op: "op" + (i % 7), target: "t" + i, why: "why " + i, changes: d });
  }
  return { format: 1, meta: { engine: "test" }, steps };
}

/** Plain data for comparing states. */
function stateToPlain(s) {
  const obj = (m) => Object.fromEntries([...m.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
  const cache = (c) => c && { side: c.side, size: c.size, members: c.members.slice(), stats: c.stats };
  return { sessions: obj(s.sessions), ssls: obj(s.ssls), refs: obj(s.refs), caches: { client: cache(s.caches.client), server: cache(s.caches.server) }, time: s.time };
}

function python(args, opts = {}) {
  return execFileSync(PYTHON, args, { cwd: ROOT, encoding: "utf8", maxBuffer: 64 << 20, ...opts });
}

const havePython = existsSync(PYTHON);

// ---------------------------------------------------------------- folding

test("a cache delta with members replaces the list; an edit removes then inserts in order", () => {
  assert.deepEqual(applyEdit(["A", "B", "C", "D"], { removed: ["B", "D"], inserted: [[0, "D"], [2, "X"]] }), ["D", "A", "X", "C"]);
  const s = emptyState();
  applyDelta(s, step0().changes);
  applyDelta(s, { caches: { server: { side: "server", size: 3, members: ["S3", "S2", "S1"], stats: stats() } } });
  assert.deepEqual(s.caches.server.members, ["S3", "S2", "S1"]);
  applyDelta(s, { caches: { server: { side: "server", size: 3, edit: { removed: ["S1"], inserted: [[0, "S4"]] }, stats: stats() } } });
  assert.deepEqual(s.caches.server.members, ["S4", "S3", "S2"]);
  assert.equal(s.caches.server.size, 3);
  assert.deepEqual(s.caches.client.members, []);
});

test("later states win whole, freed sessions stay, absent keys read as false", () => {
  const trace = {
    steps: [
      step0(),
      { index: 1, op: "x", changes: { sessions: { S1: { label: "S1", side: "client", refcount: 2, cache: "client", resumable: true } } } },
      { index: 2, op: "x", changes: { sessions: { S1: { label: "S1", side: "client", refcount: 1 } }, time: 50 } },
      { index: 3, op: "x", changes: { sessions: { S1: { label: "S1", side: "client", refcount: 0, freed: true } } } },
    ],
  };
  const at2 = foldTrace(trace, 2);
  assert.equal(at2.sessions.get("S1").refcount, 1);
  assert.equal(at2.sessions.get("S1").cache, undefined, "a later state replaces the whole session");
  assert.equal(at2.time, 50);
  const last = foldTrace(trace);
  assert.equal(last.sessions.size, 1, "a freed session keeps its entry");
  assert.equal(last.sessions.get("S1").freed, true);
  assert.equal(last.time, 50, "time holds until a step changes it");
  assert.equal(foldTrace(trace, 0).sessions.size, 0);
});

test("undoDelta exactly reverts applyDelta", () => {
  const t = randomTrace(300, 7);
  const s = emptyState();
  const before = [];
  const undos = [];
  for (const st of t.steps) {
    before.push(JSON.stringify(stateToPlain(s)));
    undos.push(applyDelta(s, st.changes));
  }
  for (let i = t.steps.length - 1; i >= 0; i--) {
    undoDelta(s, undos[i]);
    assert.equal(JSON.stringify(stateToPlain(s)), before[i], `undo of step ${i}`);
  }
});

for (const seed of [1, 2, 3]) {
  test(`random trace ${seed}: the state at every step, reached by any path, equals a fold from scratch`, () => {
    const t = randomTrace(700, seed);
    const scratch = [];
    const s = emptyState();
    for (const st of t.steps) {
      applyDelta(s, st.changes);
      scratch.push(JSON.stringify(stateToPlain(s)));
    }
    // the random trace really exercises edits with several removals and re-insertions
    assert.ok(t.steps.some((st) => st.changes.caches && Object.values(st.changes.caches).some((c) => c.edit && c.edit.removed.length > 1)));
    const fold = new TraceFold(t.steps.slice(0, 400));
    fold.append(t.steps.slice(400)); // appended in two parts, as the live Stepper does
    assert.equal(fold.length, t.steps.length);
    for (const i of [0, 1, 63, 64, 65, 399, 400, 401, 699]) {
      assert.equal(JSON.stringify(stateToPlain(stateAt(fold, i))), scratch[i], `a fresh cursor at ${i}`);
    }
    const cursor = new Cursor(fold);
    const r = rng(seed * 101);
    let i = 0;
    for (let k = 0; k < 400; k++) {
      // mostly small moves (scrubbing), sometimes a jump (a click on the timeline)
      const jump = r() < 0.15;
      i = jump ? Math.floor(r() * t.steps.length) : Math.max(0, Math.min(t.steps.length - 1, i + Math.floor(r() * 9) - 4));
      const got = cursor.goto(i);
      assert.equal(cursor.index, i);
      assert.equal(JSON.stringify(stateToPlain(got)), scratch[i], `cursor at ${i} (move ${k})`);
    }
  });
}

test("step clamping: -1, out of range and junk mean the last step", () => {
  assert.equal(clampStep(-1, 16), 15);
  assert.equal(clampStep(16, 16), 15);
  assert.equal(clampStep(99, 16), 15);
  assert.equal(clampStep(-5, 16), 15);
  assert.equal(clampStep(null, 16), 15);
  assert.equal(clampStep(2.5, 16), 15);
  assert.equal(clampStep(0, 16), 0);
  assert.equal(clampStep(7, 16), 7);
  assert.equal(clampStep("3", 16), 3);
  assert.equal(clampStep(-1, 0), -1, "an empty trace has no step to show");
});

// ---------------------------------------------------------------- layout

function crowdedState(nSessions) {
  const s = emptyState();
  const server = [];
  for (let k = 1; k <= nSessions; k++) {
    const label = "S" + k;
    const freed = k % 7 === 0;
    s.sessions.set(label, { label, side: k % 2 ? "server" : "client", refcount: freed ? 0 : 1 + (k % 4), freed, cache: !freed && k % 2 ? "server" : undefined });
    if (!freed && k % 2) server.push(label);
    if (k % 3 === 0) s.ssls.set("c" + k, { name: "c" + k, side: "client", session: label });
    if (k % 5 === 0) s.refs.set(String(k), { id: k, kind: k % 10 ? "get1" : "get0", session: label, via: "c" + k });
  }
  s.ssls.set("lonely", { name: "lonely", side: "client", cleared: true });
  s.caches.server = { side: "server", size: server.length, members: server, stats: stats() };
  s.caches.client = { side: "client", size: 0, members: [], stats: stats() };
  return s;
}

test("heap lanes for 500 sessions never overlap: y strictly increasing, each lane tall enough for its rows", () => {
  const s = crowdedState(500);
  const { lanes, hiddenFreed, height } = heapLanes(s);
  const live = [...s.sessions.values()].filter((x) => !x.freed).map((x) => x.label);
  const laneLabels = new Set(lanes.filter((l) => l.session).map((l) => l.label));
  for (const label of live) assert.ok(laneLabels.has(label), `live ${label} has a lane`);
  for (let k = 1; k < lanes.length; k++) {
    assert.ok(lanes[k].y > lanes[k - 1].y, `lane ${k} below lane ${k - 1}`);
    assert.ok(lanes[k].y >= lanes[k - 1].y + lanes[k - 1].h, `lane ${k} starts after lane ${k - 1} ends`);
  }
  for (const l of lanes) assert.ok(l.h >= Math.max(1, l.holders.length) * ROW, `${l.key} fits its ${l.holders.length} holders`);
  const last = lanes[lanes.length - 1];
  assert.equal(height, last.y + last.h);
  // freed sessions nothing points to are collapsed, the ones still pointed at are drawn
  for (const label of hiddenFreed) assert.ok(s.sessions.get(label).freed);
  const pointed = [...s.refs.values()].map((r) => r.session).filter((l) => s.sessions.get(l).freed);
  for (const label of pointed) assert.ok(laneLabels.has(label), `freed ${label} still pointed at keeps its lane`);
  assert.ok(lanes.some((l) => l.key === "n:lonely"), "an SSL without a session has its own lane");
});

test("holders: SSLs, caches and user pointers, with dashed get0 and red dangling pointers", () => {
  const s = emptyState();
  s.sessions.set("S1", { label: "S1", side: "server", refcount: 3, cache: "server" });
  s.sessions.set("S2", { label: "S2", side: "server", refcount: 0, freed: true });
  s.ssls.set("s1", { name: "s1", side: "server", session: "S1" });
  s.refs.set("1", { id: 1, kind: "get0", session: "S1", via: "s1" });
  s.refs.set("2", { id: 2, kind: "get1", session: "S1", via: "s1" });
  s.refs.set("3", { id: 3, kind: "get0", session: "S2", via: "s1", dangling: true });
  s.refs.set("4", { id: 4, kind: "get1", session: "S2", via: "s1", released: true, dangling: true });
  s.caches.server = { side: "server", size: 1, members: ["S1"], stats: stats() };
  const { lanes } = heapLanes(s);
  const s1 = lanes.find((l) => l.label === "S1");
  assert.deepEqual(s1.holders.map((x) => x.key), ["ssl:s1", "cache:server", "ref:1", "ref:2"]);
  assert.equal(s1.holders.find((x) => x.key === "ref:1").line, "dashed");
  assert.equal(s1.holders.find((x) => x.key === "ref:2").line, "solid");
  const s2 = lanes.find((l) => l.label === "S2");
  assert.deepEqual(s2.holders.map((x) => [x.key, x.danger]), [["ref:3", true]], "a released pointer holds nothing once freed");
  // the signature changes when what a lane shows changes, so the renderer redraws it
  const before = laneSignature(s1);
  s.sessions.set("S1", { label: "S1", side: "server", refcount: 2, cache: "server" });
  assert.notEqual(laneSignature(heapLanes(s).lanes.find((l) => l.label === "S1")), before);
});

test("lane columns never overflow the panel (375 px phone and wider)", () => {
  for (const w of [240, 300, 343, 375, 480, 700, 1024]) {
    const c = layoutColumns(w);
    assert.ok(c.total <= w, `width ${w}: ${c.total}`);
    assert.ok(c.arrow >= 24, `width ${w}: an arrow of ${c.arrow} px stays visible`);
    assert.ok(c.chip >= 88, `width ${w}: chip ${c.chip}`);
  }
});

test("session hues are stable per label and avoid the reds kept for danger", () => {
  assert.equal(hueOf("S12"), hueOf("S12"));
  const hues = new Set();
  for (let k = 1; k <= 200; k++) {
    const hue = hueOf("S" + k);
    assert.ok(hue >= 30 && hue <= 330, `S${k}: ${hue}`);
    hues.add(hue);
  }
  for (let k = 1; k < 200; k++) {
    assert.ok(Math.abs(hueOf("S" + k) - hueOf("S" + (k + 1))) >= 40, `S${k} and S${k + 1} look different`);
  }
  assert.ok(hues.size > 100);
});

// ---------------------------------------------------------------- timeline

test("downsampling keeps the first, min, max and last point of every pixel bucket", () => {
  const r = rng(5);
  const n = 10000;
  const pts = [];
  let v = 1;
  for (let s = 0; s < n; s += 1 + Math.floor(r() * 6)) {
    v = Math.max(0, v + Math.floor(r() * 5) - 2);
    pts.push(s, v);
  }
  for (const width of [37, 300, 1000]) {
    const bk = bucketSeries(pts, n, width);
    const brute = new Map();
    for (let j = 0; j < pts.length; j += 2) {
      const px = Math.floor((pts[j] * width) / n);
      const b = brute.get(px) || { first: pts[j + 1], min: Infinity, max: -Infinity };
      b.min = Math.min(b.min, pts[j + 1]);
      b.max = Math.max(b.max, pts[j + 1]);
      b.last = pts[j + 1];
      brute.set(px, b);
    }
    assert.equal(bk.length / 5, brute.size, `width ${width}: one bucket per pixel that has points`);
    assert.ok(bk.length / 5 <= width);
    for (let k = 0; k < bk.length; k += 5) {
      const b = brute.get(bk[k]);
      assert.deepEqual([bk[k + 1], bk[k + 2], bk[k + 3], bk[k + 4]], [b.first, b.min, b.max, b.last], `px ${bk[k]}`);
    }
  }
  // a window [a, b) only sees its own points
  const win = bucketSeries([0, 1, 5, 2, 9, 3], 10, 10, 4, 9);
  assert.deepEqual(win, [5, 2, 2, 2, 2]);
  assert.equal(valueAt([0, 1, 5, 2, 9, 3], 7), 2);
  assert.equal(valueAt([3, 1], 2), undefined);
});

test("the fold gathers per-session refcount series, cache intervals and frees for the timeline", () => {
  const t = randomTrace(500, 11);
  const fold = new TraceFold(t.steps);
  for (const [label, ser] of fold.series) {
    for (const s of [0, 50, 123, 250, 499]) {
      const st = stateAt(fold, s).sessions.get(label);
      const want = st === undefined ? undefined : st.freed ? 0 : st.refcount;
      assert.equal(valueAt(ser.pts, s), want, `${label} at ${s}`);
      // inside a cache interval exactly when the session says it is cached
      const iv = ser.open >= 0 ? ser.cache.concat([ser.open, fold.length]) : ser.cache;
      let inside = false;
      for (let k = 0; k < iv.length; k += 2) if (s >= iv[k] && s < iv[k + 1]) inside = true;
      assert.equal(inside, !!(st && st.cache && !st.freed), `${label} cached at ${s}`);
    }
  }
  const freed = [...fold.tail.sessions.values()].filter((x) => x.freed).length;
  assert.equal(fold.frees.length / 2, freed);
  assert.ok(fold.maxRef >= 1);
});

test("axis ticks are 1-2-5 spaced, start at 0 and stay within the steps", () => {
  assert.deepEqual(ticks(16, 1200), [...Array(16).keys()]);
  assert.deepEqual(ticks(16, 500), [0, 5, 10, 15], "about one label per 70 px");
  const t = ticks(10000, 700);
  assert.equal(t[0], 0);
  assert.ok(t.length <= 11 && t.length >= 2);
  assert.ok([1, 2, 5].includes(t[1] / 10 ** Math.floor(Math.log10(t[1]))));
  assert.ok(t[t.length - 1] < 10000);
  assert.deepEqual(ticks(0, 500), []);
});

// ---------------------------------------------------------------- URL fragment, model shim

test("hash fragment: read own key, update it, keep the other viewers' keys", () => {
  assert.equal(parseHash("#step=5", "step"), 5);
  assert.equal(parseHash("#step2=9&step=5", "step2"), 9);
  assert.equal(parseHash("#step=abc", "step"), null);
  assert.equal(parseHash("", "step"), null);
  assert.equal(parseHash("#other=1", "step"), null);
  assert.equal(updateHash("#step=5&step2=9&x=a%20b", "step", 7), "#step=7&step2=9&x=a+b");
  const h = updateHash("#step=5&step2=9&x=a%20b", "step2", 3);
  assert.equal(parseHash(h, "step"), 5);
  assert.equal(parseHash(h, "step2"), 3);
  assert.equal(new URLSearchParams(h.slice(1)).get("x"), "a b");
  assert.equal(updateHash("", "step", 0), "#step=0");
});

test("the static model shim: get/set/on/off/save_changes/send like anywidget's", () => {
  const m = makeModel({ step: -1, selected: "" });
  const seen = [];
  const cb = (v) => seen.push(v);
  m.on("change:step", cb);
  m.set("step", 3);
  m.set("step", 3); // no change, no event
  m.save_changes();
  m.send({ any: 1 });
  assert.equal(m.get("step"), 3);
  assert.deepEqual(seen, [3]);
  m.off("change:step", cb);
  m.set("step", 4);
  assert.deepEqual(seen, [3]);
  const msgs = [];
  m.on("msg:custom", (msg) => msgs.push(msg.type));
  m._emit("msg:custom", { type: "append", steps: [] });
  assert.deepEqual(msgs, ["append"]);
});

test("the screen-reader summary names the step, the sessions and their refcounts", () => {
  const s = crowdedState(40);
  const text = summarize(s, { index: 5, op: "SSL_free", target: "c1" }, 9);
  assert.match(text, /^step 5 of 9: SSL_free c1\./);
  assert.match(text, /S1 refcount 2 in server cache/);
  assert.match(text, /, …/, "long lists are cut");
  assert.match(text, /Dangling pointers/);
});

// ---------------------------------------------------------------- real traces from the Python side

test("the tour (rendered by sesskit) folds to the states its whys describe", { skip: !havePython && "no .venv" }, () => {
  const out = join(mkdtempSync(join(tmpdir(), "sesskit-js-")), "tour.json");
  python(["-m", "sesskit", "render", "tour", "--engine", "model", "--out", out]);
  const trace = JSON.parse(readFileSync(out, "utf8"));
  assert.equal(trace.steps[0].op, "SSL_CTX_new");
  const fold = new TraceFold(trace.steps);
  // every "Refcounts: S1 1 → 2" in a why is the folded refcount at that step
  let checked = 0;
  for (const st of trace.steps) {
    const m = /Refcounts: (.*)$/.exec(st.why);
    if (!m) continue;
    const state = stateAt(fold, st.index);
    for (const part of m[1].split(/, (?=S\d)/)) {
      const mm = /^(S\d+)(?: new at (\d+)| \d+ → (\d+))/.exec(part);
      if (!mm) continue;
      const s = state.sessions.get(mm[1]);
      assert.equal(s.freed ? 0 : s.refcount, Number(mm[2] ?? mm[3]), `step ${st.index}: ${part}`);
      checked++;
    }
  }
  assert.ok(checked >= 5, `checked ${checked} refcounts`);
  const last = stateAt(fold, trace.steps.length - 1);
  const { lanes } = heapLanes(last);
  assert.ok(lanes.some((l) => l.holders.some((x) => x.danger)), "the tour ends with a dangling pointer");
});

test("the client strip says 'not caching' exactly when the client SSL_CTX keeps the default mode", { skip: !havePython && "no .venv" }, () => {
  const script = `
import json
from sesskit import Lab
out = {}
for on in (False, True):
    lab = Lab(engine="model", tls="1.2", tickets=False, client_cache=on)
    lab.connect()
    out[str(on)] = lab.trace.to_dict()
    lab.close()
print(json.dumps(out))
`;
  for (const [on, trace] of Object.entries(JSON.parse(python(["-c", script])))) {
    const s = new Cursor(new TraceFold(trace.steps)).goto(trace.steps.length - 1);
    const client = stripTitle("client", s.caches.client, trace.meta.config);
    assert.equal(s.caches.client.members.length, on === "True" ? 1 : 0, `client_cache=${on}: what the client cached`);
    if (on === "True") assert.doesNotMatch(client, /not caching/);
    else assert.match(client, /^client cache · not caching: mode SSL_SESS_CACHE_SERVER \(client caching not enabled\) · 0 sessions/);
    assert.doesNotMatch(stripTitle("server", s.caches.server, trace.meta.config), /not caching/);
  }
  assert.doesNotMatch(stripTitle("client", { size: 0 }, undefined), /not caching/, "a trace without a config claims nothing");
});

test("a Lab trace with a big cache (stored as edits) folds exactly like Python's snapshots", { skip: !havePython && "no .venv" }, () => {
  const script = `
import json, random
from sesskit import Lab
random.seed(4)
lab = Lab(engine="model", tls="1.2", tickets=False, cache_size=40)
eps, refs = [], []
for k in range(260):
    r = random.random()
    try:
        if r < 0.35 or len(eps) < 2:
            link = lab.connect(); eps += [link.client, link.server]
        elif r < 0.5:
            ref = random.choice(eps).get1_session()
            if ref is not None: refs.append(ref)
        elif r < 0.55:
            random.choice(eps).get0_session()
        elif r < 0.8:
            eps.pop(random.randrange(len(eps))).free()
        elif r < 0.92 and refs:
            refs.pop(random.randrange(len(refs))).free()
        else:
            lab.advance(random.randint(100, 4000))
            if random.random() < 0.5: lab.flush("server")
    except Exception:
        pass
t = lab.trace
snaps = []
for i in range(len(t)):
    s = t.snapshot(i)
    snaps.append({"time": s.time,
        "sessions": {k: [v.refcount, v.cache, v.freed] for k, v in s.sessions.items()},
        "caches": {k: list(c.members) for k, c in s.caches.items()},
        "refs": {str(k): [v.dangling, v.released] for k, v in s.refs.items()}})
print(json.dumps({"trace": t.to_dict(), "snaps": snaps}))
`;
  const { trace, snaps } = JSON.parse(python(["-c", script]));
  const edits = trace.steps.filter((st) => st.changes.caches && Object.values(st.changes.caches).some((c) => c.edit));
  assert.ok(edits.length > 10, `the trace stores cache edits (${edits.length})`);
  const fold = new TraceFold(trace.steps);
  const cursor = new Cursor(fold);
  const order = [...snaps.keys()];
  order.push(...[...snaps.keys()].reverse()); // forwards, then backwards through the undo records
  for (const i of order) {
    const s = cursor.goto(i);
    const want = snaps[i];
    const got = {
      time: s.time,
      sessions: Object.fromEntries([...s.sessions].map(([k, v]) => [k, [v.refcount, v.cache ?? null, !!v.freed]])),
      caches: { client: s.caches.client.members, server: s.caches.server.members },
      refs: Object.fromEntries([...s.refs].map(([k, v]) => [k, [!!v.dangling, !!v.released]])),
    };
    assert.deepEqual(got, want, `step ${i}`);
  }
});

test("freed sessions: shown the step they are freed, then collapsed unless pointed at or asked for", () => {
  const s = emptyState();
  s.sessions.set("S1", { label: "S1", side: "client", refcount: 0, freed: true });
  s.sessions.set("S2", { label: "S2", side: "server", refcount: 0, freed: true });
  s.sessions.set("S3", { label: "S3", side: "server", refcount: 1, cache: "server" });
  s.ssls.set("c9", { name: "c9", side: "client", cleared: true });
  const keys = (opts) => heapLanes(s, opts).lanes.map((l) => l.key);
  assert.deepEqual(keys({}), ["n:c9", "s:S3"]);
  assert.deepEqual(heapLanes(s, {}).hiddenFreed, ["S1", "S2"]);
  assert.deepEqual(keys({ justFreed: new Set(["S2"]) }), ["n:c9", "s:S2", "s:S3"]);
  assert.deepEqual(keys({ showFreed: true }), ["n:c9", "s:S1", "s:S2", "s:S3"]);
  const loose = heapLanes(s, {}).lanes[0];
  assert.equal(loose.session, undefined);
  assert.match(loose.holders[0].text, /cleared/);
});

test("the fold marks the steps where a pointer starts dangling and the refused steps", () => {
  const t = randomTrace(300, 21);
  // a refused step changes nothing and carries an error
  t.steps.splice(5, 0, { index: 5, op: "SSL_SESSION_free", target: "S1", why: "no", error: { kind: "InvalidOperation", message: "twice" }, changes: {} });
  t.steps[40].changes.refs = { 77: { id: 77, kind: "get0", session: "S1", via: "c1" } };
  t.steps[41].changes.refs = { 77: { id: 77, kind: "get0", session: "S1", via: "c1", dangling: true } };
  t.steps[60].changes.refs = { 77: { id: 77, kind: "get0", session: "S1", via: "c1", dangling: true } };
  const fold = new TraceFold(t.steps);
  assert.deepEqual(fold.errors, [5]);
  assert.ok(fold.dangles.includes(41), "the step a pointer turned dangling");
  assert.ok(!fold.dangles.includes(60), "a pointer already dangling is not marked again");
  assert.equal(JSON.stringify(stateToPlain(stateAt(fold, 5))), JSON.stringify(stateToPlain(stateAt(fold, 4))), "a refused step changes nothing");
});

test("the module imports nothing and touches no DOM when imported (anywidget loads it from a blob)", () => {
  const src = readFileSync(join(ROOT, "sesskit", "viewer", "viewer.js"), "utf8");
  assert.doesNotMatch(src, /^\s*import\s/m);
  assert.doesNotMatch(src, /\bimport\s*\(/);
  assert.equal(typeof globalThis.document, "undefined", "this test runs without a DOM");
});
