"""Static pages: the viewer with its trace inlined, for files, docs pages and notebooks saved as HTML.

A page holds everything it needs: the viewer's ES module and CSS, and each
trace as JSON.  It requests nothing from anywhere and opens from ``file://``:
the module's source travels as text and is imported from a ``blob:`` URL
(``<script type="module" src>`` is refused on ``file://`` pages), once per
page however many viewers the page holds.  A small shim in the module
(``mountStatic``) gives it the same model interface anywidget gives it in
Jupyter, so one module draws in both places; ipywidgets' embed manager is not
used (it loads modules from a CDN and drops binary buffers).

Standard library only: writing a page needs no Jupyter.
"""

from __future__ import annotations

import html
import itertools
import json
from functools import cache
from pathlib import Path
from typing import Any

from ..trace import Trace

__all__ = ["asset", "fragment", "page", "tryit_control"]

HERE = Path(__file__).resolve().parent
# The classes a page carries once however many fragments it holds (a docs build drops the repeats).
SOURCE_CLASS = "sesskit-viewer-src"
STYLE_CLASS = "sesskit-viewer-css"
MOUNT_CLASS = "sesskit-static-mount"
TRYIT_CLASS = "sesskit-tryit"
# What Try it runs, in the words every page uses (tests/test_differential*.py hold the model to libssl).
TRYIT_ENGINE = "model of OpenSSL 3.0, held to libssl 3.0 by the test suite"
BINDER = "https://mybinder.org/v2/gh/sesskit/sesskit/HEAD?labpath=notebooks%2F01_tour.ipynb"
LOCAL_COMMAND = "python -m venv .venv && .venv/bin/pip install -e '.[lab]' && .venv/bin/python -m sesskit lab"

# Loads the module once per page, then mounts every viewer not mounted yet.  No trace text in here.
_LOADER = """<script type="module">
const w = window;
w.__sesskitViewer ??= import(URL.createObjectURL(new Blob(
  [document.querySelector("script.@SRC@").textContent], {type: "text/javascript"})));
const viewer = await w.__sesskitViewer;
for (const el of document.querySelectorAll(".@MOUNT@:not([data-mounted])")) {
  el.dataset.mounted = "true";
  const trace = JSON.parse(el.querySelector("script[type='application/json']").textContent);
  const host = el.appendChild(document.createElement("div"));
  const options = {hashKey: el.dataset.hashKey || null, title: el.dataset.title || null};
  el.sesskitUnmount = viewer.mountStatic(host, trace, options);  // Try it replaces the static viewer
}
</script>""".replace("@SRC@", SOURCE_CLASS).replace("@MOUNT@", MOUNT_CLASS)

# The Try it control's script: nothing is loaded before a click (or a link carrying operations).  From
# file:// it only explains: browsers refuse the WebAssembly fetch there; the static viewer keeps working.
_TRYIT_BOOT = """<script type="module">
for (const c of document.querySelectorAll(".@TRYIT@:not([data-ready])")) {
  c.dataset.ready = "true";
  const btn = c.querySelector(".@TRYIT@-btn"), status = c.querySelector(".@TRYIT@-status");
  const go = async () => {
    if (location.protocol === "file:") {
      status.textContent = "Try it runs Python (Pyodide) in your browser, and browsers refuse to load " +
        "WebAssembly from a file:// page: serve the site over http, e.g. python -m http.server in its " +
        "folder, then open http://127.0.0.1:8000/. The viewer below keeps working.";
      status.className = "@TRYIT@-status is-error";
      return;
    }
    btn.disabled = true;
    status.textContent = "Loading…";
    try {
      await (await import(new URL(c.dataset.static + "sesskit/tryit.js", location.href))).start(c);
    } catch (e) {
      status.textContent = "Try it could not load: " + e;
      btn.disabled = false;
    }
  };
  btn.addEventListener("click", go);
  if (new URLSearchParams(location.hash.slice(1)).has(c.dataset.for + ".ops")) go();
}
</script>""".replace("@TRYIT@", TRYIT_CLASS)

_keys = itertools.count(1)


