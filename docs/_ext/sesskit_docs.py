"""Sphinx extension for sesskit's documentation site: everything a page loads is local.

At ``config-inited``:

- **vendor**: the JavaScript the pages need besides sesskit's own viewer (MathJax,
  and Pyodide for Try it) is fetched with ``npm pack`` from the npm registry at a
  pinned version, checked against its pinned sha512, and unpacked into
  ``_static/vendor/`` -- the site never points at a CDN;
- **notebooks**: ``../notebooks/*.ipynb`` are copied to ``notebooks/`` (myst-nb
  executes them during the build, on the real engine, saving widget state);

at ``builder-inited``:

- **stories**: every scenario of :mod:`sesskit.scenarios` is run and written as
  a page ``stories/<name>.md`` with the interactive viewer over its inlined trace
  (:mod:`sesskit.viewer.page`) and PNG/SVG figures to download;

- **playground**: a fresh lab on the model (``stories/_viewer/playground.html``) for
  ``playground.md``; every story's viewer and the playground's carry a **Try it** control;

at ``build-finished``: Try it's scripts and a zip of sesskit's Python files (from this checkout) go to
``_static/sesskit/`` (Pyodide, vendored like MathJax, is in ``_static/vendor/pyodide/`` and loads only
when Try it is clicked); each page keeps one copy of the viewer's module and CSS
however many viewers it shows, and no saved ipywidgets state (the viewers draw
from their own inlined traces); then every HTML page is checked for a script,
stylesheet, image, font or frame loaded from anywhere but the site itself; the
build fails if one is found.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from html.parser import HTMLParser
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

DOCS = Path(__file__).resolve().parent.parent
ROOT = DOCS.parent
VENDOR = DOCS / "_static" / "vendor"

# npm package -> (version, {path in the package: path under _static/vendor/<dir>}, dir, the tarball's
# sha512 as npm's metadata gives it: a tarball that differs is refused)
NPM: dict[str, tuple[str, dict[str, str], str, str]] = {
    "mathjax": (
        "3.2.2",
        {
            # tex-chtml.js bundles the TeX input and the CommonHTML output; what it may load later is
            # its fonts, TeX extensions, the menu and accessibility parts (not the SVG output, AsciiMath,
            # MathML input or the other combined builds: 2 MB the pages never ask for).
            "es5/tex-chtml.js": "tex-chtml.js",
            "es5/input/tex/": "input/tex/",
            "es5/output/chtml/": "output/chtml/",
            "es5/ui/": "ui/",
            "es5/a11y/": "a11y/",
            "es5/sre/": "sre/",
            "LICENSE": "LICENSE",
        },
        "mathjax",
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
    ),
    # Try it's Python: CPython compiled to WebAssembly, loaded by the worker on the first click only
    # (``_static/vendor/pyodide/``, about 13 MB; not counted in the pages' weight).  The runtime is
    # enough: sesskit's model needs only the standard library, so no package of Pyodide's is vendored.
    "pyodide": (
        "314.0.8",
        {
            "pyodide.mjs": "pyodide.mjs",
            "pyodide.asm.mjs": "pyodide.asm.mjs",
            "pyodide.asm.wasm": "pyodide.asm.wasm",
            "python_stdlib.zip": "python_stdlib.zip",
            "pyodide-lock.json": "pyodide-lock.json",
            "package.json": "package.json",
            "README.md": "README.md",
        },
        "pyodide",
        "sha512-74Wq1kXOC+CCEzAfxuRAO701nAcCMLjf8NrwvWpu8S41dVMXwXmLQ05dYB+F4e46AdnGo0oq7YHSVUpHsoarLQ==",
    ),
}
SKIP_SUFFIXES = (".map",)


# -- vendoring -----------------------------------------------------------------
def _stamp(pkg: str, version: str) -> str:
    # the files taken count too: a changed selection is vendored again
    files = hashlib.sha256(json.dumps(NPM[pkg][1], sort_keys=True).encode()).hexdigest()[:12]
    return f"{pkg}@{version} {files}"


def vendor_assets(force: bool = False) -> None:
    """Unpack the pinned npm packages' assets into ``_static/vendor`` (once per version)."""
    for pkg, (version, files, dest, integrity) in NPM.items():
        target = VENDOR / dest
        stamp = target / ".npm-package"
        if not force and stamp.exists() and stamp.read_text() == _stamp(pkg, version):
            continue
        npm = shutil.which("npm")
        if npm is None:
            raise ExtensionError(
                f"the docs need npm to vendor {pkg} from the npm registry: install Node.js/npm"
            )
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run(
                [npm, "pack", "--silent", f"{pkg}@{version}", "--pack-destination", tmp],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if r.returncode != 0:
                raise ExtensionError(f"npm pack {pkg}@{version} failed:\n{r.stderr[-2000:]}")
            (tgz,) = Path(tmp).glob("*.tgz")
            got = "sha512-" + base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()).decode()
            if got != integrity:
                raise ExtensionError(f"npm pack {pkg}@{version}: sha512 {got}, pinned {integrity}")
            if target.exists():
                shutil.rmtree(target)
            _extract(tgz, files, target)
        stamp.write_text(_stamp(pkg, version))
        logger.info(f"[sesskit] vendored {pkg}@{version} into {target.relative_to(DOCS)}")


