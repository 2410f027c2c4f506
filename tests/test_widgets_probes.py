"""The conservation-laws widgets, driven without a kernel: move a control, then check
that the figure and the printed verdict change as the theory says."""

from __future__ import annotations

import numpy as np
import pytest

from nbkit import probes
from nbkit.widgets import probes as probes_app


def _panel(fig, axis):
    return [t for t in fig.data if t.xaxis == axis]


def _units(fig):
    """(incoming, outgoing) of every hidden unit drawn in the Fig. 3 panel, signed."""
    pts = [np.asarray(t.customdata, dtype=float) for t in _panel(fig, "x")
           if t.customdata is not None]
    data = np.concatenate(pts)
    return data[:, 1], data[:, 2]


def _layer_totals(fig):
    (t,) = [t for t in _panel(fig, "x2") if t.name == "layer total"]
    return np.asarray(t.y, dtype=float)


@pytest.fixture
def app():
    return probes_app.conservation_app()  # results are cached: a fresh app costs a redraw


def test_default_net_conserves_both_laws(app):
    assert not app.messages
    assert "SynFlow" in app.figure.layout.title.text
    inc, out = _units(app.figure)
    assert len(inc) == 16 + 16 + 32 + 32              # hidden channels of the conv net
    np.testing.assert_allclose(inc, out, rtol=1e-9)
    totals = _layer_totals(app.figure)
    np.testing.assert_allclose(totals, totals[0], rtol=1e-9)
    assert app.figure.layout.shapes[0].y0 == pytest.approx(totals[0], rel=1e-9)
    assert "neuron-wise: holds" in app.caption.value
    assert "network-wise: holds" in app.caption.value


def test_biases_break_network_wise_only(app):
    app.controls["bias"].value = True
    assert "biases" in app.figure.layout.title.text
    inc, out = _units(app.figure)
    np.testing.assert_allclose(inc, out, rtol=1e-9)   # the bias counts as incoming
    totals = _layer_totals(app.figure)
    assert totals[-1] > totals[0] * (1 + 1e-3)        # biases add flow layer after layer
    assert "neuron-wise: holds" in app.caption.value
    assert "network-wise: breaks" in app.caption.value and "biases" in app.caption.value


def test_batchnorm_train_mode_breaks_the_loss_not_synflow(app):
    app.controls["batchnorm"].value = "train"
    # SynFlow evaluates the network in eval mode, so BatchNorm's mode cannot matter
    assert "holds" in app.caption.value and "breaks" not in app.caption.value
    app.controls["objective"].value = "loss"
    assert "loss" in app.figure.layout.title.text
    inc, out = _units(app.figure)
    assert not np.allclose(inc, out, rtol=1e-3)
    assert "neuron-wise: breaks" in app.caption.value
    assert "BatchNorm in train mode" in app.caption.value
    app.controls["batchnorm"].value = "eval"          # eval mode: an affine map, conserved
    inc, out = _units(app.figure)
    np.testing.assert_allclose(inc, out, rtol=1e-9)
    assert "breaks" not in app.caption.value


def test_residual_block_breaks_layers_but_not_cuts(app):
    app.controls["residual"].value = True
    assert "residual block" in app.figure.layout.title.text
    totals = _layer_totals(app.figure)
    assert not np.allclose(totals, totals[0], rtol=1e-6)
    (cut,) = [t for t in _panel(app.figure, "x2") if t.name == "cut total"]
    np.testing.assert_allclose(cut.y, app.figure.layout.shapes[0].y0, rtol=1e-9)
    assert "residual connection" in app.caption.value
    assert "over cuts: holds" in app.caption.value
    inc, out = _units(app.figure)
    np.testing.assert_allclose(inc, out, rtol=1e-9)   # the identity skip carries flow on


def test_tanh_and_magnitude_break_both_laws(app):
    app.controls["activation"].value = "tanh"
    assert "non-homogeneous activation" in app.caption.value
    inc, out = _units(app.figure)
    assert not np.allclose(inc, out, rtol=1e-3)
    app.controls["activation"].value = "leaky_relu"   # homogeneous again
    assert "breaks" not in app.caption.value
    app.controls["objective"].value = "magnitude"
    assert "magnitude" in app.caption.value and "breaks" in app.caption.value
    inc, out = _units(app.figure)
    assert (inc > 0).all() and not np.allclose(inc, out, rtol=1e-3)


def test_switching_to_the_mlp(app):
    app.controls["arch"].value = "mlp"
    assert "MLP" in app.figure.layout.title.text
    inc, _ = _units(app.figure)
    assert len(inc) == 2 * 32
    assert [t.name for t in _panel(app.figure, "x") if t.customdata is not None] == \
        ["hidden layer 1", "hidden layer 2"]


def test_compute_error_shows_and_the_app_keeps_working(app, monkeypatch):
    app.controls["residual"].value = True
    before = _layer_totals(app.figure)

    def broken(*args, **kwargs):
        raise ValueError("probe failed on purpose")

    monkeypatch.setattr(probes, "conservation_report", broken)
    app.controls["bias"].value = True                 # a setting never computed before
    assert "probe failed on purpose" in app.messages
    assert "probe failed on purpose" in app.caption.value
    np.testing.assert_allclose(_layer_totals(app.figure), before)   # last good figure stays
    monkeypatch.undo()
    app.controls["activation"].value = "leaky_relu"
    assert not app.messages and "biases" in app.caption.value


def test_fig4_app_slope_follows_the_objective_and_the_model():
    app = probes_app.fig4_app(model="vgg11_bn", models=("vgg11_bn", "resnet20"))
    assert "vgg11_bn" in app.figure.layout.title.text
    assert app.figure.layout.xaxis.type == "log" and app.figure.layout.yaxis.type == "log"
    pts = app.figure.data[-1]
    assert len(pts.x) == 9                            # 8 convs and the classifier
    # conserved: equal totals, so average x size is the same for every layer
    np.testing.assert_allclose(np.asarray(pts.x) * np.asarray(pts.y),
                               pts.x[0] * pts.y[0], rtol=1e-3)
    assert abs(app.result["points"]["slope"] + 1) < 0.01
    assert "-1.0" in app.caption.value
    app.controls["objective"].value = "magnitude"     # ½‖θ‖² is not conserved
    assert abs(app.result["points"]["slope"] + 1) > 0.2
    assert "magnitude" in app.figure.layout.title.text
    app.controls["objective"].value = "synflow"
    app.controls["model"].value = "resnet20"          # skips: single layers are not cuts
    assert "resnet20" in app.figure.layout.title.text
    assert abs(app.result["points"]["slope"] + 1) > 0.1
    assert not app.messages
