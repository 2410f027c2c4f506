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

MULTI_HINT = "(Ctrl-click)"
# A figure shown in a browser reports once it has drawn (plotly's view sends its layout
# back). One that has not reported this long after its app was displayed and computed
# is drawn again as a fresh widget, at most VIEW_RETRIES times (a FigureWidget whose
# model failed to start in the browser otherwise stays a blank plot for good).
VIEW_CHECK_S = 20.0
VIEW_RETRIES = 2


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
            if isinstance(control, W.SelectMultiple) and MULTI_HINT not in control.description:
                # a list that takes several choices says how (rows scrolled out of view
                # stay chosen; the figure's legend names them)
                control.description = f"{control.description} {MULTI_HINT}".strip()
                control.tooltip = ("Ctrl-click (⌘-click on a Mac) adds or removes a row; "
                                   "Shift-click chooses a range")
                if control.layout.width is None:  # room for the label and the list
                    control.layout.width = f"{7 * len(control.description) + 180}px"
        self.compute, self.build, self.describe = compute, build, describe
        self.figure = go.FigureWidget()
        self.figure_drawn = False  # a browser view of the figure has reported that it drew
        self.redraws = 0
        self._displayed = False
        self._watch(self.figure)
        self.output = W.Output(layout=W.Layout(min_height="0px"))
        self.caption = W.HTML()
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0,
                                        layout=W.Layout(flex="1 1 160px", max_width="400px",
                                                        visibility="hidden"))
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
            self._check_view_later(getattr(getattr(shell, "kernel", None), "io_loop", None))

        shell.events.register("post_run_cell", start)

    # -------------------------------------------------------------- blank figures
    def _watch(self, figure):
        figure.observe(self._on_view_report, names=["_js2py_layoutDelta", "_js2py_traceDeltas"])

    def _on_view_report(self, change):
        if change["new"]:
            self.figure_drawn = True

    def check_view(self) -> bool:
        """Draw the figure again if it was displayed but no browser view has reported
        drawing it: a fresh FigureWidget with the same traces and layout takes its place
        in the app (at most :data:`VIEW_RETRIES` times). Returns whether it did."""
        if self.figure_drawn or not self._displayed or self.redraws >= VIEW_RETRIES:
            return False
        old = self.figure
        self.figure = go.FigureWidget(data=old.data, layout=old.layout)
        self._watch(self.figure)
        if self._box is not None:
            self._box.children = tuple(self.figure if c is old else c
                                       for c in self._box.children)
        old.close()
        self.redraws += 1
        return True

    def _check_view_later(self, loop):
        """Run :meth:`check_view` on the kernel's event loop after :data:`VIEW_CHECK_S`,
        twice in a row before drawing again (a busy kernel may not yet have read the
        browser's report), and again after each redraw."""
        if loop is None:
            return

        def confirm():
            if not self.figure_drawn:
                loop.call_later(3.0, redraw)

        def redraw():
            if self.check_view():
                loop.call_later(VIEW_CHECK_S, confirm)

        loop.call_later(VIEW_CHECK_S, confirm)

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
        if self.describe is not None:  # compact lines: the app must fit a projector
            self.caption.value = f"<div style='line-height:1.4'>{self.describe(result)}</div>"

    # -------------------------------------------------------------------- display
    @property
    def messages(self) -> str:
        """Text shown in the output area (errors), for tests and scripts."""
        return "".join(o.get("text", "") for o in self.output.outputs)

    @property
    def widget(self) -> W.Widget:
        """The app's layout: rows of controls (the progress bar at the end of the last),
        figure, caption, output area; compact, so that it fits a 1280×800 projector."""
        if self._box is None:
            controls = list(self.controls.values()) + ([self.button] if self.button else [])
            rows = [controls[i:i + 3] for i in range(0, len(controls), 3)] or [[]]
            rows[-1] = rows[-1] + [self.progress]
            rows = [W.HBox(row, layout=W.Layout(align_items="center")) for row in rows]
            self._box = W.VBox([*rows, self.figure, self.caption, self.output])
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
        self._displayed = True
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
