"""nbkit.rules: exact gradients, conversion, bad input, optimizer settings."""

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import nbkit
from nbkit import rules

ALL = rules.names()
# the rules with a per-layer B shaped like Wᵀ (direct feedback alignment sends the output
# error instead; tests/test_rules_dfa.py covers it)
LAYERWISE = [r for r in ALL if not rules.get(r).direct]
WITH_B = [r for r in LAYERWISE if r != "backprop"]


def _set_b_to_wt(layer):
    """Make the layer's B equal Wᵀ: copy W into the feedback, or (sign symmetry, whose B
    is sign(W)·scale) make W itself a sign pattern at that scale."""
    with torch.no_grad():
        if getattr(layer, "feedback", None) is not None:
            layer.feedback.copy_(layer.weight)
        elif isinstance(layer, rules.FeedbackLinear | rules.FeedbackConv2d):
            layer.weight.copy_(torch.sign(layer.weight) * layer._plan.sign_scale)


def _pair(layer, rule, seed=0):
    ref = copy.deepcopy(layer)
    conv = rules.convert(copy.deepcopy(layer), rule, seed=seed)
    return ref, conv


def _grads(layer, x, g):
    x = x.detach().clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    layer(x).backward(g)
    return x.grad, layer.weight.grad, layer.bias.grad if layer.bias is not None else None


conv_geometry = st.fixed_dictionaries({
    "c_in": st.integers(1, 4), "c_out": st.integers(1, 5), "k": st.integers(1, 4),
    "stride": st.integers(1, 3), "padding": st.integers(0, 2), "dilation": st.integers(1, 2),
    "size": st.integers(7, 11), "bias": st.booleans(),
})


def _conv(p):
    return nn.Conv2d(p["c_in"], p["c_out"], p["k"], stride=p["stride"], padding=p["padding"],
                     dilation=p["dilation"], bias=p["bias"]).double()


