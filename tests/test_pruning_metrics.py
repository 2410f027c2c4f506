"""Layer density, collapse, effective density and disconnection on hand-built
networks, critical compression, and layer collapse on vgg16_bn as in the paper."""

import copy
import math

import pytest
import torch
from torch import nn

import nbkit
from nbkit import pruning


def _set_masks(model, masks):
    pruning.apply_masks(model, {n: torch.as_tensor(m, dtype=torch.bool) for n, m in masks.items()})
    return model


def two_layer():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3, bias=True), nn.ReLU(), nn.Linear(3, 2, bias=True))


def test_layer_density_and_collapse():
    model = two_layer()
    assert pruning.layer_density(model) == {"0.weight": 1.0, "2.weight": 1.0}
    assert not pruning.collapsed(model)
    m0 = torch.zeros(3, 4, dtype=torch.bool)
    m0[0, :2] = True
    _set_masks(model, {"0.weight": m0, "2.weight": torch.zeros(2, 3)})
    assert pruning.layer_density(model) == {"0.weight": pytest.approx(2 / 12), "2.weight": 0.0}
    assert pruning.collapsed(model) and pruning.disconnected(model)


def test_consecutive_layers_on_disjoint_neurons_disconnect():
    model = two_layer()
    m0 = torch.zeros(3, 4)
    m0[0] = 1  # only hidden neuron 0 receives input
    m2 = torch.zeros(2, 3)
    m2[:, 1] = 1  # only hidden neuron 1 sends output
    _set_masks(model, {"0.weight": m0, "2.weight": m2})
    assert not pruning.collapsed(model)
    assert pruning.disconnected(model)
    assert pruning.effective_density(model) == 0.0
    # the biases give the real network an output, but no path from the input
    assert model(torch.ones(1, 4)).abs().sum() > 0


def test_dangling_weights_do_not_count():
    model = two_layer()
    m0 = torch.zeros(3, 4)
    m0[0, :3] = 1  # neuron 0: three inputs, connected onward
    m0[2, 0] = 1  # neuron 2: one input, no way out
    m2 = torch.zeros(2, 3)
    m2[1, 0] = 1
    m2[0, 1] = 1  # from neuron 1, which has no input
    _set_masks(model, {"0.weight": m0, "2.weight": m2})
    eff = pruning.effective_masks(model)
    assert eff["0.weight"].sum() == 3 and eff["0.weight"][0, :3].all()
    assert eff["2.weight"].sum() == 1 and eff["2.weight"][1, 0]
    assert pruning.effective_density(model) == pytest.approx(4 / 18)
    assert not pruning.disconnected(model)


def test_conv_channels_through_pooling():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    model.input_shape = (1, 6, 6)
    m0 = torch.zeros(2, 1, 3, 3)
    m0[0] = 1  # only channel 0 sees the input
    m4 = torch.zeros(2, 2, 3, 3)
    m4[:, 1] = 1  # the next conv reads only channel 1
    _set_masks(model, {"0.weight": m0, "4.weight": m4})
    assert pruning.disconnected(model) and not pruning.collapsed(model)
    m4 = torch.zeros(2, 2, 3, 3)
    m4[1, 0, 0, 0] = 1  # one corner tap of channel 0, feeding output channel 1
    model2 = copy.deepcopy(model)
    pruning.remove(model2)
    _set_masks(model2, {"0.weight": m0.bool(), "4.weight": m4})
    eff = pruning.effective_masks(model2)
    assert eff["0.weight"].sum() == 9 and eff["4.weight"].sum() == 1
    assert eff["8.weight"][:, 1].all() and not eff["8.weight"][:, 0].any()


def test_a_residual_net_survives_a_collapsed_shortcut():
    nbkit.seed(0)
    model = nbkit.models.build("resnet20")
    name = "layers.3.shortcut.0.weight"
    shape = pruning.prunable_parameters(model)[name].shape
    _set_masks(model, {name: torch.zeros(shape)})
    assert pruning.collapsed(model)
    assert not pruning.disconnected(model)
    eff = pruning.effective_masks(model)
    assert not eff[name].any()
    assert all(m.all() for n, m in eff.items() if n != name)


