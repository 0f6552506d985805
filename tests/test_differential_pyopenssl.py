"""The model against pyOpenSSL's OpenSSL (4.0.x): random programs, identical snapshots.

The state machine of ``tests/test_differential.py`` (model vs libssl), with the
real lab on ``engine="pyopenssl"`` and without the two operations pyOpenSSL's
lib cannot perform (``SSL_clear``, ``SSL_CTX_flush_sessions``; each raises
UnsupportedOperation, tested in test_pyopenssl.py).

One documented difference is configured, not hidden: pyOpenSSL binds no
``SSL_CTX_set_session_ticket_cb``, so the engine cannot age the server's view
of a sealed (stateless) ticket; the model is told so with
``ticket_aging=False`` (sesskit/model.py, rule "sealed_ticket").  Everything
else -- refcounts, cache order, statistics, labels -- must match OpenSSL 3.0's
model exactly on OpenSSL 4.0.
"""

from __future__ import annotations

from typing import Any

import pytest
import test_differential as base
from conftest import engine_unavailable
from hypothesis import strategies as st
from hypothesis.stateful import rule

pytestmark = pytest.mark.skipif(bool(engine_unavailable("pyopenssl")), reason="pyopenssl engine unavailable")


class ModelVersusPyOpenSSL(base.ModelVersusLibssl):
    REAL = "pyopenssl"

    @rule(ssl=base.ModelVersusLibssl.ssls, op=st.sampled_from(["read", "shutdown", "free"]))
    def endpoint_op(self, ssl: str, op: str) -> None:
        self.both(lambda lab, i: getattr(lab.endpoint(ssl), op)())

    def flush(self, *args: Any) -> None:  # not a rule here: pyOpenSSL binds no SSL_CTX_flush_sessions
        raise AssertionError("unreachable")


# As tests/test_differential.py: 300 programs of up to 32 steps (well over 100 of 30 or more);
# about 15 s here.
ModelVersusPyOpenSSL.TestCase.settings = base.programs(300)
TestModelVersusPyOpenSSL = ModelVersusPyOpenSSL.TestCase


def test_at_least_100_programs_of_30_steps_ran() -> None:
    base.check_enough_long_programs("pyopenssl", 100)
