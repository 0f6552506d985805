// sesskit "Try it": Python (Pyodide) in a Web Worker, running sesskit's model engine and its Stepper core.
// The page (tryit.js) starts this module worker and posts {type: "start", pyodide, code, trace, keep,
// extra}, then the bar's op messages.  Everything is fetched from the site: Pyodide's runtime from
// `pyodide` (the site's _static/vendor/pyodide/), sesskit's pure-Python files as one zip from `code` (built from
// the checkout at docs build time).  Posts back {type: "progress", stage}, {type: "ready", seconds},
// {type: "failed", message} and the core's own messages: append, truncate, show, ui.
//
// Warm start: Python's own start-up (about 1.5-2 s of CPU even with every file in the browser's cache) is
// done once.  The first start imports sesskit, then saves Pyodide's memory image (about 30 MB) in this
// site's Cache Storage, keyed by the SHA-256 of sesskit's zip; later starts with the same code restore it
// (Pyodide refuses an image from another build, and then we start normally and replace it).

let t0 = 0;
const post = (m) => self.postMessage(m.type === "progress" ? { ...m, at: (performance.now() - t0) / 1000 } : m);
let session = null;
let chain = Promise.resolve();

// What the saved memory image holds: sesskit's modules imported (no JavaScript object referenced).
const IMPORTS = `
import sys
sys.path.insert(0, "/sesskit-site")
import sesskit, sesskit.stepcore, sesskit.engines.base
`;

const BOOT = `
import json, sys
from sesskit import Lab
from sesskit.stepcore import StepperCore
from sesskit.engines.base import LabConfig
from dataclasses import fields

SETTINGS = tuple(f.name for f in fields(LabConfig))  # every setting the trace's meta records


class Session:
    """One page's lab: the page's trace replayed on the model, then the bar's clicks."""

    def __init__(self, post, trace_json, keep, extra_json):
        trace = json.loads(trace_json)
        config = trace.get("meta", {}).get("config", {})
        lab = Lab(engine="model", **{k: config[k] for k in SETTINGS if k in config})
        self.core = StepperCore(lab, lambda m: post(json.dumps(m)), publish=False)
        steps = list(trace["steps"][:keep])
        for op in json.loads(extra_json):  # a link's operations: [op, target] or [op, target, kind, message]
            error = {"kind": op[2], "message": op[3]} if len(op) > 2 else None
            steps.append({"op": op[0], "target": op[1], "error": error})
        self.core.replay(steps, checked=keep)

    def handle(self, text):
        self.core.handle(json.loads(text))


Session
`;

const IMAGES = "sesskit-tryit-python";  // the Cache Storage holding the memory image

async function imageCache() {
  try {
    return self.caches ? await self.caches.open(IMAGES) : null;  // none outside a secure context
  } catch {
    return null;  // storage blocked (private mode, a policy): start as on a first visit
  }
}

async function start(m) {
  t0 = performance.now();
  const opts = { indexURL: m.pyodide, stdout: () => {}, stderr: () => {} };
  const [{ loadPyodide }, code, cache] = await Promise.all([
    import(m.pyodide + "pyodide.mjs"),
    fetch(m.code).then((r) => {
      if (!r.ok) throw new Error(`${m.code}: HTTP ${r.status}`);
      return r.arrayBuffer();
    }),
    imageCache(),
  ]);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", code));
  const hex = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  const key = new URL(`sesskit-python-${hex}`, m.pyodide).href;
  const saved = cache && (await cache.match(key));
  let py = null, image = null;
  if (saved) {
    post({ type: "progress", stage: "starting Python from this browser's saved copy" });
    try {
      py = await loadPyodide({ ...opts, _loadSnapshot: saved.arrayBuffer() });
      py.unpackArchive(code, "zip", { extractDir: "/sesskit-site" });  // files a later import may read
    } catch {
      py = null;  // an image of another Pyodide build: start afresh, and save a new one
      await cache.delete(key);
    }
  }
  if (!py) {
    post({ type: "progress", stage: "downloading and starting Python (Pyodide, about 13 MB the first time)" });
    py = await loadPyodide({ ...opts, _makeSnapshot: cache !== null });
    post({ type: "progress", stage: "loading sesskit's model of OpenSSL" });
    py.unpackArchive(code, "zip", { extractDir: "/sesskit-site" });
    py.runPython(IMPORTS);
    if (cache) image = py.makeMemorySnapshot();
  }
  const Session = py.runPython(BOOT);
  post({ type: "progress", stage: `replaying the page's ${m.keep} steps on the model` });
  session = Session((s) => post(JSON.parse(s)), JSON.stringify(m.trace), m.keep, JSON.stringify(m.extra || []));
  post({ type: "ready", seconds: (performance.now() - t0) / 1000, saved: Boolean(saved && !image) });
  if (image) saveImage(cache, key, image);  // not awaited: the bar works while it is written
}

async function saveImage(cache, key, image) {
  try {
    for (const old of await cache.keys()) if (old.url !== key) await cache.delete(old);  // other code's images
    await cache.put(key, new Response(image, { headers: { "content-type": "application/octet-stream" } }));
  } catch {
    // a full or blocked storage: the next start is a first start again, nothing else changes
  }
}

function failure(err) {
  // A Python exception's message is its traceback: its last line says what went wrong.
  const text = String((err && err.message) || err).trim();
  const lines = text.split("\n").filter((l) => l.trim());
  return lines[lines.length - 1] || text;
}

self.onmessage = (e) => {
  const m = e.data || {};
  chain = chain.then(async () => {
    if (m.type === "start") await start(m);
    else if (m.type === "op" && session) session.handle(JSON.stringify(m));
  }).catch((err) => {
    post({ type: "failed", message: failure(err), started: session !== null });
  });
};
