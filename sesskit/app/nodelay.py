"""Kernel messages reach the browser at once: TCP_NODELAY on the kernel's websocket.

jupyter_server (2.x) never turns Nagle's algorithm off on the websocket that carries
a kernel's messages to the browser.  After a click, the kernel answers with several
small messages in a row (``status: busy``, the widget's ``comm_msg``, ``status:
idle``); with Nagle on, each small write after the first waits for the browser to
acknowledge the one before, and a browser delays its acknowledgements by up to 40
ms.  Measured in headless Chromium on JupyterLab 4 (``benchmarks/bench_stepper.py``):
a bare ipywidgets button round trip took 46/49 ms p50/p90 with Nagle, about 20/21
ms without.

``python -m sesskit lab`` passes ``--ServerApp.kernel_websocket_connection_class``
naming :class:`NoDelayConnection`, a configurable jupyter_server offers (``python -m
sesskit app`` passes Voila's ``--Voila.kernel_websocket_connection_class``); Binder's
``postBuild`` writes the same setting into the server's config.  Nothing else of
the server changes: the class is jupyter_server's own connection that calls
tornado's ``WebSocketHandler.set_nodelay(True)`` before connecting.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection


class NoDelayConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection, with Nagle's algorithm off on its socket."""

    def connect(self) -> Any:  # a Future or None, as jupyter_server's own (it varies by version)
        self.websocket_handler.set_nodelay(True)
        return super().connect()
