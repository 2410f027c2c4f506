"""Regressions for models outside nbkit's own families: each failure a user met is either
handled properly or refused with an error that names the layer and says what to do."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import check_compiled_gradients
from torch import nn
from zoo import SHAPE, build

import nbkit
from nbkit import layers, pruning, rules


def _images(n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=g), torch.arange(n) % 10


def _dataset():
    x, y = _images(16)
    return nbkit.data.from_tensors(x, y, x[:8], y[:8], classes=[str(i) for i in range(10)])


def _attention(model):
    return [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]


# --------------------------------------------------------------------- transformers

def test_a_pruned_transformer_trains_every_attention_projection():
    """Multi-head attention reads out_proj.weight (and its fused input projection) without
    calling a hooked forward: its masks must still hold and its weights still learn."""
    model = build("transformer")
    masks = pruning.prune(model, "magnitude", 0.5)
    attn = _attention(model)
    assert attn and all(f"{n}.in_proj_weight" in masks and f"{n}.out_proj.weight" in masks
                        for n, m in model.named_modules() if m in attn)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    nbkit.train.fit(model, _dataset(), steps=2, batch_size=8, augment=False, progress=False,
                    lr=0.05)
    for name, mask in masks.items():
        if "in_proj" not in name and "out_proj" not in name:
            continue
        orig = dict(model.named_parameters())[f"{name}_orig"]
        moved = orig.detach() != before[f"{name}_orig"]
        assert bool(moved[mask].all()), f"{name}: a surviving weight did not train"
        module, attr = pruning.locate(model, name)
        assert not getattr(module, attr)[~mask].any(), f"{name}: a pruned weight regrew"
        assert not orig[~mask].any()


@pytest.mark.parametrize("grad", [False, True])
def test_a_checkpoint_loaded_into_a_pruned_transformer_is_used_at_once(grad):
    """Eval without grad takes the transformer layer's fast path, which reads attention's
    weights directly; with grad the module path. Both use the loaded weights."""
    a, b = build("transformer", seed=0), build("transformer", seed=1)
    pruning.prune(a, "magnitude", 0.5)
    pruning.prune(b, "random", 0.5)
    x = _images(4)[0]
    b.eval()
    with torch.no_grad():
        b(x)  # b's own weights are in use
    b.load_state_dict(a.state_dict())
    a.eval()
    with torch.set_grad_enabled(grad):
        torch.testing.assert_close(b(x), a(x))


def test_a_pruned_transformer_compiles_with_eager_gradients():
    model = build("transformer")
    masks = pruning.prune(model, "magnitude", 0.5)
    torch._dynamo.reset()
    check_compiled_gradients(model, masks, _images(4)[0])


# ------------------------------------------------------------------ no silent skip

class Mixed(nn.Module):
    """A Conv1d, a ConvTranspose2d and an Embedding beside a Linear head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(16, 4)
        self.conv1d = nn.Conv1d(4, 6, 3, padding=1)
        self.up = nn.ConvTranspose2d(6, 3, 2, stride=2)
        self.head = nn.Linear(3 * 4 * 8, 5)

    def forward(self, idx):
        h = self.conv1d(self.embed(idx).transpose(1, 2))  # (B, 6, 8)
        return self.head(self.up(h.view(-1, 6, 2, 4)).flatten(1))


def test_conv1d_conv_transpose_and_embedding_are_pruned_not_skipped():
    torch.manual_seed(0)
    model = Mixed()
    idx = torch.randint(0, 16, (6, 8))
    masks = pruning.prune(model, "snip", 0.2, data=(idx, torch.arange(6) % 5))
    assert set(masks) == {"embed.weight", "conv1d.weight", "up.weight", "head.weight"}
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == round(0.2 * sum(m.numel() for m in masks.values()))
    with pytest.raises(layers.UnsupportedLayerError, match=r"embed \(Embedding\) reads integer"):
        pruning.prune(Mixed(), "synflow", 0.2, input_shape=(8,))


def test_a_conv3d_net_pruned_to_a_tenth_keeps_a_tenth():
    model = build("conv3d")
    masks = pruning.prune(model, "synflow", 0.1, iterations=5)
    kept = sum(int(m.sum()) for m in masks.values())
    assert set(masks) == {"conv1.weight", "conv2.weight", "head.weight"}
    assert kept == round(0.1 * sum(m.numel() for m in masks.values()))


@pytest.mark.parametrize("norm", ["weight_norm", "spectral_norm"])
def test_a_weight_computed_by_a_parametrization_is_refused_by_name(norm):
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    getattr(nn.utils.parametrizations, norm)(model[2])
    with pytest.raises(layers.UnsupportedLayerError, match=r"2 \(ParametrizedLinear\).*"
                                                           "remove_parametrizations"):
        pruning.prune(model, "magnitude", 0.5, input_shape=(6,))
    assert not pruning.masks(model)
    masks = pruning.prune(model, "magnitude", 0.5, prunable=["0.weight"])  # around it
    assert list(masks) == ["0.weight"]


def test_rules_name_every_layer_they_leave_on_backprop():
    model = build("transformer")
    with pytest.raises(layers.UnsupportedLayerError) as refused:
        rules.convert(model, "feedback_alignment")
    text = str(refused.value)
    for name in ("encoder.layers.0.self_attn", "encoder.layers.0.self_attn.out_proj",
                 "encoder.layers.1.self_attn"):
        assert f"{name} (" in text
    assert rules.rule_of(model) == "backprop"
    with pytest.warns(UserWarning, match="self_attn.out_proj"):
        rules.convert(model, "feedback_alignment", strict=False)
    converted = {n for n, _ in rules.converted_layers(model)}
    assert "embed" in converted and "encoder.layers.0.linear1" in converted
    assert not any("self_attn" in n for n in converted)


