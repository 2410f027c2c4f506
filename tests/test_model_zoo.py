"""Any model a user brings (the zoo in tests/zoo.py): every pruner prunes it or refuses
by name, the probes measure it or refuse by name, two rules train it one step or say
which layers stay on backprop, pruned weights stay exactly zero, and the state dict
round-trips. No layer with a weight is ever skipped in silence."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from zoo import SHAPE, ZOO, build

import nbkit
from nbkit import layers, probes, pruning, rules

PRUNERS = pruning.methods()
# A refusal by design, and the words it must contain.
PRUNING_REFUSED = {"lstm": "lstm (LSTM)"}
SYNFLOW_SATURATES = {"mobilenet_v2"}  # ReLU6: pruned only with linearize=True
# torchvision's ViT starts with an all-zero head: no gradient or flow reaches any layer
ZERO_HEAD = {"vit": "heads.head.weight is all zeros"}
RULES_REFUSED = {"mobilenet_v2": "groups=", "vit": "MultiheadAttention",
                 "transformer": "MultiheadAttention", "lstm": "LSTM", "conv1d": "Conv1d",
                 "conv3d": "Conv3d"}
PROBES_REFUSED = {"vit": "MultiheadAttention", "transformer": "MultiheadAttention",
                  "lstm": "LSTM", "conv1d": "Conv1d", "conv3d": "Conv3d",
                  "densenet121": "concatenation", "squeezenet": "concatenation",
                  "tied": "a.weight and b.weight are one tensor"}


def _batch(n: int = 4):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, *SHAPE, generator=g), torch.arange(n) % 10


def _weight_names(model) -> set[str]:
    """Every weight tensor of every layer with a weight, tied ones under their first name."""
    tied = pruning.aliases(model)
    names = []
    for name, m, kind in layers.weight_layers(model):
        for attr in kind.weights(m):
            names.append(f"{name}.{attr}" if name else attr)
    first = []
    for n in names:
        if not any(other in first for other in tied.get(n, [])):
            first.append(n)
    return set(first)


def _effective(model, names) -> dict:
    """The weights the model computes with, after one forward (which refreshes every
    masked weight)."""
    with torch.no_grad():
        model.eval()(_batch(2)[0])
    return {n: getattr(*pruning.locate(model, n)) for n in names}


@pytest.mark.parametrize("name", list(ZOO))
def test_every_pruner_prunes_every_layer_or_refuses_by_name(name):
    for method in PRUNERS:
        model = build(name)
        kw = {"data": _batch(), "iterations": 2 if method == "synflow" else 1}
        if name in PRUNING_REFUSED:
            refused = re.escape(PRUNING_REFUSED[name])
            with pytest.raises(layers.UnsupportedLayerError, match=refused):
                pruning.prune(model, method, 0.5, **kw)
            assert not pruning.masks(model), "a refused call leaves the model as it was"
            continue
        if pruning.SCORERS[method].flows and name in ZERO_HEAD:
            with pytest.raises(ValueError, match=re.escape(ZERO_HEAD[name])):
                pruning.prune(model, method, 0.5, **kw)
            continue
        if method == "synflow" and name in SYNFLOW_SATURATES:
            with pytest.raises(ValueError, match="linearize=True"):
                pruning.prune(model, method, 0.5, **kw)
            kw["linearize"] = True
        masks = pruning.prune(model, method, 0.5, **kw)
        assert set(masks) == _weight_names(model), f"{name}/{method}: a weight left unpruned"
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        assert abs(kept - round(0.5 * total)) <= 1, (name, method, kept, total)
        used = _effective(model, masks)
        for n, m in masks.items():  # the model computes with exact zeros where pruned
            assert not used[n][~m].any(), f"{name}/{method}: {n} not masked"


def test_a_recurrent_net_prunes_around_its_lstm_when_told_to():
    model = build("lstm")
    others = [n for n in _weight_names(model) if not n.startswith("lstm.")]
    masks = pruning.prune(model, "synflow", 0.5, prunable=others, iterations=2)
    assert set(masks) == set(others)
    with pytest.raises(layers.UnsupportedLayerError, match="recurrent"):
        pruning.prune(build("lstm"), "magnitude", 0.5, prunable=["lstm.weight_ih_l0"])


@pytest.mark.parametrize("name", list(ZOO))
def test_probes_measure_or_refuse_by_name(name):
    model = build(name)
    if name in PROBES_REFUSED:
        with pytest.raises(layers.UnsupportedLayerError, match=re.escape(PROBES_REFUSED[name])):
            probes.conservation_report(model, "synflow", input_shape=SHAPE)
        return
    report = probes.conservation_report(model, "synflow", input_shape=SHAPE,
                                        dtype=torch.float32)
    assert report["neuron"] == report["neuron"] and report["layer_totals"]


@pytest.mark.parametrize("name", list(ZOO))
def test_two_rules_train_one_step_and_pruned_weights_stay_zero(name):
    x, y = _batch(8)
    data = nbkit.data.from_tensors(x, y, x[:4], y[:4], classes=[str(i) for i in range(10)])
    for rule in ("feedback_alignment", "sign_symmetry"):
        model = build(name)
        if name not in PRUNING_REFUSED:
            masks = pruning.prune(model, "magnitude", 0.5)
        else:
            masks = pruning.prune(model, "magnitude", 0.5, prunable=[
                n for n in _weight_names(model) if not n.startswith("lstm.")])
        if name in RULES_REFUSED:
            with pytest.raises(layers.UnsupportedLayerError, match=re.escape(RULES_REFUSED[name])):
                rules.convert(model, rule, seed=0)
            assert rules.rule_of(model) == "backprop", "a refused convert changes nothing"
            with pytest.warns(UserWarning, match=re.escape(RULES_REFUSED[name])):
                rules.convert(model, rule, seed=0, strict=False)
        else:
            rules.convert(model, rule, seed=0)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            hist = nbkit.train.fit(model, data, steps=1, batch_size=4, augment=False,
                                   progress=False, lr=0.05)
        assert len(hist["train_loss"]) == 1 and hist["train_loss"][0] == hist["train_loss"][0]
        assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
        used = _effective(model, masks)
        for n, m in masks.items():
            assert not used[n][~m].any(), f"{name}/{rule}: {n} regrew"


@pytest.mark.parametrize("name", list(ZOO))
def test_a_pruned_model_round_trips_through_its_state_dict(name):
    model = build(name, seed=0)
    prunable = None if name not in PRUNING_REFUSED else [
        n for n in _weight_names(model) if not n.startswith("lstm.")]
    pruning.prune(model, "magnitude", 0.3, prunable=prunable)
    x = _batch(2)[0]
    with torch.no_grad():
        want = model.eval()(x)
    fresh = build(name, seed=1)  # other weights: the checkpoint must replace them all
    pruning.load_state_dict(fresh, model.state_dict())
    with torch.no_grad():
        got = fresh.eval()(x)
    torch.testing.assert_close(got, want)
    assert {n: m.sum() for n, m in pruning.masks(fresh).items()} == \
        {n: m.sum() for n, m in pruning.masks(model).items()}