def _extract(tgz: Path, files: dict[str, str], target: Path) -> None:
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith("package/"):
                continue
            name = member.name.removeprefix("package/")
            if name.endswith(SKIP_SUFFIXES):
                continue
            for src, dst in files.items():
                if name == src or (src.endswith("/") and name.startswith(src)):
                    out = target / (dst + name[len(src) :] if src.endswith("/") else dst)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    data = tar.extractfile(member)
                    assert data is not None
                    out.write_bytes(data.read())
                    break


# -- notebooks -------------------------------------------------------------------
def copy_notebooks() -> list[str]:
    """Mirror ``../notebooks/*.ipynb`` into ``notebooks/`` (unchanged files keep their mtime)."""
    src_dir, dst_dir = ROOT / "notebooks", DOCS / "notebooks"
    dst_dir.mkdir(exist_ok=True)
    names = sorted(p.name for p in src_dir.glob("*.ipynb"))
    for stale in dst_dir.glob("*.ipynb"):
        if stale.name not in names:
            stale.unlink()
    for name in names:
        src, dst = src_dir / name, dst_dir / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copy2(src, dst)
    return names


# -- stories ---------------------------------------------------------------------
def _source_key() -> str:
    h = hashlib.sha256()
    for path in [*sorted((ROOT / "sesskit").rglob("*.py")), Path(__file__)]:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def render_story(name: str, out_dir: str, key: str) -> str:
    """Run scenario ``name`` and write its page, viewer and figures (in a worker process)."""
    import matplotlib

    matplotlib.use("Agg")
    from sesskit import plot, scenarios
    from sesskit.viewer.page import fragment, tryit_control

    out = Path(out_dir)
    story = scenarios.get(name)
    trace = story.run("auto")
    (out / "_viewer").mkdir(exist_ok=True)
    (out / "_figures").mkdir(exist_ok=True)
    viewer = tryit_control("step", "../_static/") + fragment(trace, "step", story.title)
    (out / "_viewer" / f"{name}.html").write_text(viewer, encoding="utf-8")
    plot.save(trace, out / "_figures" / f"{name}.png")
    plot.save(trace, out / "_figures" / f"{name}.svg")
    scenarios.write(trace, out / "_figures" / f"{name}.json")
    (out / f"{name}.md").write_text(_story_page(name, story, trace))
    (out / f".{name}.key").write_text(key)
    return name


