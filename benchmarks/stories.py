"""The stories the benchmarks draw: long random programs on the model engine (standard library + sesskit)."""

from __future__ import annotations

import random
from typing import Any

import sesskit
from sesskit.trace import Trace


def model_story(n_steps: int, n_sessions: int, seed: int = 1) -> Trace:
    """A long random story on the model: connects until ``n_sessions`` sessions, then borrows,
    takes and gives back references, closes and frees, until ``n_steps``."""
    rng = random.Random(seed)
    lab = sesskit.Lab(engine="model", tls="1.2", tickets=False)
    live: list[Any] = []  # endpoints not freed yet
    held: list[Any] = []  # unreleased get1 refs
    links = 0
    p_connect = n_sessions / 2 / n_steps * 1.05
    while len(lab.trace) < n_steps:
        if 2 * links + 2 <= n_sessions and (not live or rng.random() < p_connect):
            link = lab.connect()
            links += 1
            live += [link.client, link.server]
            continue
        roll = rng.random()
        if roll < 0.2 and held:
            held.pop(rng.randrange(len(held))).free()
        elif not live:
            lab.advance(1)
        else:
            ep = live[rng.randrange(len(live))]
            if roll >= 0.96:  # few frees: most SSLs stay alive through the story
                ep.free()
                live.remove(ep)
            elif roll >= 0.75 and not ep.state.sent_shutdown:
                ep.shutdown()
            elif 0.5 <= roll < 0.75:
                ref = ep.get1_session()
                if ref is not None:
                    held.append(ref)
            else:
                ep.get0_session()
    trace = lab.trace
    lab.close()
    return trace
