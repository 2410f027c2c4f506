"""The conservation laws break where the theory says, and the report names the cause;
on VGG-16-BN at init the average SynFlow score falls as 1 / layer size (Fig. 4)."""

import numpy as np
import pytest
import torch
from torch import nn

import nbkit
from nbkit import probes

SHAPE = (3, 8, 8)


def _batch(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *SHAPE, generator=g), torch.randint(0, 10, (n,), generator=g)


def _spread(values):
    values = np.array(list(values), dtype=float)
    return (values.max() - values.min()) / np.abs(values).max()


@pytest.mark.parametrize("objective", ["synflow", "loss"])
def test_biases_break_network_wise_but_not_neuron_wise(objective):
    nbkit.seed(0)
    model = nbkit.models.build("mlp", input_shape=SHAPE, depth=4, width=16, bias=True,
                               batchnorm=False)
    report = probes.conservation_report(model, objective, _batch())
    assert report["holds"], "biases are zero at init, so the laws hold"
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.bias.normal_(0, 0.5)
    report = probes.conservation_report(model, objective, _batch())
    assert report["neuron_holds"] and report["neuron"] <= 1e-9
    assert not report["network_holds"] and report["network"] > 1e-3
    assert _spread(report["layer_totals"].values()) > 1e-3
    assert report["cause"].startswith("biases (layers 1, 2, 3")  # numbered as figures do
    assert report["layers"][1] == "layers.0" and report["layers"][4] == "fc"
    assert "neuron-wise: holds" in str(report) and "network-wise: breaks" in str(report)


def test_batchnorm_in_train_mode_breaks_the_laws():
    nbkit.seed(0)
    model = nbkit.models.build("conv", input_shape=SHAPE, depth=3, width=4, bias=False,
                               batchnorm=True)
    model.eval()  # at init, eval-mode BatchNorm is a positive rescaling: the laws hold
    assert probes.conservation_report(model, "loss", _batch())["holds"]
    model.train()
    report = probes.conservation_report(model, "loss", _batch())
    assert not report["neuron_holds"] and report["neuron"] > 1e-3
    assert not report["holds"]
    assert "BatchNorm in train mode (after layers 1, 2, 3)" in report["cause"]
    # train-mode BatchNorm is scale invariant (up to its eps): a conv before it carries
    # almost no net saliency, while the classifier (no BatchNorm after it) does
    S = probes.saliency(model, "loss", _batch())
    first, second = S["layers.0.weight"], S["fc.weight"]
    assert abs(float(first.sum())) <= 1e-5 * float(first.abs().sum())
    assert abs(float(second.sum())) > 1e-3 * float(second.abs().sum())
    # SynFlow evaluates R in eval mode, so it is not affected by the model's mode
    assert probes.conservation_report(model, "synflow")["holds"]