@pytest.mark.parametrize("rule", LAYERWISE)
@settings(max_examples=8, deadline=None)
@given(p=conv_geometry, seed=st.integers(0, 1000))
def test_conv_input_grad_equals_autograd_when_b_is_wt(rule, p, seed):
    torch.manual_seed(seed)
    layer = _conv(p)
    ref, conv = _pair(layer, rule, seed)
    _set_b_to_wt(conv)
    ref.load_state_dict({k: v for k, v in conv.state_dict().items() if k != "feedback"})
    x = torch.randn(3, p["c_in"], p["size"], p["size"], dtype=torch.float64)
    g = torch.randn_like(ref(x))
    for a, b in zip(_grads(conv, x, g), _grads(ref, x, g)):
        if a is not None or b is not None:
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("rule", LAYERWISE)
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7), (7,)])
def test_linear_input_grad_equals_autograd_when_b_is_wt(rule, shape):
    torch.manual_seed(1)
    ref, conv = _pair(nn.Linear(7, 4).double(), rule)
    _set_b_to_wt(conv)
    ref.load_state_dict({k: v for k, v in conv.state_dict().items() if k != "feedback"})
    x = torch.randn(*shape, dtype=torch.float64)
    g = torch.randn_like(ref(x))
    for a, b in zip(_grads(conv, x, g), _grads(ref, x, g)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("rule", WITH_B)
@settings(max_examples=6, deadline=None)
@given(p=conv_geometry, seed=st.integers(0, 1000))
def test_weight_grad_is_local_for_any_b(rule, p, seed):
    """δW = δy xᵀ whatever B is (here a random B, far from Wᵀ), and δx = B δy."""
    torch.manual_seed(seed)
    ref, conv = _pair(_conv(p), rule, seed)
    x = torch.randn(2, p["c_in"], p["size"], p["size"], dtype=torch.float64)
    g = torch.randn_like(ref(x))
    dx, dw, db = _grads(conv, x, g)
    _, dw_ref, db_ref = _grads(ref, x, g)
    torch.testing.assert_close(dw, dw_ref, atol=1e-9, rtol=1e-9)
    if db is not None:
        torch.testing.assert_close(db, db_ref, atol=1e-9, rtol=1e-9)
    # the input gradient is the transposed convolution with B's kernel
    kernel = rules.functions.feedback_kernel(conv._plan, conv.weight, conv.feedback)
    xx = x.clone().requires_grad_()
    out = F.conv2d(xx, kernel.detach(), None, conv.stride, conv.padding, conv.dilation)
    (expected,) = torch.autograd.grad(out, xx, g)
    torch.testing.assert_close(dx, expected, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("rule", [r for r in ALL if r != "backprop"])  # DFA included
def test_classifier_weight_grad_equals_backprop(rule):
    nbkit.seed(0)
    model = nbkit.models.build("conv", depth=2, width=4)
    ref = copy.deepcopy(model)
    rules.convert(model, rule, seed=0)
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    for m in (model, ref):
        F.cross_entropy(m(x), y).backward()
    assert torch.equal(model.fc.weight.grad, ref.fc.weight.grad)
    assert torch.equal(model.fc.bias.grad, ref.fc.bias.grad)
    # ... while the layers below the classifier receive a different δ (except sign symmetry
    # could by chance be close; it is never equal)
    assert not torch.equal(model.layers[0].weight.grad, ref.layers[0].weight.grad)


def test_padding_modes_and_same_padding_match_nn_conv2d():
    torch.manual_seed(0)
    for kw in ({"padding": "same", "kernel_size": 4}, {"padding": "same", "kernel_size": 3,
               "dilation": 2}, {"padding": 2, "padding_mode": "reflect", "kernel_size": 3},
               {"padding": "valid", "kernel_size": 3}, {"padding": 1, "padding_mode": "circular",
                                                        "kernel_size": 3}):
        layer = nn.Conv2d(2, 3, **kw).double()
        ref, conv = _pair(layer, "feedback_alignment")
        _set_b_to_wt(conv)
        x = torch.randn(2, 2, 9, 9, dtype=torch.float64)
        torch.testing.assert_close(conv(x), ref(x))
        g = torch.randn_like(ref(x))
        for a, b in zip(_grads(conv, x, g), _grads(ref, x, g)):
            torch.testing.assert_close(a, b)
    unbatched = rules.convert(nn.Conv2d(2, 3, 3), "feedback_alignment")
    assert unbatched(torch.randn(2, 8, 8)).shape == (3, 6, 6)


# ---------------------------------------------------------------------- angles at start

def test_fa_angle_of_wide_layer_starts_near_90():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 512))
    rules.convert(model, "feedback_alignment", seed=3)
    for value in rules.alignment_angles(model).values():
        assert abs(value - 90) < 5
    ratios = rules.norm_ratios(model)
    assert all(abs(r - 1) < 0.01 for r in ratios.values())  # ‖B‖ matched to ‖W‖


def test_sign_symmetry_angle_starts_near_37_for_gaussian_w():
    torch.manual_seed(0)
    layer = nn.Linear(512, 512)
    nn.init.normal_(layer.weight, std=0.05)
    rules.convert(layer, "sign_symmetry")
    (value,) = rules.alignment_angles(layer).values()
    assert abs(value - math.degrees(math.acos(math.sqrt(2 / math.pi)))) < 1.0
    (ratio,) = rules.norm_ratios(layer).values()
    assert abs(ratio - 1) < 1e-3


def test_backprop_and_unconverted_layers_report_zero():
    model = nbkit.models.build("conv", depth=2, width=4)
    assert all(v == 0 for v in rules.alignment_angles(model).values())
    assert all(abs(v - 1) < 1e-6 for v in rules.norm_ratios(model).values())
    assert set(rules.alignment_angles(model)) == {"layers.0", "layers.3", "fc"}


# -------------------------------------------------------------------------- bad input

def test_unknown_rule_lists_valid_ones():
    with pytest.raises(ValueError, match="symmetric_alignment") as e:
        rules.convert(nn.Linear(2, 2), "feedback_alignmnet")
    assert "kolen_pollack" in str(e.value)


