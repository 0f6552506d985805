"""The Stepper: step a :class:`~sesskit.Lab` by hand in Jupyter and watch every refcount.

A thin layer over a Lab and the browser viewer (:mod:`sesskit.viewer`): one
button per OpenSSL call for the selected object (an SSL or one of your session
pointers), and the viewer, which draws the heap, the timeline, the steps and
their whys.  The kernel performs an operation and sends only the new steps;
the browser draws them and scrubs the history by itself, without the kernel.
In *predict* mode you say what the selected session's refcount will be before
you click, and the widget tells you whether you were right, and why.

Every control carries a stable CSS class (``add_class``) for browser tests:
``sesskit-btn-<op>`` for the buttons, ``sesskit-object``, ``sesskit-refcount``,
``sesskit-error``, ``sesskit-status``...; the viewer keeps its own DOM contract
(see :mod:`sesskit.viewer`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .errors import SesskitError
from .viewer.widget import Viewer, with_static_html

if TYPE_CHECKING:
    from .lab import Endpoint, Lab, SessionRef

__all__ = ["Stepper"]

# name -> (button label, tooltip); the name is also the CSS class suffix.
_BUTTONS: dict[str, tuple[str, str]] = {
    "connect": (
        "SSL_connect",
        "a new client SSL and server SSL, and a handshake (resuming if you chose a session)",
    ),
    "get0": ("SSL_get0_session", "borrow the SSL's session pointer: no refcount change"),
    "get1": ("SSL_get1_session", "take a reference to the SSL's session: +1, yours to SSL_SESSION_free"),
    "read": ("SSL_read", "process the records waiting for this SSL (TLS 1.3 tickets, close_notify)"),
    "shutdown": ("SSL_shutdown", "send close_notify"),
    "clear": ("SSL_clear", "reset the SSL for a new handshake"),
    "free": ("SSL_free", "free the SSL and its reference to its session"),
    "session-free": ("SSL_SESSION_free", "give back the reference a get1 took"),
    "advance": ("advance clock", "age every live session by the seconds given"),
    "flush": ("SSL_CTX_flush_sessions", "remove expired sessions from one side's cache"),
}
FULL_HANDSHAKE = "no: a full handshake"
_SSL_OPS = ("get0", "get1", "read", "shutdown", "clear", "free")


def _classed(widget: Any, css: str) -> Any:
    widget.add_class(css)
    return widget


class Stepper(widgets.VBox):
    """Buttons over the viewer of one Lab.

    Parameters
    ----------
    lab : Lab
        The lab to drive.  The Stepper calls the public API only; errors the
        lab raises are shown, not raised.
    render : None
        Ignored; the viewer draws in the browser.  Accepted so that notebooks written for
        the earlier, kernel-drawn Stepper (``render="png"``) still run.

    Attributes
    ----------
    buttons : dict[str, ipywidgets.Button]
        ``connect``, ``get0``, ``get1``, ``read``, ``shutdown``, ``clear``,
        ``free``, ``session-free``, ``advance``, ``flush``.
    object : ipywidgets.Dropdown
        What the SSL and SSL_SESSION_free buttons act on: ``"ssl:c1"`` or ``"ref:3"``.
    viewer : sesskit.viewer.Viewer
        The trace drawn in the browser; ``viewer.step`` is the step shown (-1: the last).
    """

    def __init__(self, lab: Lab, render: str | None = None) -> None:
        from .lab import Lab

        if not isinstance(lab, Lab):
            raise TypeError(f"Stepper needs a sesskit.Lab to drive, not {type(lab).__name__}")
        self.lab = lab
        self._busy = False
        self._quiet = False  # set while refresh() moves controls itself
        self._build_controls()
        self.viewer = Viewer(lab.trace)  # the history so far travels with the widget's state
        self._sent = len(lab.trace)  # how many of the lab's steps the viewer has
        self.viewer.observe(self._on_step, names="step")
        self.viewer.observe(self._on_selected, names="selected")
        wrap = widgets.Layout(flex_flow="row wrap", align_items="center")
        super().__init__(
            [
                self.status,
                widgets.HBox([self.object, self.refcount], layout=wrap),
                widgets.HBox(
                    [self.buttons[n] for n in _SSL_OPS] + [self.buttons["session-free"]], layout=wrap
                ),
                widgets.HBox(
                    [
                        self.buttons["connect"],
                        self.resume,
                        self.buttons["advance"],
                        self.seconds,
                        self.buttons["flush"],
                        self.side,
                    ],
                    layout=wrap,
                ),
                widgets.HBox([self.predict, self.guess, self.verdict], layout=wrap),
                self.error,
                self.viewer,
            ]
        )
        self.add_class("sesskit-stepper")
        self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return with_static_html(super()._repr_mimebundle_(**kwargs), self.viewer.trace)

    # -- construction ----------------------------------------------------------
    def _build_controls(self) -> None:
        self.status = _classed(widgets.HTML(), "sesskit-status")
        self.object = _classed(
            widgets.Dropdown(description="acts on", layout=widgets.Layout(width="330px")), "sesskit-object"
        )
        self.refcount = _classed(widgets.Label(), "sesskit-refcount")
        self.buttons: dict[str, widgets.Button] = {}
        for name, (label, tip) in _BUTTONS.items():
            button = widgets.Button(description=label, tooltip=tip, layout=widgets.Layout(width="auto"))
            button.add_class(f"sesskit-btn-{name}")
            button.on_click(self._handler(name))
            self.buttons[name] = button
        self.resume = _classed(
            widgets.Dropdown(
                options=[(FULL_HANDSHAKE, 0)],
                value=0,
                description="resume",
                layout=widgets.Layout(width="auto"),
            ),
            "sesskit-resume",
        )
        self.seconds = _classed(
            widgets.BoundedIntText(
                value=3600, min=0, max=10**9, description="s", layout=widgets.Layout(width="150px")
            ),
            "sesskit-seconds",
        )
        self.side = _classed(
            widgets.Dropdown(
                options=["server", "client"], value="server", layout=widgets.Layout(width="100px")
            ),
            "sesskit-flush-side",
        )
        self.predict = _classed(
            widgets.Checkbox(value=False, description="predict", indent=False), "sesskit-predict"
        )
        self.guess = _classed(
            widgets.IntText(value=1, description="refcount after:", layout=widgets.Layout(width="210px")),
            "sesskit-guess",
        )
        self.guess.style.description_width = "initial"
        self.verdict = _classed(widgets.HTML(), "sesskit-verdict")
        self.error = _classed(widgets.HTML(), "sesskit-error")
        self.object.observe(self._on_object, names="value")
        self.predict.observe(self._on_predict, names="value")

    # -- reading the lab -------------------------------------------------------
    def _endpoints(self) -> list[Endpoint]:
        return [ep for link in self.lab.links for ep in (link.client, link.server)]

    def _selected(self) -> Endpoint | SessionRef | None:
        key = self.object.value
        if not key:
            return None
        kind, _, ident = key.partition(":")
        if kind == "ssl":
            return next((ep for ep in self._endpoints() if ep.name == ident), None)
        return next((r for r in self.lab.refs if str(r.id) == ident), None)

    @staticmethod
    def _session_of(obj: Endpoint | SessionRef | None) -> str | None:
        """The label of the session ``obj`` points at now (an SSL's ``s->session`` or a ref's)."""
        return None if obj is None else obj.session

    def _object_options(self) -> list[tuple[str, str]]:
        trace = self.lab.trace
        options = []
        for ep in self._endpoints():
            st = trace.ssl(ep.name)
            state = "freed" if st.freed else "cleared" if st.cleared else f"→ {st.session or 'no session'}"
            options.append((f"{ep.name} ({ep.side} SSL, {state})", f"ssl:{ep.name}"))
        for ref in self.lab.refs:
            rs = trace.ref(ref.id)
            state = "dangling" if rs.dangling else "released" if rs.released else "held"
            options.append((f"ref #{ref.id} {ref.kind} → {ref.session} ({state})", f"ref:{ref.id}"))
        return options

    def _resume_options(self) -> list[tuple[str, int]]:
        """ "full handshake" (0), then each live client session a pointer of yours names, with its state."""
        trace = self.lab.trace
        options: list[tuple[str, int]] = [(FULL_HANDSHAKE, 0)]
        for ref in self.lab.refs:
            st = trace.session(ref.session)
            if st.side == "client" and not st.freed:
                cache = f"in {st.cache} cache" if st.cache else "not cached"
                usable = "resumable" if st.resumable else "not resumable"
                state = f"refcount {st.refcount} · {cache} · {usable}"
                options.append((f"{ref.session} (ref #{ref.id} {ref.kind}) · {state}", ref.id))
        return options

    # -- what makes sense ------------------------------------------------------
    def enabled(self) -> dict[str, bool]:
        """Which operations make sense now for the selected object."""
        from .lab import Endpoint, SessionRef

        obj = self._selected()
        open_ = not self.lab._closed
        ok = dict.fromkeys(_BUTTONS, False)
        ok["connect"] = ok["advance"] = ok["flush"] = open_
        if isinstance(obj, Endpoint) and open_:
            st = self.lab.trace.ssl(obj.name)
            if not st.freed:
                for op in ("get0", "get1", "clear", "free"):
                    ok[op] = True
                ok["read"] = ok["shutdown"] = not st.cleared
        elif isinstance(obj, SessionRef) and open_:
            rs = self.lab.trace.ref(obj.id)
            ok["session-free"] = rs.kind == "get1" and not rs.released and not rs.dangling
        return ok

    # -- running operations ----------------------------------------------------
    def _handler(self, name: str) -> Callable[[Any], None]:
        def handler(_button: Any) -> None:
            self.run(name)

        return handler

    def run(self, name: str) -> None:
        """Perform operation ``name`` (a button's name) on the selected object, as a click does."""
        if self._busy:
            return
        self._busy = True
        try:
            self._run(name)
        finally:
            self._busy = False

    def _run(self, name: str) -> None:
        self.error.value = ""
        obj = self._selected()
        watched = self._watched_session(name, obj)
        guess = self.guess.value if self.predict.value else None
        before = len(self.lab.trace)
        new_selection = None
        try:
            new_selection = self._perform(name, obj)
        except SesskitError as exc:
            self._show_error(type(exc).__name__, str(exc))
        except Exception as exc:  # never leave the widget stuck behind a traceback
            self._show_error(f"unexpected {type(exc).__name__}", str(exc))
        self.refresh(select=new_selection)
        if guess is not None:
            self._judge(guess, watched, stepped=len(self.lab.trace) > before)

    def _perform(self, name: str, obj: Endpoint | SessionRef | None) -> str | None:
        """Call the lab; returns the object to select afterwards (a new link's client), if any."""
        from .lab import Endpoint, SessionRef

        lab = self.lab
        if name == "connect":
            ref = next((r for r in lab.refs if r.id == self.resume.value), None)
            try:
                link = lab.connect(resume=ref)
            finally:
                self.resume.value = 0  # the next connect is a full handshake unless chosen again
            return f"ssl:{link.client.name}"
        if name == "advance":
            lab.advance(int(self.seconds.value))
            return None
        if name == "flush":
            lab.flush(side=self.side.value)
            return None
        if name == "session-free":
            if not isinstance(obj, SessionRef):
                raise _NotApplicable("SSL_SESSION_free acts on a session pointer: choose a ref in 'acts on'")
            obj.free()
            return None
        if not isinstance(obj, Endpoint):
            raise _NotApplicable(f"{_BUTTONS[name][0]} acts on an SSL: choose an SSL in 'acts on'")
        if name == "get0":
            obj.get0_session()
        elif name == "get1":
            obj.get1_session()
        else:
            getattr(obj, name)()
        return None

    def _show_error(self, kind: str, message: str) -> None:
        self.error.value = (
            '<div style="color:#b71c1c;border-left:4px solid #d62728;padding:2px 8px">'
            f"<b>{html.escape(kind)}</b>: {html.escape(message)}</div>"
        )

    # -- predict mode ----------------------------------------------------------
    def _watched_session(self, name: str, obj: Endpoint | SessionRef | None) -> str | None:
        if name == "connect" and self.resume.value:
            ref = next((r for r in self.lab.refs if r.id == self.resume.value), None)
            return ref.session if ref is not None else None
        return self._session_of(obj)

    def _judge(self, guess: int, label: str | None, stepped: bool) -> None:
        if not stepped:
            self.verdict.value = "The call was refused, so nothing changed (see the error)."
            return
        if label is None:
            self.verdict.value = "Nothing to predict: the selected object had no session."
            return
        st = self.lab.trace.session(label)
        why = html.escape(self.lab.trace[-1].why)
        now = f"{html.escape(label)}'s refcount is now <b>{st.refcount}</b>" + (
            " (freed)" if st.freed else ""
        )
        if guess == st.refcount:
            self.verdict.value = f'<span style="color:#1b5e20">✔ Right: {now}.</span> {why}'
        else:
            self.verdict.value = f'<span style="color:#b71c1c">✘ You said {guess}; {now}.</span> {why}'

    def _on_predict(self, change: dict[str, Any]) -> None:
        self.guess.layout.visibility = "visible" if change["new"] else "hidden"
        self.verdict.value = ""
        self._update_guess_label()

    def _update_guess_label(self) -> None:
        label = self._watched_session("", self._selected())
        self.guess.description = f"{label} refcount after:" if label else "refcount after:"

    # -- redrawing -------------------------------------------------------------
    def refresh(self, select: str | None = None) -> None:
        """Re-read the lab: options, enabled buttons, the viewer's new steps, texts."""
        trace = self.lab.trace
        self._quiet = True
        try:
            options = self._object_options()
            current = select or self.object.value
            values = [v for _, v in options]
            if options != list(self.object.options):
                self.object.options = options
            self.object.value = current if current in values else (values[0] if values else None)
            resume = self._resume_options()
            keep = self.resume.value if self.resume.value in [v for _, v in resume] else 0
            if resume != list(self.resume.options):
                self.resume.options = resume
            self.resume.value = keep
        finally:
            self._quiet = False
        self.viewer.append(trace[i] for i in range(self._sent, len(trace)))
        self._sent = len(trace)
        self._update_buttons()
        self._update_guess_label()
        self.guess.layout.visibility = "visible" if self.predict.value else "hidden"
        self._update_status()
        self._update_readout(self._shown())

    def _shown(self) -> int:
        """The step the viewer shows (its -1 means the last)."""
        last = len(self.lab.trace) - 1
        step = self.viewer.step
        return last if step < 0 or step > last else step

    def _update_status(self) -> None:
        trace = self.lab.trace
        engine = html.escape(f"{self.lab.engine_name} · {self.lab.openssl_version}")
        note = f" <i>{html.escape(self.lab.engine_note)}</i>" if self.lab.engine_note else ""
        self.status.value = f"<b>sesskit</b> · {engine} · {len(trace)} steps · t = {trace.time} s{note}"

    def _update_buttons(self) -> None:
        for name, ok in self.enabled().items():
            self.buttons[name].disabled = not ok

    def _on_object(self, _change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self._update_buttons()
        self._update_guess_label()
        self._update_readout(self._shown())

    def _on_step(self, _change: dict[str, Any]) -> None:
        self._update_readout(self._shown())

    def _on_selected(self, change: dict[str, Any]) -> None:
        """A click on an SSL or a pointer in the picture chooses what the buttons act on."""
        key = change["new"]
        if key in [v for _, v in self.object.options]:
            self.object.value = key

    def _update_readout(self, step: int) -> None:
        """Plain text: the selected object's session and its refcount at the step shown."""
        obj = self._selected()
        if obj is None or not len(self.lab.trace):
            self.refcount.value = "nothing selected"
            return
        snap = self.lab.trace.snapshot(step)
        from .lab import SessionRef

        if isinstance(obj, SessionRef):
            name = f"ref #{obj.id}"
            if obj.id not in snap.refs:
                self.refcount.value = f"{name} does not exist yet at step {step}"
                return
            label: str | None = obj.session
        else:
            ssl = snap.ssls.get(obj.name)
            label = ssl.session if ssl is not None else None
            name = obj.name
            if ssl is None:
                self.refcount.value = f"{name} does not exist yet at step {step}"
                return
        if label is None or label not in snap.sessions:
            self.refcount.value = f"{name} at step {step}: no session"
            return
        st = snap.sessions[label]
        freed = " (freed)" if st.freed else ""
        self.refcount.value = f"{label} refcount = {st.refcount}{freed} at step {step}"


class _NotApplicable(SesskitError):
    """The chosen object can't take this operation (the button should have been disabled)."""