# ------------------------------------------------------------------------ tied weights

def test_a_tied_weight_gets_one_mask_that_both_modules_use():
    model = build("tied")
    masks = pruning.prune(model, "synflow", 0.05, iterations=3)
    assert "a.weight" in masks and "b.weight" not in masks
    assert list(pruning.masks(model)) == list(masks)
    shared = model.a.weight_orig
    assert model.b.weight_orig is shared
    kept = int(masks["a.weight"].sum())
    assert int(torch.count_nonzero(model.a.weight)) == kept
    assert int(torch.count_nonzero(model.b.weight)) == kept
    nbkit.train.fit(model, _dataset(), steps=2, batch_size=8, augment=False, progress=False)
    assert int(torch.count_nonzero(shared)) <= kept
    assert torch.equal(model.a.weight, model.b.weight)
    pruning.remove(model)
    assert model.a.weight is model.b.weight  # still tied


def test_tied_saliency_counts_both_uses():
    """SynFlow's score of a tied weight sums its two uses, as autograd does."""
    model = build("tied")
    scores = pruning.score(model, "synflow")
    untied = copy.deepcopy(model)
    untied.b.weight = nn.Parameter(untied.a.weight.detach().clone())
    s2 = pruning.score(untied, "synflow")
    torch.testing.assert_close(scores["a.weight"], s2["a.weight"] + s2["b.weight"])


# --------------------------------------------------------------- saturating, non-finite

def test_synflow_through_relu6_is_refused_until_linearized():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU6(), nn.Conv2d(8, 8, 3),
                          nn.BatchNorm2d(8), nn.ReLU6(), nn.Flatten(), nn.LazyLinear(10))
    model(torch.rand(1, *SHAPE))
    with pytest.raises(ValueError, match=r"every SynFlow score of 0.weight, 3.weight.*"
                                         r"\(2, 5\).*linearize=True"):
        pruning.prune(model, "synflow", 0.1, input_shape=SHAPE)
    masks = pruning.prune(model, "synflow", 0.1, input_shape=SHAPE, linearize=True,
                          iterations=10)
    assert all(m.any() for m in masks.values())
    assert not pruning.disconnected(model, SHAPE)
    with pytest.raises(ValueError, match="SynFlow"):
        pruning.prune(model, "magnitude", 0.05, linearize=True)


def test_linearized_scores_equal_plain_ones_on_a_relu_net():
    model = nbkit.models.build("vgg11_bn", width_divisor=8)
    plain = pruning.score(model, "synflow")
    with pruning.linearized(model):
        lin = pruning.score(model, "synflow")
    for n in plain:
        torch.testing.assert_close(lin[n], plain[n], rtol=1e-4, atol=0)


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_nan_data_is_refused(method):
    model = build("resnet18")
    x, y = _images(4)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        pruning.prune(model, method, 0.5, data=(x, y))
    assert not pruning.masks(model)


@pytest.mark.parametrize("method", list(pruning.methods()))
def test_nan_weights_are_refused_by_every_pruner(method):
    model = build("tied")
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="head.weight hold NaN"):
        pruning.prune(model, method, 0.5, data=_images(4))


# ---------------------------------------------------------------- half-done, raw errors

def test_convert_is_all_or_nothing(monkeypatch):
    import importlib

    C = importlib.import_module("nbkit.rules.convert")

    model = nbkit.models.build("conv", depth=3, width=4)
    rules.convert(model, "sign_symmetry", seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    classes = [type(m) for m in model.modules()]
    hooks = [(dict(m._forward_pre_hooks), dict(m._forward_hooks)) for m in model.modules()]
    real, calls = C._convert_layer, []

    def fails_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(C, "_convert_layer", fails_on_the_third)
    with pytest.raises(RuntimeError, match="simulated"):
        rules.convert(model, "direct_feedback_alignment", seed=1)
    assert [type(m) for m in model.modules()] == classes
    assert rules.rule_of(model) == "sign_symmetry"
    after = model.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], v) for k, v in state.items())
    assert [(dict(m._forward_pre_hooks), dict(m._forward_hooks))
            for m in model.modules()] == hooks
    monkeypatch.setattr(C, "_convert_layer", real)
    nbkit.train.fit(model, "synthetic", steps=1, progress=False)  # still trains


class Pair(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.fc, self.kind = nn.Linear(3 * 32 * 32, 10), kind

    def forward(self, x):
        out = self.fc(x.flatten(1))
        return (out, x) if self.kind == "tuple" else {"logits": out}


@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_a_model_that_returns_a_tuple_or_dict_gets_a_clear_error(kind):
    for method in ("synflow", "snip"):
        with pytest.raises(TypeError, match=f"returns a {kind}.*wrap it"):
            pruning.prune(Pair(kind), method, 0.5, input_shape=SHAPE, data=_images(4))
    with pytest.raises(TypeError, match=f"returns a {kind}"):
        nbkit.train.fit(Pair(kind), _dataset(), steps=1, batch_size=8, progress=False)


def test_a_model_on_the_meta_device_gets_a_clear_error():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="meta device.*to_empty"):
        pruning.prune(model, "magnitude", 0.5)
