"""Figure builders of accuracy after pruning at init: dicts in, figures out."""

from __future__ import annotations

import numpy as np
import pytest

from nbkit.viz import style
from nbkit.viz import training as vt


def _curve(method, kind="live", **kw):
    return {"method": method, "log10_rho": [2.0, 1.0, 3.0], "top1": [50.0, 60.0, 10.0],
            "kind": kind, **kw}


def test_accuracy_figure_lines_per_kind_and_pruner_colours():
    curves = [_curve("synflow"), _curve("magnitude", "shuffled"),
              _curve("snip", "published", std=[1.0, 2.0, 3.0]), _curve("grasp", "full")]
    fig = vt.accuracy_figure(curves, dense=70.0, chance=10.0, note="quick run")
    assert fig.layout.title.text.startswith("Accuracy after training")
    assert fig.layout.xaxis.type == "log"
    assert "compression ratio" in fig.layout.xaxis.title.text
    assert "top-1" in fig.layout.yaxis.title.text and "%" in fig.layout.yaxis.title.text
    live, shuffled, published, full, dense, chance = fig.data
    # sorted by compression, x drawn as rho itself on a log axis
    np.testing.assert_allclose(live.x, [10.0, 100.0, 1000.0])
    np.testing.assert_allclose(live.y, [60.0, 50.0, 10.0])
    assert live.line.color == style.color_for("synflow") and live.line.dash == "solid"
    assert shuffled.line.dash == "dot" and "shuffle" in shuffled.name
    assert published.line.dash == style.PUBLISHED_DASH and published.name == "SNIP (published)"
    np.testing.assert_allclose(published.error_y.array, [2.0, 1.0, 3.0])
    assert full.name == "GraSP (nbkit, full scale)"
    assert dense.name == "dense" and set(dense.y) == {70.0}
    assert chance.name == "chance (10%)" and set(chance.y) == {10.0}
    assert "top-1 %{y:.2f}%" in live.hovertemplate
    assert fig.layout.annotations[0].text == "quick run"


def test_accuracy_figure_several_dense_lines_and_labels():
    fig = vt.accuracy_figure([_curve("random", label="mine")],
                             dense={"dense (nbkit)": 90.0, "dense (published)": 93.5})
    assert fig.data[0].name == "mine"
    assert [t.name for t in fig.data[1:]] == ["dense (nbkit)", "dense (published)"]
    assert fig.data[1].line.dash != fig.data[2].line.dash


def test_accuracy_figure_rejects_bad_curves():
    with pytest.raises(ValueError, match="2 compressions but 3 accuracies"):
        vt.accuracy_figure([{"method": "snip", "log10_rho": [1, 2], "top1": [1, 2, 3]}])
    with pytest.raises(ValueError, match="unknown curve kind"):
        vt.accuracy_figure([_curve("snip", kind="mystery")])
    with pytest.raises(ValueError, match="needs 'method'"):
        vt.accuracy_figure([{"top1": [1.0]}])


def test_shuffle_figure_pairs_bars_per_pruner():
    original = {"snip": 30.0, "synflow": 31.0, "magnitude": 10.0}
    shuffled = {"snip": 29.0, "synflow": 25.0}
    fig = vt.shuffle_figure(original, shuffled, log10_rho=2, dense=35.0, chance=10.0)
    assert "Layer-wise shuffle" in fig.layout.title.text and "10<sup>2</sup>" in \
        fig.layout.title.text
    mine, shuf = fig.data
    assert list(mine.x) == ["SNIP", "SynFlow"] == list(shuf.x)   # only pruners in both
    assert list(mine.y) == [30.0, 31.0] and list(shuf.y) == [29.0, 25.0]
    assert shuf.marker.pattern.shape == "/" and not mine.marker.pattern.shape
    assert list(mine.marker.color) == [style.color_for("snip"), style.color_for("synflow")]
    assert sorted(s.y0 for s in fig.layout.shapes) == [10.0, 35.0]
    with pytest.raises(ValueError, match="share no pruner"):
        vt.shuffle_figure({"snip": 1.0}, {"grasp": 1.0}, log10_rho=1)
