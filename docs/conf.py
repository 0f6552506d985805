"""Sphinx configuration of sesskit's documentation site.

Build: ``sphinx-build -b html docs docs/_build/html`` (needs ``pip install -e '.[docs]'`` and npm).
The notebooks are executed during the build on the real engine (libssl when the machine has it);
every script, stylesheet and font the pages use is served from the site itself
(see ``_ext/sesskit_docs.py``).
"""

from __future__ import annotations

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
exclude_patterns = ["_build", "_ext", "**.ipynb_checkpoints", "stories/_anim"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# -- API reference from the docstrings (numpy style) --------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_numpy_docstring = True
napoleon_google_docstring = False

# -- notebooks: executed at build time, widget state saved into the page -------------------
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
# The ipywidgets embed manager and require.js, vendored from the npm registry (never a CDN).
# Paths are relative to _static; modules it does not bundle would be looked for on this site too.
nb_ipywidgets_js = {
    "vendor/requirejs/require.js": {},
    "vendor/html-manager/embed-amd.js": {"data-jupyter-widgets-cdn": "_static/vendor/npm/"},
}

# -- HTML: the built-in theme, every asset local ------------------------------------------------
html_theme = "alabaster"
html_theme_options = {"page_width": "1500px", "sidebar_width": "230px", "fixed_sidebar": False}
html_static_path = ["_static"]
html_css_files = ["sesskit.css"]
html_title = "sesskit"
html_show_sphinx = False
html_show_sourcelink = False
html_copy_source = False
mathjax_path = "vendor/mathjax/tex-chtml.js"  # local MathJax 3 (only pages with math load it)
suppress_warnings = ["mystnb.unknown_mime_type"]
