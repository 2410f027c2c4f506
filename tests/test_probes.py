"""The conservation laws hold where the theory says: bias-free ReLU nets, float64.

Tolerances are relative: for SynFlow every saliency is positive, so the plain relative
error is used; for a random loss the saliencies have both signs, so the error is taken
relative to the summed magnitude of the terms (what rounding scales with).
"""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import nbkit
from nbkit import probes

RTOL = 1e-9
SHAPE = (3, 8, 8)


def _model(kind, depth, width, seed, pool="max"):
    nbkit.seed(seed)
    if kind == "mlp":
        return nbkit.models.build("mlp", input_shape=SHAPE, depth=depth, width=width,
                                  bias=False, batchnorm=False)
    return nbkit.models.build("conv", input_shape=SHAPE, depth=depth, width=width,
                              bias=False, batchnorm=False, pool=pool)


def _batch(seed, n=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *SHAPE, generator=g), torch.randint(0, 10, (n,), generator=g)


def _input_flow(model, objective, data):
    """<dR/dx, x>, computed here from scratch: on the |θ| network with an all-ones input
    for SynFlow, on the batch for the loss."""
    m = copy.deepcopy(model).double()
    if objective == "synflow":
        m.eval()
        with torch.no_grad():
            for t in [*m.parameters(), *m.buffers()]:
                if t.is_floating_point():
                    t.abs_()
        x = torch.ones(1, *SHAPE, dtype=torch.float64, requires_grad=True)
        r = m(x).sum()
    else:
        x = data[0].double().requires_grad_(True)
        r = nn.functional.cross_entropy(m(x), data[1])
    (g,) = torch.autograd.grad(r, [x])
    x = x.detach()
    return float((g * x).sum()), float((g * x).abs().sum())


def _check_laws(model, objective, data):
    S = probes.saliency(model, objective, data, device="cpu")
    flows = probes.neuron_flows(model, S)
    assert len(flows) == sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules()) - 1
    for f in flows:
        inc, out, scale = f["incoming"], f["outgoing"], f["scale"]
        # On the |θ| network every unit carries flow. Under a loss a narrow layer can be
        # all dead on the batch, where incoming = outgoing = 0 holds trivially.
        assert scale.max() > 0 or objective == "loss"
        if objective == "synflow":
            assert (inc > 0).all()
            np.testing.assert_allclose(inc, out, rtol=RTOL, atol=0)
        else:
            assert (np.abs(inc - out) <= RTOL * scale).all(), f["layer"]
    flow, flow_abs = _input_flow(model, objective, data)
    totals = probes.layer_totals(model, S)
    assert len(totals) == len(flows) + 1
    for name, total in totals.items():
        scale = max(float(S[name].abs().sum()), flow_abs)
        assert abs(total - flow) <= RTOL * scale, (name, total, flow)
    if objective == "synflow":
        assert flow > 0 and abs(total - flow) <= RTOL * flow


laws = settings(max_examples=20, deadline=None)


@laws
@given(depth=st.integers(2, 5), width=st.integers(2, 24), seed=st.integers(0, 10_000),
       objective=st.sampled_from(["synflow", "loss"]))
def test_conservation_in_bias_free_relu_mlps(depth, width, seed, objective):
    _check_laws(_model("mlp", depth, width, seed), objective, _batch(seed))


@laws
@given(depth=st.integers(1, 4), width=st.integers(1, 6), seed=st.integers(0, 10_000),
       pool=st.sampled_from(["max", "avg"]), objective=st.sampled_from(["synflow", "loss"]))
def test_conservation_in_bias_free_relu_convnets(depth, width, seed, pool, objective):
    model = _model("conv", depth, width, seed, pool)
    assert any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.modules()) == \
        (depth >= 2)
    _check_laws(model, objective, _batch(seed))