def test_unknown_coefficient_is_an_error():
    with pytest.raises(ValueError, match="gamma"):
        rules.convert(nn.Linear(2, 2), "symmetric_alignment", gamma=1.0)
    with pytest.raises(ValueError, match="alpha"):
        rules.convert(nn.Linear(2, 2), "feedback_alignment", alpha=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        rules.convert(nn.Linear(2, 2), "kolen_pollack", alpha=-1.0)
    with pytest.raises(ValueError, match="preset"):
        rules.convert(nn.Linear(2, 2), "kolen_pollack", preset="fast")
    with pytest.raises(ValueError, match="learned"):
        rules.convert(nn.Linear(2, 2), "feedback_alignment", feedback_lr=1.0)


def test_coefficients_override_defaults():
    layer = rules.convert(nn.Linear(2, 2), "information_alignment", beta=0.5)
    assert layer.coefficients["beta"] == 0.5 and layer.coefficients["alpha"] == 2e-3
    assert layer._plan.null == 0.5 and layer._plan.amp == 2e-3 and layer._plan.decay == 1e-3
    assert rules.resolve("weight_mirror")["samples"] == 64
    assert rules.convert(nn.Linear(2, 2), "weight_mirror", samples=None)._plan.samples is None
    with pytest.raises(ValueError, match="samples"):
        rules.convert(nn.Linear(2, 2), "activation_alignment", samples=0)
    quick = rules.convert(nn.Linear(2, 2), "symmetric_alignment", preset="quick", beta=0.3)
    assert quick.coefficients == {"alpha": rules.QUICK["symmetric_alignment"]["alpha"],
                                  "beta": 0.3}


def test_grouped_conv_is_named_or_left_on_backprop():
    model = nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3, groups=2),
                          nn.Flatten(), nn.LazyLinear(3))
    model(torch.randn(1, 4, 9, 9))
    with pytest.raises(ValueError, match=r"2 \(Conv2d\): groups=2"):
        rules.convert(model, "feedback_alignment")
    assert type(model[0]) is nn.Conv2d  # nothing was converted
    with pytest.warns(UserWarning, match="groups=2"):
        rules.convert(model, "feedback_alignment", strict=False)
    assert isinstance(model[0], rules.FeedbackConv2d)
    assert type(model[2]) is nn.Conv2d and isinstance(model[4], rules.FeedbackLinear)
    assert rules.alignment_angles(model)["2"] == 0.0


def test_conv1d_is_unsupported():
    with pytest.raises(ValueError, match="Conv1d"):
        rules.convert(nn.Sequential(nn.Conv1d(2, 2, 3)), "sign_symmetry")


def test_converting_twice_does_not_stack():
    model = nbkit.models.build("conv", depth=2, width=4)
    rules.convert(model, "feedback_alignment", seed=0)
    rules.convert(model, "symmetric_alignment", seed=1)
    assert type(model.fc) is rules.FeedbackLinear and model.fc.rule == "symmetric_alignment"
    names = [n for n, _ in model.named_parameters()]
    assert names.count("fc.feedback") == 1 and len(names) == len(set(names))
    assert model.fc.feedback.requires_grad
    rules.convert(model, "sign_symmetry")
    assert model.fc.feedback is None and "fc.feedback" not in dict(model.named_parameters())


@pytest.mark.parametrize("how", ["unconvert", "backprop"])
def test_unconvert_restores_exact_backprop(how):
    nbkit.seed(0)
    model = nbkit.models.build("conv", depth=2, width=4)
    ref = copy.deepcopy(model)
    keys = list(model.state_dict())
    rules.convert(model, "symmetric_alignment", feedback_lr=0.5, seed=0)
    assert model.fc.feedback.optim == {"weight_decay": 0.0, "lr": 0.5}
    rules.unconvert(model) if how == "unconvert" else rules.convert(model, "backprop")
    assert list(model.state_dict()) == keys
    assert type(model.fc) is nn.Linear and type(model.layers[0]) is nn.Conv2d
    assert not hasattr(model.fc.weight, "optim") and not hasattr(model.fc, "feedback")
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    for m in (model, ref):
        F.cross_entropy(m(x), y).backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p.grad, q.grad)
    assert rules.rule_of(model) == "backprop"


