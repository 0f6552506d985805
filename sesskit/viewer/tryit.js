// sesskit "Try it", the page side: turns a static viewer into a Stepper driven by the model engine running
// as Python (Pyodide) in a Web Worker.  Loaded by the Try it control's small inline script on its first
// click (the page stays light until then); every file comes from the site: this module, the worker
// (tryit_worker.js), Pyodide's runtime (../vendor/pyodide/) and sesskit's Python files (sesskit-py.zip).
//
// The viewer is the page's own module (viewer.js, imported once per page by the static loader): the
// Stepper's bar is its OpBar, drawn for a model with a `ui` dict; its op messages go to the worker, and the
// worker's messages become model.set("ui"/"trace") and "msg:custom" (append, truncate), as a kernel's would.
//
// The state travels in the address: `#<key>=N` (the step shown, the viewer's own key) and
// `#<key>.ops=K~OPS`, the first K steps of the page's trace followed by OPS (base64url JSON of
// [op, target] or [op, target, kind, message] for a refused step).  Opening such a link starts Try it and
// replays the same operations.  Text from traces is only ever inserted as text.

const ENGINE = "model of OpenSSL 3.0, held to libssl 3.0 by the test suite";

const b64 = (text) => {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};
const unb64 = (text) => {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
};
const hashParams = () => new URLSearchParams(location.hash.replace(/^#/, ""));
const setHash = (p) => history.replaceState(history.state, "", location.href.split("#")[0] + (p.toString() ? "#" + p : ""));

/** The steps of the page's trace kept (K) and the operations after them, as a link carries them. */
export function encodeOps(pageSteps, steps) {
  let keep = 0;
  const same = (a, b) => a && b && a.op === b.op && a.target === b.target && !a.error === !b.error;
  while (keep < pageSteps.length && keep < steps.length && same(pageSteps[keep], steps[keep])) keep++;
  const extra = steps.slice(keep).map((s) => (s.error ? [s.op, s.target, s.error.kind, s.error.message] : [s.op, s.target]));
  if (keep === pageSteps.length && keep === steps.length) return null;
  return `${keep}~${b64(JSON.stringify(extra))}`;
}

export function decodeOps(value, pageLength) {
  const m = /^(\d+)~([A-Za-z0-9_-]*)$/.exec(value || "");
  if (!m) return null;
  const keep = Math.max(1, Math.min(Number(m[1]), pageLength));
  const extra = m[2] ? JSON.parse(unb64(m[2])) : [];
  if (!Array.isArray(extra) || !extra.every((x) => Array.isArray(x) && x.every((y) => typeof y === "string"))) return null;
  return { keep, extra };
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text) e.textContent = text;
  return e;
}

async function mounted(mount) {
  for (let i = 0; i < 200 && !mount.sesskitUnmount; i++) await new Promise((r) => setTimeout(r, 25));
}

/** Start Try it for the control `c` (a .sesskit-tryit element, data-for = its viewer's hash key). */
export async function start(c) {
  const key = c.dataset.for || "step";
  const opsKey = key + ".ops";
  const mount = document.querySelector(`.sesskit-static-mount[data-hash-key="${CSS.escape(key)}"]`);
  const status = c.querySelector(".sesskit-tryit-status");
  const button = c.querySelector(".sesskit-tryit-btn");
  const say = (text, cls = "") => {
    status.textContent = text;
    status.className = "sesskit-tryit-status " + cls;
  };
  if (!mount) return say("Try it: no viewer on this page to drive.", "is-error");
  const viewer = await window.__sesskitViewer;
  await mounted(mount);
  const pageTrace = JSON.parse(mount.querySelector("script[type='application/json']").textContent);
  const pageSteps = pageTrace.steps || [];
  const asked = decodeOps(hashParams().get(opsKey), pageSteps.length);
  const keep = asked ? asked.keep : pageSteps.length;
  const extra = asked ? asked.extra : [];

  const t0 = performance.now();
  const tick = setInterval(() => (status.dataset.seconds = ((performance.now() - t0) / 1000).toFixed(1)), 100);
  const worker = new Worker(new URL("tryit_worker.js", import.meta.url), { type: "module" });
  let model = null;
  let trace = null; // a trace shown before its ui arrived
  const download = el("a", "sesskit-tryit-download", "download the trace (JSON)");
  download.href = "#";
  download.setAttribute("download", `sesskit-${key}.json`);
  download.hidden = true;
  download.addEventListener("click", () => {
    const text = JSON.stringify(model.get("trace"));
    URL.revokeObjectURL(download.href);
    download.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  });
  c.append(download);

  const link = () => {
    const p = hashParams();
    const ops = encodeOps(pageSteps, model.get("trace").steps);
    if (ops === null) p.delete(opsKey);
    else p.set(opsKey, ops);
    setHash(p);
  };
  const mountStepper = (ui) => {
    mount.sesskitUnmount?.();
    const host = mount.querySelector(":scope > div") || mount.appendChild(el("div"));
    host.replaceChildren();
    model = viewer.makeModel({ trace, step: -1, selected: ui.acts_on.v || "", follow: true, hash_key: key, ui });
    model.send = (m) => worker.postMessage(m);
    viewer.default.initialize({ model });
    mount.sesskitUnmount = viewer.default.render({ model, el: host });
    const root = host.querySelector(".sesskit-viewer");
    root.classList.add("sesskit-static", "sesskit-tryit-live");
    root.setAttribute("aria-label", "sesskit stepper: " + ENGINE);
    mount.dataset.tryit = "live";
    trace = null;
    download.hidden = false;
  };

  worker.onmessage = (e) => {
    const m = e.data || {};
    if (m.type === "progress") {
      say(`Loading Python in your browser: ${m.stage}…`, "is-loading");
      (c.stages ||= []).push([m.stage, m.at]);
    }
    else if (m.type === "ready") {
      clearInterval(tick);
      button.hidden = true;
      say(`Ready in ${m.seconds.toFixed(1)} s: the buttons call the ${ENGINE}, as Python in this page.`, "is-ready");
      c.dataset.state = "ready";
    } else if (m.type === "failed") {
      clearInterval(tick);
      say(`Try it stopped: ${m.message}. ${model ? "" : "The viewer below still steps through the recorded trace."}`, "is-error");
      c.dataset.state = "failed";
      if (!model) {
        worker.terminate();
        button.disabled = false;
      }
    } else if (m.type === "show") {
      if (!model) trace = m.trace;
      else {
        const p = hashParams();
        p.delete(key); // a new trace opens at its last step
        setHash(p);
        model.set("trace", m.trace);
      }
    } else if (m.type === "ui") {
      if (!model) mountStepper(m.ui);
      else model.set("ui", m.ui);
      if (m.ui.acts_on.v && model.get("selected") !== m.ui.acts_on.v) model.set("selected", m.ui.acts_on.v);
      link();
      mount.dataset.seq = String(m.ui.seq);
    } else if (m.type === "append" || m.type === "truncate") {
      model._emit("msg:custom", m); // the address follows with the ui message that comes next
    }
  };
  worker.onerror = (e) => {
    clearInterval(tick);
    say(`Try it could not start Python in this browser: ${e.message || "the worker failed"}.`, "is-error");
    c.dataset.state = "failed";
    button.disabled = false;
  };
  const base = new URL("../vendor/pyodide/", import.meta.url).href;
  const code = new URL("sesskit-py.zip", import.meta.url).href;
  worker.postMessage({ type: "start", pyodide: base, code, trace: pageTrace, keep, extra });
}