def _reachability(mats):
    """Brute force on 0/1 matrices: which weights lie on an input-output path."""
    fwd = [torch.ones(mats[0].shape[1], dtype=torch.bool)]
    for m in mats:
        fwd.append((m.double() @ fwd[-1].double()) > 0)
    bwd = [torch.ones(mats[-1].shape[0], dtype=torch.bool)]
    for m in reversed(mats):
        bwd.insert(0, (m.double().T @ bwd[0].double()) > 0)
    return [m & torch.outer(bwd[i + 1], fwd[i]) for i, m in enumerate(mats)]


def test_deep_narrow_nets_match_brute_force_without_overflow():
    nbkit.seed(0)
    model = nbkit.models.build("mlp", input_shape=(1, 8, 8), depth=200, width=64, bias=False)
    assert pruning.effective_density(model) == 1.0  # 64^200 paths: beyond float64
    g = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=g) < 0.06
             for n, p in pruning.prunable_parameters(model).items()}
    _set_masks(model, masks)
    eff = pruning.effective_masks(model)
    expected = _reachability(list(masks.values()))
    assert all(torch.equal(eff[n], e) for n, e in zip(masks, expected))
    assert 0 < sum(int(e.sum()) for e in expected) < sum(int(m.sum()) for m in masks.values())


def test_unsupported_layers_are_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="'1' is a LayerNorm"):
        pruning.effective_density(model)


# ----------------------------------------------------------- critical compression

def test_critical_compression_bisects_the_grid():
    nbkit.seed(0)
    base = nbkit.models.build("mlp", input_shape=(1, 8, 8), depth=3, width=64)
    trials = []
    crit = pruning.critical_compression(base, "magnitude", trials=trials)
    n = sum(p.numel() for p in pruning.prunable_parameters(base).values())
    grid_max = 0.25 * int(4 * math.log10(n / 3))
    assert 0 < crit < grid_max
    assert len(trials) <= 6 and any(bad for _, bad in trials)
    at, above = copy.deepcopy(base), copy.deepcopy(base)
    pruning.prune(at, "magnitude", 10 ** -crit)
    pruning.prune(above, "magnitude", 10 ** -(crit + 0.25))
    assert not pruning.collapsed(at) and pruning.collapsed(above)
    assert pruning.critical_compression(lambda: copy.deepcopy(base), "synflow",
                                        iterations=20) == grid_max
    with pytest.raises(ValueError, match="criterion"):
        pruning.critical_compression(base, "synflow", criterion="bad")


# -------------------------------------------- layer collapse on vgg16_bn, 100 classes

@pytest.fixture(scope="module")
def vgg():
    nbkit.seed(0)
    return nbkit.models.build("vgg16_bn", num_classes=100)


@pytest.fixture(scope="module")
def synflow_1e5(vgg):
    model = copy.deepcopy(vgg)
    pruning.prune(model, "synflow", 1e-5, iterations=100)
    return model


@pytest.mark.slow
def test_magnitude_collapses_vgg16_at_1e3(vgg):
    model = copy.deepcopy(vgg)
    pruning.prune(model, "magnitude", 1e-3)
    assert pruning.collapsed(model)


@pytest.mark.slow
def test_synflow_100_does_not_collapse_vgg16_at_1e5(synflow_1e5):
    assert not pruning.collapsed(synflow_1e5)
    assert sum(pruning.masks(synflow_1e5)[n].sum().item() for n in pruning.masks(synflow_1e5)) \
        == round(1e-5 * 14_761_664)


@pytest.mark.slow
def test_synflow_stays_connected_where_single_shot_snip_disconnects(vgg, synflow_1e5):
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(100, 3, 32, 32, generator=g), torch.randint(0, 100, (100,), generator=g))
    snip = copy.deepcopy(vgg)  # disconnected before any layer is empty
    pruning.prune(snip, "snip", 10 ** -3.5, data=data, num_batches=1)
    assert pruning.disconnected(snip) and not pruning.collapsed(snip)
    snip_1e5 = copy.deepcopy(vgg)
    pruning.prune(snip_1e5, "snip", 1e-5, data=data, num_batches=1)
    assert pruning.disconnected(snip_1e5)
    assert not pruning.disconnected(synflow_1e5)
    assert pruning.effective_density(synflow_1e5) > 0.5e-5


@pytest.mark.slow
def test_critical_compression_of_synflow_on_vgg16(vgg):
    crit = pruning.critical_compression(vgg, "synflow", lo=5.5)
    assert crit is not None and crit >= 5.5
