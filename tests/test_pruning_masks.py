"""Masks: prunable parameters, storage in torch.nn.utils.prune's layout, training,
state_dict, deepcopy, permanence, and models converted by a learning rule."""

import copy
import io

import pytest
import torch
from helpers import check_compiled_gradients
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune as torch_prune

import nbkit
from nbkit import pruning


def small_mlp(seed=0, **kw):
    nbkit.seed(seed)
    return nbkit.models.build("mlp", input_shape=(1, 4, 4), depth=3, width=12, **kw)


def small_conv(seed=0, **kw):
    nbkit.seed(seed)
    return nbkit.models.build("conv", input_shape=(3, 8, 8), depth=3, width=4, **kw)


# ----------------------------------------------------------------- prunable parameters

def test_default_prunable_are_linear_and_conv_weights_with_the_final_layer():
    model = nbkit.models.build("resnet20")
    names = list(pruning.prunable_parameters(model))
    expected = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert names == [f"{n}.weight" for n in expected]
    assert names[0] == "stem.conv.weight" and names[-1] == "fc.weight"
    assert any("shortcut" in n for n in names)
    assert sum(p.numel() for p in pruning.prunable_parameters(model).values()) == \
        nbkit.models.count_weights(model)


def test_prunable_options():
    model = small_conv(bias=True, batchnorm=True)
    base = list(pruning.prunable_parameters(model))
    with_bias = list(pruning.prunable_parameters(model, {"bias": True}))
    with_bn = list(pruning.prunable_parameters(model, {"batchnorm": True}))
    no_final = list(pruning.prunable_parameters(model, {"final": False}))
    assert set(with_bias) - set(base) == {n.replace("weight", "bias") for n in base}
    bn = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert set(with_bn) - set(base) == {f"{b}.{a}" for b in bn for a in ("weight", "bias")}
    assert no_final == base[:-1] and base[-1] == "fc.weight"
    named = pruning.prunable_parameters(model, ["layers.0.weight", "fc.bias"])
    assert list(named) == ["layers.0.weight", "fc.bias"]
    assert named["fc.bias"] is model.fc.bias


def test_prunable_rejects_bad_options():
    model = small_mlp()
    with pytest.raises(ValueError, match="valid options"):
        pruning.prunable_parameters(model, {"biases": True})
    with pytest.raises(ValueError, match="not a parameter"):
        pruning.prunable_parameters(model, ["layers.0.scale"])
    with pytest.raises(ValueError, match="no submodule"):
        pruning.prunable_parameters(model, ["nothere.weight"])


# ----------------------------------------------------------------------- storage

def test_masks_use_torch_prune_layout_and_public_names():
    model = small_mlp()
    w = model.fc.weight.detach().clone()
    mask = torch.rand_like(w) > 0.5
    pruning.apply_masks(model, {"fc.weight": mask})
    assert torch_prune.is_pruned(model)
    assert "fc.weight_orig" in dict(model.named_parameters())
    assert "fc.weight_mask" in model.state_dict()
    got = pruning.masks(model)
    assert list(got) == ["fc.weight"] and got["fc.weight"].dtype == torch.bool
    assert torch.equal(got["fc.weight"], mask)
    assert torch.equal(model.fc.weight, w * mask)
    assert torch.equal(model.fc.weight_orig, w * mask)  # masked entries zeroed


def test_masks_compose_monotonically():
    model = small_mlp()
    a = torch.rand(model.fc.weight.shape) > 0.3
    b = torch.rand(model.fc.weight.shape) > 0.3
    pruning.apply_masks(model, {"fc.weight": a})
    pruning.apply_masks(model, {"fc.weight": b})
    assert torch.equal(pruning.masks(model)["fc.weight"], a & b)


def test_torch_prune_masks_are_understood_and_composed():
    model = small_mlp()
    torch_prune.l1_unstructured(model.fc, "weight", amount=0.5)
    before = pruning.masks(model)["fc.weight"].clone()
    kept = pruning.prune(model, "magnitude", 0.1, prunable=["fc.weight"])["fc.weight"]
    assert not (kept & ~before).any()
    assert kept.sum() == round(0.1 * model.fc.weight.numel())


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=1e-2),
}


