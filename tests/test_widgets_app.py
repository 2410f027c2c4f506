"""The one App pattern as a reader without widgets sees it (a notebook opened without
running it, GitHub, nbviewer)."""

from __future__ import annotations

import plotly.graph_objects as go


def test_an_app_without_widgets_reads_as_a_line_about_it_and_gets_its_snapshot():
    """What a notebook opened without running shows: the app's text is a line naming its
    figure (never the repr of a box of widgets), and the refresh puts the PNG taken in
    the kernel beside the output whose widget model it belongs to."""
    import nbformat

    from nbkit.gallery import WIDGET, add_snapshots
    from nbkit.widgets.app import App

    app = App({}, compute=lambda: 1, build=lambda r: go.Figure(layout_title_text="A<br>b"))
    bundle = app._repr_mimebundle_()
    assert bundle["text/plain"] == "[nbkit app: A · b. Run the notebook to use its controls.]"
    model = bundle[WIDGET]["model_id"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        nbformat.v4.new_output("display_data", data=bundle),
        nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "other"},
                                                     "text/plain": "x"})])])
    assert add_snapshots(nb, {model: "iVBORw0K"}) == 1
    first, second = nb.cells[0].outputs
    assert first.data["image/png"] == "iVBORw0K" and "image/png" not in second.data



class _Events:
    def __init__(self):
        self.callbacks = []

    def register(self, name, fn):
        assert name == "post_run_cell"
        self.callbacks.append(fn)

    def unregister(self, name, fn):
        self.callbacks.remove(fn)


def test_in_a_notebook_an_app_shows_first_and_computes_after_its_cell(monkeypatch):
    """Under Run All the app, with a "computing…" placeholder, is on screen before its
    work starts; the work runs right after the cell, before the next one."""
    from nbkit.widgets import app as A

    shell = type("Shell", (), {"events": _Events()})()
    monkeypatch.setattr(A, "_shell", lambda: shell)
    monkeypatch.delenv("NBKIT_STATIC", raising=False)
    app = A.App({}, compute=lambda: 7, build=lambda r: go.Figure(layout_title_text=f"r={r}"))
    assert app.result is None and len(shell.events.callbacks) == 1
    assert [a.text for a in app.figure.layout.annotations] == ["computing…"]
    shell.events.callbacks[0](None)  # the cell has finished
    assert app.result == 7 and app.figure.layout.title.text == "r=7"
    assert shell.events.callbacks == []  # once only


def test_outside_a_notebook_or_for_a_static_page_an_app_computes_at_once(monkeypatch):
    from nbkit.widgets import app as A

    assert A._shell() is None  # pytest is no kernel
    assert A.App({}, compute=lambda: 3, build=lambda r: go.Figure()).result == 3
    shell = type("Shell", (), {"events": _Events()})()
    monkeypatch.setattr(A, "_shell", lambda: shell)
    monkeypatch.setenv("NBKIT_STATIC", "1")
    assert A.App({}, compute=lambda: 4, build=lambda r: go.Figure()).result == 4
    assert shell.events.callbacks == []


def test_a_saved_notebook_keeps_apps_with_their_final_title_and_drops_dead_progress_bars():
    import nbformat

    from nbkit.gallery import WIDGET, _finish_widget_outputs

    def widget(model, text):
        return nbformat.v4.new_output("display_data",
                                      data={WIDGET: {"model_id": model}, "text/plain": text})

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        widget("bar", "sweep:   0%|"), widget("app", "[nbkit app: an interactive figure.]"),
        nbformat.v4.new_output("stream", text="done\n")])])
    final = "[nbkit app: Fig. 1. Run the notebook to use its controls.]"
    _finish_widget_outputs(nb, {"app": final})
    outputs = nb.cells[0].outputs
    assert [o.get("data", {}).get("text/plain", o.get("text")) for o in outputs] == [
        final, "done\n"]


def test_a_figure_no_browser_drew_is_drawn_again_as_a_fresh_widget():
    """A FigureWidget whose browser model failed to start stays blank; the app notices
    that no view reported drawing it and puts a fresh widget with the same figure in its
    place, a bounded number of times. A figure a view has drawn is left alone."""
    from nbkit.widgets import app as A

    app = A.App({}, compute=lambda: 2, build=lambda r: go.Figure(
        go.Scatter(x=[1, 2], y=[r, r]), layout_title_text="two"))
    box = app.widget
    assert not app.check_view(), "an app never displayed is not checked"
    app._repr_mimebundle_()  # displayed
    old = app.figure
    assert app.check_view() and app.figure is not old and app.redraws == 1
    assert app.figure in box.children and old not in box.children
    assert app.figure.layout.title.text == "two" and list(app.figure.data[0].y) == [2, 2]
    app.update()  # later results go to the new widget
    assert app.figure.data[0].y == (2, 2) and app.figure in box.children
    assert app.check_view() and app.redraws == A.VIEW_RETRIES
    assert not app.check_view(), "bounded: no endless redraws"

    drawn = A.App({}, compute=lambda: 1, build=lambda r: go.Figure(layout_title_text="x"))
    drawn._repr_mimebundle_()
    # what plotly's browser view sends once it has drawn the figure
    drawn.figure._js2py_layoutDelta = {"layout_delta": {}, "layout_edit_id": 0}
    assert drawn.figure_drawn and not drawn.check_view()


def test_the_view_check_runs_on_the_kernels_loop_after_the_first_result(monkeypatch):
    from nbkit.widgets import app as A

    class Loop:
        def __init__(self):
            self.calls = []

        def call_later(self, delay, fn):
            self.calls.append((delay, fn))

    loop = Loop()
    shell = type("Shell", (), {"events": _Events(),
                               "kernel": type("K", (), {"io_loop": loop})()})()
    monkeypatch.setattr(A, "_shell", lambda: shell)
    monkeypatch.delenv("NBKIT_STATIC", raising=False)
    app = A.App({}, compute=lambda: 1, build=lambda r: go.Figure(layout_title_text="t"))
    app._repr_mimebundle_()
    shell.events.callbacks[0](None)
    (delay, confirm), = loop.calls
    assert delay == A.VIEW_CHECK_S
    old = app.figure
    confirm()  # not drawn yet: look once more a moment later, then draw again
    (_, redraw) = loop.calls[-1]
    redraw()
    assert app.figure is not old and app.redraws == 1