def _story_page(name: str, story: Any, trace: Any) -> str:
    meta = trace.meta
    rows = "\n".join(
        f"<tr><td>{s.index}</td><td><code>{html.escape(s.op)}({html.escape(s.target)})</code>"
        f"{' → ' + html.escape(s.result) if s.result else ''}</td><td>{html.escape(s.why)}</td></tr>"
        for s in trace
    )
    return f"""# {story.title}

{story.summary}

*Recorded on the **{meta.get("engine")}** engine ({meta.get("openssl_version")}) when these pages were
built: {len(trace)} steps. Write it yourself with* `python -m sesskit render {name} --out {name}.html`
*(or `.png`, `.svg`, `.json`).*

## Step through it

Drag the slider, press ← / → on the picture, or click a step or the timeline: every refcount and both
caches as OpenSSL had them after that call, and why. `#step=N` in the address opens step N.
**Try it** replays the story on sesskit's model in your browser and lets you go on with the calls
yourself (see the [playground](../playground.md)).

```{{raw}} html
:file: _viewer/{name}.html
```

## Figures and the trace

The heap at the last step beside every session's refcount over the steps, as
{{download}}`PNG <_figures/{name}.png>` or {{download}}`SVG <_figures/{name}.svg>` (matplotlib); the
whole trace as {{download}}`JSON <_figures/{name}.json>` (load it with `sesskit.Trace.from_json`, or
draw it with `python -m sesskit render {name}.json --out {name}.html`).

## Every step and why

```{{raw}} html
<table class="docutils sesskit-steps"><thead><tr><th>#</th><th>C call</th><th>why</th></tr></thead>
<tbody>
{rows}
</tbody></table>
```
"""


def write_stories(app: Sphinx) -> None:
    """(Re)write the story pages whose sources changed, two at a time."""
    from sesskit import scenarios

    out = DOCS / "stories"
    out.mkdir(exist_ok=True)
    key = _source_key()
    todo = [
        n
        for n in scenarios.SCENARIOS
        if not (out / f"{n}.md").exists()
        or not (out / f".{n}.key").exists()
        or (out / f".{n}.key").read_text() != key
    ]
    for stale in out.glob("*.md"):
        if stale.stem not in scenarios.SCENARIOS and stale.stem != "index":
            stale.unlink()
    _write_index(out)
    write_playground(out)
    if not todo:
        return
    workers = max(1, min(2, os.cpu_count() or 1, len(todo)))
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        for done in pool.map(render_story, todo, [str(out)] * len(todo), [key] * len(todo)):
            logger.info(f"[sesskit] story {done}: viewer and figures written")


