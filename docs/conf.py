"""Sphinx configuration of sesskit's documentation site.

Build: ``sphinx-build -b html docs docs/_build/html`` (needs ``pip install -e '.[docs]'`` and npm).
The notebooks are executed during the build on the real engine (libssl when the machine has it);
every script, stylesheet and font the pages use is served from the site itself
(see ``_ext/sesskit_docs.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))  # document this checkout's sesskit

import sesskit  # noqa: E402

project = "sesskit"
author = "the sesskit authors"
copyright = "the sesskit authors, Apache-2.0"
release = version = sesskit.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sesskit_docs",
]
exclude_patterns = ["_build", "_ext", "**.ipynb_checkpoints", "stories/_viewer"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# -- API reference from the docstrings (numpy style) --------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_numpy_docstring = True
napoleon_google_docstring = False

# -- notebooks: executed at build time ---------------------------------------------------------
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
# The kernels inherit this: sesskit's viewer and Stepper then add a static copy of themselves (text/html,
# the viewer's own static path) to their outputs, which these pages show instead of the widget. No
# ipywidgets embed manager is loaded (it would fetch anywidget from a CDN); saved widget state is dropped
# from the pages at build-finished (see _ext/sesskit_docs.py).
os.environ["SESSKIT_STATIC_HTML"] = "1"
nb_mime_priority_overrides = [
    ("html", "application/vnd.jupyter.widget-view+json", None),
    ("html", "text/html", 5),
]
nb_ipywidgets_js: dict[str, dict[str, str]] = {}

# -- HTML: the built-in theme, every asset local ------------------------------------------------
html_theme = "alabaster"
html_theme_options = {"page_width": "1400px", "sidebar_width": "220px", "fixed_sidebar": False}
html_static_path = ["_static"]
html_css_files = ["sesskit.css"]
html_title = "sesskit"
html_show_sphinx = False
html_show_sourcelink = False
html_copy_source = False
mathjax_path = "vendor/mathjax/tex-chtml.js"  # local MathJax 3 (only pages with math load it)
suppress_warnings = ["mystnb.unknown_mime_type"]
