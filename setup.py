"""The optional C observation helper (everything else is in pyproject.toml).

``sesskit.engines._cobserve`` is compiled when a C compiler is present; if the
build fails, the install still succeeds and the libssl engine observes in
Python (slower, same numbers).  See README.md, "How the numbers are read".
"""

import importlib.util
import os

from setuptools import setup


def _helper():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "sesskit", "engines", "_cobserve_build.py")
    spec = importlib.util.spec_from_file_location("_cobserve_build", path)
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    ext = builder.ffi.distutils_extension(tmpdir=os.path.join("build", "cffi"))
    ext.optional = True  # no compiler: install anyway, observe in Python
    return ext


setup(ext_modules=[_helper()])