def test_no_weight_layer_is_an_error():
    with pytest.raises(ValueError, match="no Linear or Conv2d"):
        rules.convert(nn.Sequential(nn.ReLU()), "feedback_alignment")


# ---------------------------------------------------------- optimizer settings and copies

def test_feedback_is_a_parameter_with_its_own_optimizer_settings():
    model = nbkit.models.build("conv", depth=2, width=4)
    rules.convert(model, "symmetric_alignment", feedback_lr=0.5)
    params = dict(model.named_parameters())
    assert isinstance(params["layers.0.feedback"], nn.Parameter)
    assert params["fc.feedback"].optim == {"weight_decay": 0.0, "lr": 0.5}
    groups = rules.param_groups(model, lr=0.1, weight_decay=5e-4)
    fb = [g for g in groups if any(p is params["fc.feedback"] for p in g["params"])]
    assert len(fb) == 1 and fb[0]["lr"] == 0.5 and fb[0]["weight_decay"] == 0.0
    assert len(fb[0]["params"]) == 3
    main = [g for g in groups if g is not fb[0]]
    assert main[0]["weight_decay"] == 5e-4 and main[0]["lr"] == 0.1
    # a separate optimizer for B
    assert rules.feedback_parameters(model) == fb[0]["params"]
    without = rules.param_groups(model, 0.1, feedback=False)
    assert sum(len(g["params"]) for g in without) == len(params) - 3
    # the training loop builds the same groups from the optim dicts
    from nbkit import train
    assert [len(g["params"]) for g in train.param_groups(model, 0.1, 5e-4)] == \
        [len(g["params"]) for g in groups]


def test_fa_b_is_fixed_and_not_optimised():
    model = rules.convert(nbkit.models.build("mlp", depth=2, width=8), "feedback_alignment")
    assert not model.fc.feedback.requires_grad
    assert rules.feedback_parameters(model) == []
    ids = {id(p) for g in rules.param_groups(model, 0.1) for p in g["params"]}
    assert id(model.fc.feedback) not in ids


def test_deepcopy_keeps_rule_and_optimizer_settings():
    model = nbkit.models.build("conv", depth=2, width=4)
    rules.convert(model, "information_alignment", feedback_lr=0.3, feedback_optimizer="adam")
    twin = copy.deepcopy(model)
    assert twin.fc.feedback is not model.fc.feedback
    assert torch.equal(twin.fc.feedback, model.fc.feedback)
    assert twin.fc.feedback.optim == {"weight_decay": 0.0, "lr": 0.3, "optimizer": "adam"}
    assert not hasattr(twin.fc.weight, "optim")
    assert twin.fc.rule == "information_alignment"
    assert rules.rule_of(twin) == "information_alignment"


def test_seed_makes_b_repeat():
    a = rules.convert(nbkit.models.build("conv", depth=2, width=4), "feedback_alignment", seed=5)
    b = rules.convert(nbkit.models.build("conv", depth=2, width=4), "feedback_alignment", seed=5)
    # the same draw, scaled to each model's own ‖W‖
    assert float(rules.angle(a.fc.feedback, b.fc.feedback)) < 1e-3
    nbkit.seed(1)
    c = rules.convert(nbkit.models.build("conv", depth=2, width=4), "feedback_alignment")
    nbkit.seed(1)
    d = rules.convert(nbkit.models.build("conv", depth=2, width=4), "feedback_alignment")
    assert torch.equal(c.layers[0].feedback, d.layers[0].feedback)


# ------------------------------------------------------------------- pruned models

