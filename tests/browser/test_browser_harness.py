"""The harness itself can fail: on a throwaway notebook with a figure that breaks when a
slider goes too far and a cell that raises, it must report each error with its notebook,
cell and text, report the cells that never ran, and follow a real key press to the kernel
and back to the drawn figure."""

from __future__ import annotations

import time

import nbformat
import pytest

pytestmark = pytest.mark.browser

NAME = "zz_harness_check"
APP = '''\
import ipywidgets as W
from nbkit.viz.style import new_figure
from nbkit.widgets import App

def compute(k):
    if k >= 4:
        raise ValueError(f"k = {k} breaks this figure on purpose")
    return k

def build(k):
    fig = new_figure(f"k = {k}", "x", "k x")
    fig.add_scatter(x=[0, 1, 2], y=[0, k, 2 * k], name="k x")
    return fig

app = App({"k": W.IntSlider(value=1, min=0, max=5, description="k")}, compute, build)
app'''


def _notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["nbkit"] = {"browser_figures": {"1": 1}}
    nb.cells = [nbformat.v4.new_markdown_cell("# A notebook that breaks on purpose"),
                nbformat.v4.new_code_cell(APP),
                nbformat.v4.new_code_cell('raise RuntimeError("this cell fails on purpose")'),
                nbformat.v4.new_code_cell('print("never runs")')]
    return nb


def _wait_for_error(nb, index, text, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        errors = nb.cells()[index].errors()
        if any(text in e for e in errors):
            return errors
        time.sleep(0.3)
    raise AssertionError(f"no error containing {text!r} appeared in cell {index}: "
                         f"{nb.cells()[index].outputs}")


def test_harness_reports_errors_and_follows_the_keyboard(jupyterlab, runs):
    path = jupyterlab.root / f"{NAME}.ipynb"
    nbformat.write(_notebook(), path)
    nb = runs.run(NAME, path)

    problems = "\n".join(nb.problems())
    assert f"{NAME}, cell 2 (In [2]) `raise RuntimeError(" in problems, problems
    assert "RuntimeError: this cell fails on purpose" in problems, problems
    assert "cells that did not run" in problems and "print(\"never runs\")" in problems, problems
    assert "`import ipywidgets as W` shows" not in problems, problems  # the app drew fine
    assert "found 0" not in problems, problems

    cell = nb.cells()[1]
    assert len(cell.good_plots()) == 1 and cell.good_plots()[0]["title"] == "k = 1"
    assert nb.settle(1)[0]["y"] == [0, 1, 2]

    handle = nb.control(1, ".widget-slider .noUi-handle")
    handle.focus()
    handle.press("ArrowRight")
    assert nb.settle(1)[0]["y"] == [0, 2, 4], "one ArrowRight on the slider must redraw k = 2"

    handle.press("End")  # k = 5: compute raises inside the widget callback
    _wait_for_error(nb, 1, "ValueError: k = 5 breaks this figure on purpose")
    problems = "\n".join(nb.problems())
    assert (f"{NAME}, cell 1 (In [1]) `import ipywidgets as W` shows an error" in problems
            and "ValueError: k = 5 breaks this figure on purpose" in problems), problems
    assert nb.settle(1)[0]["y"] == [0, 2, 4], "the last good figure must stay on screen"
