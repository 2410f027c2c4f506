"""The one widget pattern every notebook uses."""

from __future__ import annotations

import html
import inspect
import os
import re
import time
import traceback
from collections.abc import Callable, Iterator

import ipywidgets as W
import plotly.graph_objects as go

__all__ = ["App"]


class App:
    """Controls -> ``compute(**values)`` -> ``build(result)`` -> a live FigureWidget.

    Args:
        controls: name -> ipywidgets control; each control's ``value`` is passed to
            ``compute`` under that name.
        compute: the science; returns a result, or a generator of results for long work
            (each yielded result redraws the figure; a ``"progress"`` key in [0, 1] moves
            the progress bar).
        build: draws a result as a ``go.Figure`` (from :mod:`nbkit.viz`).
        run_button: when a text is given, work starts from a button with that label
            instead of on every control change (for training).
        width: the figure's width in pixels when the builder sets none.
        describe: optional ``result -> str`` shown as a line of text under the figure.

    Errors raised by ``compute`` or ``build`` are shown in the app's output area in red;
    the controls and the last good figure stay usable.
    """

    instances: list[App] = []  # every app made in this process, newest last (for export)

    def __init__(self, controls: dict, compute: Callable, build: Callable[..., go.Figure], *,
                 run_button: str | None = None, describe: Callable | None = None,
                 auto_start: bool = True, width: int = 1000):
        App.instances.append(self)
        self.width = width
        self._box = None
        self.controls = dict(controls)
        for control in self.controls.values():  # show labels such as "compare with" in full
            style = getattr(control, "style", None)
            if hasattr(style, "description_width") and not style.description_width:
                style.description_width = "initial"
        self.compute, self.build, self.describe = compute, build, describe
        self.figure = go.FigureWidget()
        self.output = W.Output(layout=W.Layout(min_height="0px"))
        self.caption = W.HTML()
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0,
                                        layout=W.Layout(width="100%", visibility="hidden"))
        self.result = None
        self.error: Exception | None = None
        self.last_update_s = 0.0
        self.button = None
        if run_button:
            self.button = W.Button(description=run_button, button_style="primary",
                                   icon="play")
            self.button.on_click(lambda _: self.update())
        else:
            for control in self.controls.values():
                control.observe(self._on_change, names="value")
        if auto_start:
            self._start()

    def _start(self):
        """Compute the first result: in a notebook, right after the cell that made the app
        has finished and displayed it, so that the app, its progress bar and a
        "computing…" placeholder show at once and fill in as the work goes (under Run All
        too; the next cell still waits for the result); elsewhere (scripts, tests, a static
        page), at once."""
        shell = _shell()
        if shell is None or os.environ.get("NBKIT_STATIC"):
            self.update()
            return
        self._placeholder()

        def start(*_):
            shell.events.unregister("post_run_cell", start)
            self.update()

        shell.events.register("post_run_cell", start)

    def _placeholder(self):
        """An empty figure that says it is being computed, instead of empty axes."""
        self.figure.layout = dict(
            width=self.width, height=260, xaxis_visible=False, yaxis_visible=False,
            plot_bgcolor="white", paper_bgcolor="white",
            annotations=[dict(text="computing…", showarrow=False, x=0.5, y=0.5,
                              xref="paper", yref="paper", font=dict(size=18, color="#666"))])

    # -------------------------------------------------------------------- running
    def values(self) -> dict:
        return {name: c.value for name, c in self.controls.items()}

    def _on_change(self, _change):
        self.update()

    def update(self):
        """Recompute and redraw with the controls' current values."""
        t0 = time.perf_counter()
        self.output.outputs = ()
        self.error = None
        if self.button is not None:
            self.button.disabled = True
        try:
            result = self.compute(**self.values())
            if inspect.isgenerator(result) or isinstance(result, Iterator):
                self.progress.layout.visibility = "visible"
                for partial in result:
                    self._show(partial)
                    frac = partial.get("progress") if isinstance(partial, dict) else None
                    if frac is not None:
                        self.progress.value = float(frac)
                self.progress.value = 1.0
                self.progress.layout.visibility = "hidden"
            else:
                self._show(result)
        except Exception as e:  # shown to the user; the widget stays alive
            self.error = e
            self.output.append_stderr(f"{type(e).__name__}: {e}\n")
            self.caption.value = (f"<span style='color:#B00020'><b>{html.escape(type(e).__name__)}"
                                  f":</b> {html.escape(str(e))}</span>")
            self._traceback = traceback.format_exc()
        finally:
            if self.button is not None:
                self.button.disabled = False
            self.last_update_s = time.perf_counter() - t0
        return self

    def _show(self, result):
        fig = self.build(result)
        self.result = result
        with self.figure.batch_update():
            # Replace the traces outright: an in-place update would keep any property
            # that the new trace leaves unset (stale error bars, say).
            self.figure.data = []
            self.figure.add_traces(list(fig.data))
            self.figure.layout = fig.layout
            if fig.layout.width is None:
                # A FigureWidget inside a widget box does not size itself to the cell
                # (it falls back to 700 px, which crowds two-panel figures), so every
                # app draws at a legible fixed width unless its builder chose one.
                self.figure.layout.width = self.width
        if self.describe is not None:
            self.caption.value = self.describe(result)

    # -------------------------------------------------------------------- display
    @property
    def messages(self) -> str:
        """Text shown in the output area (errors), for tests and scripts."""
        return "".join(o.get("text", "") for o in self.output.outputs)

    @property
    def widget(self) -> W.Widget:
        """The app's layout: rows of controls, progress bar, figure, caption, output area."""
        if self._box is None:
            controls = list(self.controls.values()) + ([self.button] if self.button else [])
            rows = [W.HBox(controls[i:i + 3]) for i in range(0, len(controls), 3)]
            self._box = W.VBox([*rows, self.progress, self.figure, self.caption, self.output])
            self._box.add_class("nbkit-app")
        return self._box

    def static_figure(self) -> go.Figure:
        """The current figure as a plain ``go.Figure``."""
        return go.Figure(self.figure)

    def settings_text(self) -> str:
        """The controls' current values, e.g. "pruner = magnitude, log10 rho = 2.5"."""
        return ", ".join(f"{k} = {_show_value(c)}" for k, c in self.controls.items())

    def _repr_mimebundle_(self, **kwargs):
        if os.environ.get("NBKIT_STATIC"):  # executed for a static gallery: plain HTML + JSON
            import plotly.io as pio

            fig = self.static_figure()
            text = (f"<p style='color:#666;font-size:12px'><i>snapshot: "
                    f"{html.escape(self.settings_text())}</i></p>" + self.caption.value
                    + (f"<pre>{html.escape(self.messages)}</pre>" if self.messages else ""))
            return {"text/html": pio.to_html(fig, include_plotlyjs=False, full_html=False)
                    + text, "text/plain": f"<nbkit App: {self.figure.layout.title.text}>"}
        bundle = self.widget._repr_mimebundle_(**kwargs)
        # Where the widget cannot be drawn (a notebook opened without running it, GitHub,
        # nbviewer) the viewer falls back to text: a line about the app, not the repr of
        # a box of widgets. `make notebooks` (nbkit.gallery --refresh) adds a PNG beside it.
        if isinstance(bundle, dict) and "text/plain" in bundle:
            bundle["text/plain"] = self.placeholder_text()
        return bundle

    def placeholder_text(self) -> str:
        """What a viewer without widgets shows for this app."""
        title = self.figure.layout.title.text or "an interactive figure"
        title = re.sub(r"<br\s*/?>", " · ", re.sub(r"<sup>(.*?)</sup>", r"^\1", title))
        title = re.sub(r"<[^>]+>", "", title)
        return f"[nbkit app: {title}. Run the notebook to use its controls.]"


def _shell():
    """The IPython kernel's shell (which runs cells), else None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell if shell is not None and hasattr(shell, "kernel") else None


def _show_value(control) -> str:
    value = control.value
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
