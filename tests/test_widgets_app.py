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