def test_report_says_the_laws_hold_on_a_bias_free_convnet():
    model = _model("conv", 4, 4, 0, "avg")
    for objective in ("synflow", "loss"):
        report = probes.conservation_report(model, objective, _batch(0), device="cpu")
        assert report["holds"] and report["cause"] is None
        assert report["neuron"] <= RTOL and report["network"] <= RTOL
        assert str(report).startswith("neuron-wise: holds to ")
        assert "network-wise: holds to " in str(report)


def test_neuron_flows_group_a_flattened_conv_by_channel():
    # conv -> relu -> maxpool -> flatten -> linear: the Linear's columns are per channel
    nbkit.seed(3)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, bias=False), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5 * 4 * 4, 6, bias=False),
                          nn.ReLU(), nn.Linear(6, 2, bias=False))
    S = probes.saliency(model, "loss", (torch.randn(4, *SHAPE), torch.randint(0, 2, (4,))),
                        input_shape=SHAPE)
    flows = probes.neuron_flows(model, S, input_shape=SHAPE)
    assert [f["layer"] for f in flows] == ["0", "4"]
    assert flows[0]["consumers"] == ["4"]
    expected_out = S["4.weight"].reshape(6, 5, 16).sum((0, 2)).numpy()
    np.testing.assert_allclose(flows[0]["outgoing"], expected_out, rtol=1e-12)
    np.testing.assert_allclose(flows[0]["incoming"], S["0.weight"].sum((1, 2, 3)).numpy(),
                               rtol=1e-12)
    assert np.abs(flows[0]["incoming"] - flows[0]["outgoing"]).max() <= \
        RTOL * flows[0]["scale"].max()


def _snapshot(model):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            {n: m.training for n, m in model.named_modules()},
            {n: (p.requires_grad, None if p.grad is None else p.grad.clone())
             for n, p in model.named_parameters()},
            {k: v.dtype for k, v in model.state_dict().items()})


def test_probes_do_not_change_the_model():
    nbkit.seed(1)
    model = nbkit.models.build("conv", input_shape=SHAPE, depth=3, width=4, bias=True,
                               batchnorm=True)
    model.train()
    model.layers[1].eval()  # a mix of modes must survive
    model.layers[0].weight.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 7.0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
    before = _snapshot(model)
    data = _batch(1)
    for objective in ("synflow", "loss", "magnitude", lambda m: m(data[0]).pow(2).sum()):
        S = probes.saliency(model, objective, data)
        probes.layer_totals(model, S, by="cut")
        probes.neuron_flows(model, S)
        probes.fig4_points(model, S)
        probes.conservation_report(model, objective, data)
    after = _snapshot(model)
    for b, a in zip(before[0].values(), after[0].values()):
        assert torch.equal(b, a)
    assert before[1] == after[1] and before[3] == after[3]
    for n, (rg, grad) in before[2].items():
        rg2, grad2 = after[2][n]
        assert rg == rg2
        assert (grad is None and grad2 is None) or torch.equal(grad, grad2)


def test_probes_on_a_pruned_model_use_the_unpruned_names():
    model = _model("conv", 4, 4, 2, "max")
    nbkit.pruning.prune(model, "random", density=0.4)
    names = [n for n, _ in model.named_parameters()]
    assert "layers.0.weight_orig" in names
    before, weight = _snapshot(model), model.layers[0].weight
    S = probes.saliency(model, "synflow")
    assert list(S) == [n.replace("_orig", "") for n in names]
    kept = nbkit.pruning.masks(model)
    for name, mask in kept.items():
        assert (S[name][~mask] == 0).all() and (S[name][mask] > 0).any()
    x, y = _batch(2)
    batches = ((x[i:i + 2], y[i:i + 2]) for i in range(0, 4, 2))  # a one-shot iterator
    report = probes.conservation_report(model, "loss", batches)
    assert report["holds"], str(report)  # a pruned bias-free ReLU net still conserves
    assert model.layers[0].weight is weight  # pruning's hook attribute is put back
    after = _snapshot(model)
    assert all(torch.equal(b, a) for b, a in zip(before[0].values(), after[0].values()))
    assert list(before[0]) == list(after[0])