class _Residual(nn.Module):
    """relu(a x) -> relu(h + c relu(b h)) -> d: one residual block with an identity skip."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(12, 8, bias=False)
        self.b = nn.Linear(8, 8, bias=False)
        self.c = nn.Linear(8, 8, bias=False)
        self.d = nn.Linear(8, 3, bias=False)

    def forward(self, x):
        h = torch.relu(self.a(x))
        h = torch.relu(h + self.c(torch.relu(self.b(h))))
        return self.d(h)


@pytest.mark.parametrize("objective", ["synflow", "loss"])
def test_a_residual_block_is_not_a_cut_layer_by_layer(objective):
    torch.manual_seed(0)
    model = _Residual()
    data = (torch.randn(5, 12), torch.randint(0, 3, (5,)))
    report = probes.conservation_report(model, objective, data, input_shape=(12,))
    assert not report["network_holds"] and report["network"] > 1e-3
    assert "residual connection: layers 2, 3 are not cuts by themselves" in report["cause"]
    assert [report["layers"][k] for k in (2, 3)] == ["b", "c"]
    assert report["neuron_holds"], "the skip carries its flow on: per-unit flows balance"
    # the cuts (a alone, d alone) still carry <dR/dx, x>
    assert list(report["cut_totals"]) == ["a.weight", "d.weight"]
    assert report["cut"] <= 1e-9
    np.testing.assert_allclose(list(report["cut_totals"].values()), report["input_flow"],
                               rtol=1e-9)
    flows = probes.neuron_flows(model, probes.saliency(model, objective, data,
                                                       input_shape=(12,)), input_shape=(12,))
    assert [f["layer"] for f in flows] == ["a+c", "b"]
    assert flows[0]["consumers"] == ["b", "d"]


def test_resnet_cuts_pair_each_main_path_layer_with_its_shortcut():
    model = nbkit.models.build("resnet20", input_shape=SHAPE)
    report = probes.conservation_report(model, "synflow")
    assert not report["network_holds"] and "residual connection" in report["cause"]
    assert report["neuron_holds"]
    cuts = report["cut_totals"]
    assert list(cuts) == [
        "stem.conv.weight",
        "layers.3.conv1.weight+layers.3.shortcut.0.weight",
        "layers.3.conv2.weight+layers.3.shortcut.0.weight",
        "layers.6.conv1.weight+layers.6.shortcut.0.weight",
        "layers.6.conv2.weight+layers.6.shortcut.0.weight",
        "fc.weight",
    ]
    np.testing.assert_allclose(list(cuts.values()), report["input_flow"], rtol=1e-9)
    assert report["cut"] <= 1e-9


@pytest.mark.parametrize("objective", ["synflow", "loss"])
def test_tanh_breaks_both_laws(objective):
    nbkit.seed(0)
    model = nbkit.models.build("mlp", input_shape=SHAPE, depth=3, width=16, bias=False,
                               batchnorm=False, activation="tanh")
    report = probes.conservation_report(model, objective, _batch())
    assert not report["neuron_holds"] and report["neuron"] > 1e-3
    assert not report["network_holds"] and report["network"] > 1e-3
    assert report["cause"].startswith("non-homogeneous activation (Tanh after layers 1, 2)")
    relu = nbkit.models.build("mlp", input_shape=SHAPE, depth=3, width=16, bias=False,
                              batchnorm=False, activation="leaky_relu")
    assert probes.conservation_report(relu, objective, _batch())["holds"]


def test_magnitude_has_no_flow_to_conserve():
    model = nbkit.models.build("mlp", input_shape=SHAPE, depth=3, width=8, bias=False)
    report = probes.conservation_report(model, "magnitude")
    assert not report["holds"] and "magnitude" in report["cause"]
    assert report["input_flow"] is None


def test_fig4_average_synflow_score_falls_as_one_over_layer_size():
    nbkit.seed(0)
    model = nbkit.models.build("vgg16_bn", num_classes=10)
    model.eval()
    S = probes.saliency(model, "synflow", device="cpu")
    points = probes.fig4_points(model, S)
    assert len(points["layer"]) == 14
    assert points["size"].tolist() == list(probes.layer_sizes(model).values())
    assert abs(points["slope"] - (-1)) < 0.05
    # more than the slope: each layer's total is the same flow R
    totals = np.array(list(probes.layer_totals(model, S).values()))
    np.testing.assert_allclose(totals, totals[0], rtol=1e-9)


def test_a_broken_network_law_reports_how_far_the_layer_totals_move():
    """With the loss and biases, signed scores make the residual (relative to the absolute
    saliency) small while the layer totals swing by tens of percent: the verdict says both."""
    from nbkit import studies

    report = studies.conservation.conservation(objective="loss", arch="mlp", bias=True)["report"]
    ratios = [t / report["input_flow"] for t in report["layer_totals"].values()]
    assert not report["network_holds"] and max(ratios) - min(ratios) > 0.1
    network = [line for line in str(report).splitlines() if line.startswith("network-wise")][0]
    assert f"from {min(ratios):.2f}× to {max(ratios):.2f}× the input flow" in network