@cache
def asset(name: str) -> str:
    """The text of ``viewer.js`` or ``viewer.css`` (package data)."""
    text = (HERE / name).read_text(encoding="utf-8")
    if "</script" in text.lower() or "</style" in text.lower():
        # Inlined into <script>/<style>, such a sequence would end the element early.
        raise ValueError(f"sesskit/viewer/{name} must not contain '</script' or '</style'")
    return text


def _json_for_script(data: Any) -> str:
    # Inside <script type="application/json"> only "</" can end the element; escape every "<" (and the
    # two line separators JavaScript once rejected) so trace text can never close it or open a tag.
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def next_hash_key() -> str:
    """A fragment key for the next viewer of this process: ``step``, then ``step2``, ``step3``...

    One kernel renders one docs page, so viewers on a page get distinct keys.
    """
    n = next(_keys)
    return "step" if n == 1 else f"step{n}"


def fragment(trace: Trace | dict[str, Any], hash_key: str | None = "step", title: str | None = None) -> str:
    """An HTML fragment that draws ``trace``: the viewer's CSS and module, the trace, a loader.

    ``hash_key`` names this viewer's key in the page's URL fragment (``#step=N``); ``None`` leaves the
    URL alone.  Fragments can be concatenated: the module loads once and every viewer mounts.
    """
    data = trace.to_dict() if isinstance(trace, Trace) else trace
    attrs = f'class="{MOUNT_CLASS}"'
    if hash_key:
        attrs += f' data-hash-key="{html.escape(hash_key)}"'
    if title:
        attrs += f' data-title="{html.escape(title)}"'
    return (
        f'<style class="{STYLE_CLASS}">\n{asset("viewer.css")}\n</style>\n'
        f'<script type="text/plain" class="{SOURCE_CLASS}">\n{asset("viewer.js")}\n</script>\n'
        f'<div {attrs}><script type="application/json">{_json_for_script(data)}</script></div>\n'
        f"{_LOADER}\n"
    )


def tryit_control(hash_key: str = "step", static: str = "_static/") -> str:
    """The Try it control of the viewer whose key is ``hash_key``, for a site that serves Try it's files.

    ``static`` is the site's ``_static/`` folder relative to the page: it holds ``sesskit/tryit.js``,
    ``sesskit/tryit_worker.js``, ``sesskit/sesskit-py.zip`` and Pyodide's runtime in ``pyodide/``
    (the docs build puts them there).  A click loads them and turns the viewer into a Stepper driven by
    the model engine in a Web Worker; until then the page loads nothing more.
    """
    key, base = html.escape(hash_key), html.escape(static)
    return (
        f'<div class="{TRYIT_CLASS}" data-for="{key}" data-static="{base}">'
        f'<button type="button" class="{TRYIT_CLASS}-btn">▶ Try it</button> '
        f'<span class="{TRYIT_CLASS}-status" role="status"></span>'
        f'<p class="{TRYIT_CLASS}-engine">Try it performs the calls yourself, with predict mode and '
        f"branching, in this page: the engine is sesskit's <strong>{TRYIT_ENGINE}</strong>, running as "
        "Python (Pyodide) in your browser; nothing is sent anywhere. For the real OpenSSL, run the "
        f'notebooks <a href="{html.escape(BINDER)}">on Binder</a> or locally: '
        f"<code>{html.escape(LOCAL_COMMAND)}</code>.</p></div>\n{_TRYIT_BOOT}\n"
    )


_PAGE_CSS = """:root{color-scheme:light dark}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:15px;line-height:1.45;
max-width:1400px;margin:0 auto;padding:.5em 1em;background:#fff;color:#1b1b1b}
@media (prefers-color-scheme:dark){body{background:#16181c;color:#e4e4e4}}
h1{font-size:1.5em;margin:.4em 0}.sesskit-summary{max-width:60em}"""


def page(trace: Trace, title: str = "sesskit", summary: str = "") -> str:
    """A whole HTML page: a heading, the summary's paragraphs, the viewer (``#step=N`` opens step N)."""
    paras = "".join(
        f'<p class="sesskit-summary">{html.escape(p)}</p>\n' for p in summary.split("\n\n") if p.strip()
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_PAGE_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{paras}"
        f"{fragment(trace, 'step', title)}"
        "</body>\n</html>\n"
    )