def test_saliency_keys_dtype_and_magnitude():
    model = _model("mlp", 3, 8, 0)
    S = probes.saliency(model, "magnitude", dtype=torch.float32, device="cpu")
    assert list(S) == [n for n, _ in model.named_parameters()]
    for n, p in model.named_parameters():
        assert S[n].dtype == torch.float32 and S[n].device.type == "cpu"
        torch.testing.assert_close(S[n], p.detach() ** 2)


def test_saliency_of_a_callable_objective_and_multiple_batches():
    model = _model("mlp", 3, 8, 0)
    x, y = _batch(0, 6)
    two = probes.saliency(model, "loss", [(x[:3], y[:3]), (x[3:], y[3:])])
    m = copy.deepcopy(model).double()
    loss = (nn.functional.cross_entropy(m(x[:3].double()), y[:3])
            + nn.functional.cross_entropy(m(x[3:].double()), y[3:]))
    grads = torch.autograd.grad(loss, list(m.parameters()))
    for (n, p), g in zip(m.named_parameters(), grads):
        torch.testing.assert_close(two[n], g * p)
    # a callable gets a float64 copy; its float32 inputs are converted
    S = probes.saliency(model, lambda net: net(x).sum())
    assert S["fc.weight"].dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_saliency_on_the_gpu_matches_the_cpu():
    model = _model("conv", 3, 4, 0)
    cpu = probes.saliency(model, "synflow", device="cpu")
    gpu = probes.saliency(model, "synflow", device="cuda")
    for n in cpu:
        assert gpu[n].device.type == "cuda"
        torch.testing.assert_close(gpu[n].cpu(), cpu[n], rtol=1e-9, atol=0)
    flows = probes.neuron_flows(model, cpu, device="cuda")
    for f, g in zip(flows, probes.neuron_flows(model, gpu)):
        np.testing.assert_allclose(f["incoming"], g["incoming"], rtol=1e-9)
    report = probes.conservation_report(model, "synflow", device="cuda")
    assert report["holds"]


# ------------------------------------------------------------------------- errors

class _LayerNormBetween(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2)

    def forward(self, x):
        return self.b(self.norm(self.a(x)))


class _ConcatBetween(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(6, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.b(torch.cat([h, h], 1))


def test_an_unsupported_layer_between_prunable_layers_is_named():
    model = _LayerNormBetween()
    S = probes.saliency(model, "magnitude")
    with pytest.raises(ValueError, match=r"'norm' \(LayerNorm\) between 'a' and 'b'"):
        probes.neuron_flows(model, S, input_shape=(4,))
    with pytest.raises(ValueError, match="'norm'"):
        probes.conservation_report(model, "synflow", input_shape=(4,))
    with pytest.raises(ValueError, match=r"concatenation \(torch.cat\)"):
        probes.neuron_flows(_ConcatBetween(), probes.saliency(_ConcatBetween(), "magnitude"),
                            input_shape=(4,))


def test_an_objective_that_is_not_a_scalar_says_so():
    model = _model("mlp", 2, 4, 0)
    with pytest.raises(ValueError, match="scalar"):
        probes.saliency(model, lambda m: m(torch.ones(2, *SHAPE)))
    with pytest.raises(ValueError, match="scalar"):
        probes.saliency(model, lambda m: 3.0)


def test_bad_arguments_raise_clear_errors():
    model = _model("mlp", 2, 4, 0)
    with pytest.raises(ValueError, match="unknown objective"):
        probes.saliency(model, "snap")
    with pytest.raises(ValueError, match="needs data"):
        probes.saliency(model, "loss")
    with pytest.raises(ValueError, match="by must be"):
        probes.layer_totals(model, probes.saliency(model, "magnitude"), by="block")
    with pytest.raises(ValueError, match="no entry"):
        probes.layer_totals(model, {})
    with pytest.raises(ValueError, match="no prunable layer"):
        probes.layer_totals(nn.Sequential(nn.ReLU()), {})