def test_pruned_layers_convert_and_stay_masked():
    from torch.nn.utils import parametrize, prune

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    prune.random_unstructured(model[0], "weight", amount=0.5)

    class Mask(nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w):
            return w * self.mask

    mask2 = (torch.rand(3, 5) > 0.5).float()
    parametrize.register_parametrization(model[2], "weight", Mask(mask2))
    rules.convert(model, "symmetric_alignment", seed=0)
    assert isinstance(model[0], nn.Linear) and isinstance(model[2], nn.Linear)
    assert parametrize.is_parametrized(model[2], "weight")
    x = torch.randn(4, 6)
    model(x).sum().backward()
    assert torch.all(model[2].parametrizations.weight.original.grad[mask2 == 0] == 0)
    assert torch.all(model[0].weight_orig.grad[model[0].weight_mask == 0] == 0)
    assert torch.equal(model[2].weight, model[2].parametrizations.weight.original * mask2)
    twin = copy.deepcopy(model[2])  # (prune's hook-made .weight cannot be deep-copied)
    twin(torch.randn(2, 5)).sum().backward()
    assert twin.rule == "symmetric_alignment" and twin.feedback.grad is not None
    rules.unconvert(model)
    assert type(model[2]).__bases__[0] is nn.Linear and type(model[0]) is nn.Linear
    assert torch.equal(model[2].weight, model[2].parametrizations.weight.original * mask2)


# ------------------------------------------------------------------ autocast, compile

@pytest.mark.parametrize("rule", ["feedback_alignment", "sign_symmetry", "information_alignment"])
def test_bf16_autocast_matches_float32(rule):
    nbkit.seed(0)
    # (no BatchNorm: a conv bias before BN has a true gradient of ~0, all rounding noise)
    model = nbkit.models.build("conv", depth=2, width=8, batchnorm=False)
    rules.convert(model, rule, seed=0)
    twin = copy.deepcopy(model)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    F.cross_entropy(model(x), y).backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = twin(x)
    assert out.dtype == torch.bfloat16
    F.cross_entropy(out.float(), y).backward()
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        if p.grad is None:
            assert q.grad is None
            continue
        assert q.grad.dtype == torch.float32
        cos = F.cosine_similarity(p.grad.flatten(), q.grad.flatten(), dim=0)
        assert cos > 0.97, (n, cos)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["symmetric_alignment", "weight_mirror", "sign_symmetry"])
def test_compiled_model_matches_eager(rule):
    """torch.compile traces the rule's autograd function in one graph (no graph break)
    and gives the eager gradients. (The aot_eager backend keeps this test fast; inductor
    gives the same gradients but takes minutes to compile on a 2-core CPU.)"""
    torch._dynamo.reset()
    nbkit.seed(0)
    model = rules.convert(nbkit.models.build("conv", depth=2, width=4), rule, seed=0)
    twin = copy.deepcopy(model)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    torch.manual_seed(1)
    F.cross_entropy(model(x), y).backward()
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F.cross_entropy(compiled(x), y).backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------ gradient angle

def test_gradient_angles_zero_for_b_equal_wt_and_leave_state_alone():
    nbkit.seed(0)
    model = nbkit.models.build("conv", depth=2, width=4)
    rules.convert(model, "symmetric_alignment", seed=0)
    batch = (torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    angles = rules.gradient_angles(model, batch)
    assert set(angles) == {"layers.0", "layers.3", "fc"}
    assert all(v > 30 for v in angles.values())  # random B's, far from Wᵀ
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    for m in model.modules():
        if getattr(m, "feedback", None) is not None:
            _set_b_to_wt(m)
    assert all(v < 1e-3 for v in rules.gradient_angles(model, batch).values())


@pytest.mark.slow
def test_compiled_model_under_bf16_autocast_matches_eager():
    torch._dynamo.reset()
    nbkit.seed(0)
    model = nbkit.models.build("conv", depth=2, width=4, batchnorm=False)
    rules.convert(model, "kolen_pollack", seed=0)
    twin = copy.deepcopy(model)
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    for m in (model, compiled):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
        assert out.dtype == torch.bfloat16
        F.cross_entropy(out.float(), y).backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-3, rtol=1e-2)