def _train(model, optimizer, steps, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn((8, *shape), generator=g)
        y = torch.randint(0, 10, (8,), generator=g)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def _assert_pruned_zero(model, masks, orig=True):
    """Masked weights are zero in ``module.weight``, and in ``weight_orig`` too unless an
    optimizer held momentum for them from before pruning (the forward masks them)."""
    for name, mask in masks.items():
        module, attr = pruning.locate(model, name)
        assert (getattr(module, attr)[~mask] == 0).all(), name
        if orig:
            assert (getattr(module, f"{attr}_orig")[~mask] == 0).all(), name


@settings(max_examples=10, deadline=None)
@given(kind=st.sampled_from(["mlp", "conv"]), opt=st.sampled_from(sorted(OPTIMIZERS)),
       density=st.floats(0.05, 0.9), seed=st.integers(0, 1000),
       before=st.booleans())
def test_pruned_weights_stay_zero_through_optimizer_steps(kind, opt, density, seed, before):
    model = small_mlp(seed) if kind == "mlp" else small_conv(seed)
    shape = model.input_shape
    optimizer = OPTIMIZERS[opt](model.parameters()) if before else None
    if before:  # momentum and Adam state exist before pruning
        _train(model, optimizer, 2, shape, seed)
    masks = pruning.prune(model, "magnitude", density)
    if optimizer is None:
        optimizer = OPTIMIZERS[opt](model.parameters())
    _train(model, optimizer, 3, shape, seed + 1)
    for name, mask in masks.items():  # reading .weight right after step()
        module, attr = pruning.locate(model, name)
        assert (getattr(module, attr)[~mask] == 0).all()
    out = model(torch.randn((2, *shape)))
    _assert_pruned_zero(model, masks, orig=not before)
    ref = copy.deepcopy(model)  # pruned models deep-copy after training
    for name, mask in masks.items():  # the forward computes with exact zeros
        module, attr = pruning.locate(ref, name)
        with torch.no_grad():
            getattr(module, f"{attr}_orig")[~mask] = 0.0
    assert torch.equal(ref(torch.zeros((1, *shape))), model(torch.zeros((1, *shape))))
    assert out.shape[0] == 2
    assert pruning.masks(model).keys() == masks.keys()


def test_pruned_weights_still_learn_where_kept():
    model = small_mlp()
    masks = pruning.prune(model, "magnitude", 0.3)
    before = model.fc.weight.detach().clone()
    _train(model, OPTIMIZERS["sgd"](model.parameters()), 2, model.input_shape)
    model(torch.randn(1, *model.input_shape))
    changed = model.fc.weight.detach() != before
    assert changed[masks["fc.weight"]].any() and not changed[~masks["fc.weight"]].any()


def test_a_pruned_model_compiles_to_one_graph_with_eager_gradients():
    """The masking hooks trace into the graph (a graph break per pruned layer made
    compiled training of a pruned vgg16_bn slower than eager): no break, the same
    gradients, zero gradient on pruned weights, and a deep copy after the step."""
    model = small_conv(3)
    masks = pruning.prune(model, "magnitude", 0.3)
    x = torch.randn(4, *model.input_shape)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    twin = check_compiled_gradients(model, masks, x, fullgraph=True)
    for name in masks:
        twin_module, attr = pruning.locate(twin, name)
        assert getattr(twin_module, attr).grad_fn is None  # detached after the forward
    assert torch.equal(copy.deepcopy(twin)(x), twin(x))


# ----------------------------------------------------------- state_dict and deepcopy

def test_state_dict_round_trip():
    model = small_conv()
    masks = pruning.prune(model, "magnitude", 0.2)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    x = torch.randn(3, *model.input_shape)
    model.eval()
    ref = model(x)

    fresh = small_conv(seed=5)  # unpruned, other weights
    pruning.load_state_dict(fresh, state)
    fresh.eval()
    assert torch.equal(fresh(x), ref)
    assert all(torch.equal(pruning.masks(fresh)[n], m) for n, m in masks.items())

    other = small_conv(seed=6)  # pruned differently
    pruning.prune(other, "random", 0.5)
    other.load_state_dict(state)
    other.eval()
    assert torch.equal(other(x), ref)


def test_deepcopy_then_reprune_then_remove_leaves_the_original_intact():
    model = small_conv()
    masks = pruning.prune(model, "magnitude", 0.5)
    x = torch.randn(2, *model.input_shape)
    model.eval()
    ref = model(x).detach().clone()
    clone = copy.deepcopy(model)
    again = pruning.prune(clone, "magnitude", 0.1)
    pruning.remove(clone)
    assert not torch_prune.is_pruned(clone)
    for name, mask in again.items():
        assert not (mask & ~masks[name]).any()
    assert torch.equal(model(x), ref)
    assert pruning.masks(model).keys() == masks.keys()


def test_remove_makes_masks_permanent():
    model = small_mlp()
    names = [n for n, _ in model.named_parameters()]
    masks = pruning.prune(model, "magnitude", 0.25)
    orig = model.fc.weight_orig
    pruning.remove(model)
    assert set(n for n, _ in model.named_parameters()) == set(names)
    assert model.fc.weight is orig and isinstance(model.fc.weight, nn.Parameter)
    assert pruning.masks(model) == {}
    assert torch.equal(model.fc.weight != 0, masks["fc.weight"] & (model.fc.weight != 0))
    assert (model.fc.weight[~masks["fc.weight"]] == 0).all()
    density = pruning.layer_density(model)
    assert density["fc.weight"] == pytest.approx(masks["fc.weight"].float().mean().item())


# ------------------------------------------------ models converted by a learning rule

class FeedbackLinear(nn.Linear):
    """Stands in for a layer converted by nbkit.rules: a subclass with an extra
    parameter and its own forward."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.feedback = nn.Parameter(torch.randn(self.in_features, self.out_features))

    def forward(self, x):
        return nn.functional.linear(x, self.weight, self.bias)


def _convert(model):
    for m in model.modules():
        if type(m) is nn.Linear:
            m.__class__ = FeedbackLinear
            m.feedback = nn.Parameter(torch.randn(m.in_features, m.out_features))
    return model


def test_converted_layers_prune_only_their_weight():
    model = _convert(small_mlp())
    names = list(pruning.prunable_parameters(model))
    assert names == ["layers.0.weight", "layers.2.weight", "fc.weight"]
    masks = pruning.prune(model, "synflow", 0.2)
    assert sum(int(m.sum()) for m in masks.values()) == round(
        0.2 * sum(m.numel() for m in masks.values()))
    assert not any(n.startswith("feedback") for n in pruning.masks(model))


def test_pruned_then_converted_model_keeps_its_masks_through_training():
    model = small_mlp()
    masks = pruning.prune(model, "magnitude", 0.2)
    _convert(model)
    _train(model, OPTIMIZERS["sgd"](model.parameters()), 3, model.input_shape)
    model(torch.randn(1, *model.input_shape))
    _assert_pruned_zero(model, masks)