def write_playground(out: Path) -> None:
    """The playground's viewer: a fresh lab on the model (step 0), with its Try it control."""
    from sesskit import Lab
    from sesskit.viewer.page import fragment, tryit_control

    with Lab(engine="model") as lab:
        text = tryit_control("step", "_static/") + fragment(lab.trace, "step", "playground")
    path = out / "_viewer" / "playground.html"
    path.parent.mkdir(exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _write_index(out: Path) -> None:
    from sesskit import scenarios

    items = "\n".join(f"{n}" for n in scenarios.SCENARIOS)
    text = f"""# Stories

Each story of the notebooks, played on the real engine by `python -m sesskit render` when these pages
were built: step through it in the page (no kernel, nothing loaded from elsewhere), or download its
figures and trace.

```{{toctree}}
:maxdepth: 1

{items}
```
"""
    path = out / "index.md"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


# -- Try it: its scripts and sesskit's Python, from this checkout -----------------------------
TRYIT_FILES = ("tryit.js", "tryit_worker.js")
CODE_ZIP = "sesskit-py.zip"


def python_files() -> list[Path]:
    """sesskit's Python files that Try it ships to Pyodide: every ``.py`` of the package, as checked out."""
    pkg = ROOT / "sesskit"
    return sorted(p for p in pkg.rglob("*.py") if "__pycache__" not in p.parts)


def write_tryit(app: Sphinx, exc: Exception | None) -> None:
    """``_static/sesskit/``: Try it's page module and worker, and sesskit's Python as one zip.

    Built from the checkout at every build (never a copy kept in the docs), so the site runs the code it
    documents; the zip's entries are ``sesskit/...`` paths with fixed timestamps (reproducible).
    """
    if exc is not None or app.builder.format != "html":
        return
    out = Path(app.outdir) / "_static" / "sesskit"
    out.mkdir(parents=True, exist_ok=True)
    for name in TRYIT_FILES:
        shutil.copyfile(ROOT / "sesskit" / "viewer" / name, out / name)
    with zipfile.ZipFile(out / CODE_ZIP, "w", zipfile.ZIP_DEFLATED) as z:
        for path in python_files():
            info = zipfile.ZipInfo(str(path.relative_to(ROOT)), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, path.read_bytes())


# -- one viewer module per page, no saved widget state ---------------------------------
_WIDGET_STATE = re.compile(
    r'<script type="application/vnd\.jupyter\.widget-state\+json">.*?</script>\s*', re.S
)


def _keep_first(text: str, pattern: re.Pattern[str]) -> str:
    seen = False

    def once(m: re.Match[str]) -> str:
        nonlocal seen
        if seen:
            return ""
        seen = True
        return m.group(0)

    return pattern.sub(once, text)


def slim_pages(app: Sphinx, exc: Exception | None) -> None:
    """Each page keeps one copy of the viewer's module and CSS; saved widget state goes.

    Every viewer output carries the module and CSS so that it also stands alone (a notebook saved as
    HTML); the viewers' loader reads the first copy on the page.  The widget state myst-nb saves would
    only feed ipywidgets' embed manager, which these pages do not load.
    """
    if exc is not None or app.builder.format != "html":
        return
    from sesskit.viewer.page import SOURCE_CLASS, STYLE_CLASS

    source = re.compile(rf'<script type="text/plain" class="{SOURCE_CLASS}">.*?</script>\n?', re.S)
    style = re.compile(rf'<style class="{STYLE_CLASS}">.*?</style>\n?', re.S)
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        slim = _keep_first(_keep_first(_WIDGET_STATE.sub("", text), source), style)
        if slim != text:
            page.write_text(slim, encoding="utf-8")


# -- the offline check -------------------------------------------------------------
_EXTERNAL = re.compile(r"^\s*(https?:)?//", re.I)
_CSS_URL = re.compile(r"""(@import\s+(url\()?|url\()\s*["']?\s*((https?:)?//[^"')\s]+)""", re.I)
_LOADING = {
    ("script", "src"),
    ("img", "src"),
    ("iframe", "src"),
    ("source", "src"),
    ("audio", "src"),
    ("video", "src"),
    ("embed", "src"),
    ("object", "data"),
    ("link", "href"),
}


_NAVIGATION = ("canonical", "alternate", "search", "next", "prev")  # <link>s a browser does not load


class _Loads(HTMLParser):
    """Collects every URL a page loads by itself (not the links a reader may follow)."""

    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self._tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        d = dict(attrs)
        for name, value in attrs:
            if value and (tag, name) in _LOADING and _EXTERNAL.match(value):
                if tag == "link" and (d.get("rel") or "") in (
                    "canonical",
                    "alternate",
                    "search",
                    "next",
                    "prev",
                ):
                    continue
                self.external.append(f"<{tag} {name}={value}>")
            if name == "style" and value:
                self.external += [m.group(3) for m in _CSS_URL.finditer(value)]

    def handle_data(self, data: str) -> None:
        if self._tag == "style":
            self.external += [m.group(3) for m in _CSS_URL.finditer(data)]


def external_loads(outdir: Path) -> dict[str, list[str]]:
    """Every page (and stylesheet) of the built site that loads something from elsewhere."""
    found: dict[str, list[str]] = {}
    for page in sorted(outdir.rglob("*.html")):
        parser = _Loads()
        parser.feed(page.read_text(errors="replace"))
        if parser.external:
            found[str(page.relative_to(outdir))] = parser.external
    for css in sorted(outdir.rglob("*.css")):
        hits = [m.group(3) for m in _CSS_URL.finditer(css.read_text(errors="replace"))]
        if hits:
            found[str(css.relative_to(outdir))] = hits
    return found


def check_offline(app: Sphinx, exc: Exception | None) -> None:
    if exc is not None or app.builder.format != "html":
        return
    found = external_loads(Path(app.outdir))
    if found:
        raise ExtensionError(
            "pages load assets from outside the site (everything must be served locally):\n"
            + json.dumps(found, indent=1)[:4000]
        )


# -- wiring ------------------------------------------------------------------------
def on_config_inited(app: Sphinx, config: Any) -> None:
    vendor_assets()
    names = copy_notebooks()
    logger.info(f"[sesskit] {len(names)} notebooks: {', '.join(names)}")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", on_config_inited)
    app.connect("builder-inited", write_stories)
    app.connect("build-finished", slim_pages)
    app.connect("build-finished", write_tryit)
    app.connect("build-finished", check_offline)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
