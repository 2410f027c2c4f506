"""The pruning loop: exact counts, monotone masks, schedules, ties, options, history,
and bad input that leaves the model untouched."""

import copy
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune as torch_prune

import nbkit
from nbkit import pruning
from nbkit.models import VGG, init_weights
from nbkit.pruning.select import LiveSet, select


def small(kind, seed=0, **kw):
    nbkit.seed(seed)
    if kind == "mlp":
        return nbkit.models.build("mlp", input_shape=(1, 4, 4), depth=3, width=10, **kw)
    return nbkit.models.build("conv", input_shape=(3, 8, 8), depth=3, width=4, **kw)


def data_for(model, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn((n, *model.input_shape), generator=g),
            torch.randint(0, 10, (n,), generator=g))


def kept(masks):
    return sum(int(m.sum()) for m in masks.values())


def total(masks):
    return sum(m.numel() for m in masks.values())


# ------------------------------------------------------------------ exact and monotone

@settings(max_examples=15, deadline=None)
@given(kind=st.sampled_from(["mlp", "conv"]), method=st.sampled_from(pruning.methods()),
       density=st.floats(0.02, 1.0), iterations=st.integers(1, 4),
       schedule=st.sampled_from(pruning.SCHEDULES), scope=st.sampled_from(pruning.SCOPES),
       seed=st.integers(0, 10**6), bias=st.booleans())
def test_exact_kept_count_and_monotone_masks(kind, method, density, iterations, schedule,
                                             scope, seed, bias):
    model = small(kind, seed, bias=bias)
    sizes = {n: p.numel() for n, p in pruning.prunable_parameters(model).items()}
    if scope == "local" and min(round(density * s) for s in sizes.values()) < 1:
        density = max(1.0 / min(sizes.values()), density)
    history = []
    masks = pruning.prune(model, method, density, iterations, schedule, scope,
                          data=data_for(model, seed=seed), history=history)
    assert list(masks) == list(sizes)
    if scope == "global":
        assert kept(masks) == round(density * total(masks))
    else:
        for name, mask in masks.items():
            assert int(mask.sum()) == round(density * mask.numel()), name
    assert len(history) == iterations
    for prev, cur in zip(history, history[1:]):  # densities never rise
        assert all(cur["layer_density"][n] <= prev["layer_density"][n] for n in sizes)
    assert history[-1]["density"] == pytest.approx(kept(masks) / total(masks))
    # pruning again composes: nothing comes back
    half = max(kept(masks) / total(masks) / 2, len(masks) / total(masks))
    again = pruning.prune(model, "magnitude", half)
    assert all(not (again[n] & ~masks[n]).any() for n in masks)
    assert kept(again) == round(half * total(again))


def test_schedule_counts():
    n = 10**6
    exp = pruning.schedule_counts(n, n, 1e-3, 100, "exponential")
    lin = pruning.schedule_counts(n, n, 1e-3, 100, "linear")
    assert exp[-1] == lin[-1] == 1000
    assert exp[0] == round(n * 1e-3 ** 0.01) and exp[49] == round(n * 1e-3 ** 0.5)
    assert lin[0] == round(n * (1 - 0.999 * 0.01)) and lin[49] == round(n * (1 - 0.999 * 0.5))
    assert all(a >= b for a, b in zip(exp, exp[1:])) and all(a >= b for a, b in zip(lin, lin[1:]))
    # from an already pruned model the schedule starts at its density
    assert pruning.schedule_counts(5000, n, 1e-3, 2, "exponential") == [
        round(n * 5e-3 * (0.2 ** 0.5)), 1000]


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 300), k_frac=st.floats(0, 1), levels=st.integers(1, 6),
       nan=st.booleans(), seed=st.integers(0, 10**6), big=st.booleans())
def test_selection_strategies_agree_with_deterministic_ties(m, k_frac, levels, nan, seed, big):
    g = torch.Generator().manual_seed(seed)
    if big:
        m *= 1000  # exercise the sampled bracket
    scores = torch.randint(0, levels, (m,), generator=g).float()
    if levels == 6:
        scores = torch.randn(m, generator=g)
    if nan:
        scores[torch.rand(m, generator=g) < 0.1] = float("nan")
    k = round(k_frac * m)
    keep_s, gone_s = select(scores, k, "sort")
    keep_t, gone_t = select(scores, k, "threshold")
    assert torch.equal(keep_s, keep_t) and torch.equal(gone_s, gone_t)
    assert keep_s.numel() == k and torch.equal(torch.sort(torch.cat([keep_s, gone_s])).values,
                                               torch.arange(m))
    # reference: rank by (score descending, position ascending), NaN lowest
    key = torch.where(torch.isnan(scores), float("-inf"), scores)
    order = sorted(range(m), key=lambda i: (-key[i].item(), i))
    assert keep_s.tolist() == sorted(order[:k])


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 400), fractions=st.lists(st.floats(0, 1), min_size=1, max_size=6),
       levels=st.integers(1, 6), special=st.booleans(), seed=st.integers(0, 10**6),
       big=st.booleans())
def test_the_cpu_live_set_matches_compact_selection(m, fractions, levels, special, seed, big):
    """The CPU loop flags removed weights instead of rebuilding its index list; over
    several iterations it must keep exactly what a fresh selection keeps."""
    g = torch.Generator().manual_seed(seed)
    m *= 500 if big else 1
    ref, live, n = torch.arange(m), LiveSet(torch.arange(m)), m
    for frac in fractions:
        k = int(n * frac)
        scores = torch.randint(0, levels, (m,), generator=g).float()
        if levels == 6:
            scores = torch.randn(m, generator=g)
        if special:
            scores[torch.rand(m, generator=g) < 0.05] = float("nan")
            scores[torch.rand(m, generator=g) < 0.05] = float("-inf")
            scores[torch.rand(m, generator=g) < 0.05] = float("inf")
        keep, _ = select(scores[ref], k, "sort")
        ref = ref[keep]
        live.update(scores[live.idx], k)
        got = live.idx if live.dead is None else live.idx[~live.dead]
        assert torch.equal(got, ref)
        n = k


@pytest.mark.parametrize("method, scope, iterations, invert", [
    ("synflow", "global", 12, False), ("magnitude", "local", 3, True),
    ("snip", "global", 2, False), ("random", "global", 1, False)])
def test_the_gpu_loop_gives_the_same_masks_and_history(monkeypatch, method, scope,
                                                       iterations, invert):
    """The GPU loop (stable sort, no host sync) run on the CPU equals the CPU loop."""
    loop = sys.modules["nbkit.pruning.prune"]
    base = small("conv", bias=True)
    with torch.no_grad():  # ties in every layer
        for p in pruning.prunable_parameters(base).values():
            p[..., 0].fill_(0.25)
    results = []
    for strategy in ("live", "sort"):
        monkeypatch.setattr(loop, "LOOP", strategy)
        model, history = copy.deepcopy(base), []
        nbkit.seed(0)
        masks = pruning.prune(model, method, 0.07, iterations, scope=scope, invert=invert,
                              data=data_for(model), history=history)
        results.append((masks, history))
    (a, ha), (b, hb) = results
    assert all(torch.equal(a[n], b[n]) for n in a)
    for x, y in zip(ha, hb):
        assert x["layer_density"] == y["layer_density"]
        assert x["removed_score"] == pytest.approx(y["removed_score"], rel=1e-9)


def test_ties_keep_the_earliest_weights():
    model = small("mlp")
    with torch.no_grad():
        for p in pruning.prunable_parameters(model).values():
            p.fill_(0.5)
    masks = pruning.prune(model, "magnitude", 0.3)
    flat = torch.cat([m.flatten() for m in masks.values()])
    k = round(0.3 * flat.numel())
    assert flat[:k].all() and not flat[k:].any()


# ----------------------------------------------------------------------- options

def test_invert_prunes_the_highest_scores():
    model = small("mlp")
    w = {n: p.detach().abs().clone() for n, p in pruning.prunable_parameters(model).items()}
    masks = pruning.prune(model, "magnitude", 0.2, invert=True)
    kept_vals = torch.cat([w[n][m] for n, m in masks.items()])
    gone_vals = torch.cat([w[n][~m] for n, m in masks.items()])
    assert kept_vals.max() <= gone_vals.min()


def test_shuffle_keeps_layer_densities_and_moves_the_masks():
    a, b = small("conv"), small("conv")
    plain = pruning.prune(a, "synflow", 0.05)
    nbkit.seed(3)
    shuffled = pruning.prune(b, "synflow", 0.05, shuffle=True)
    assert pruning.layer_density(a) == pruning.layer_density(b)
    assert any(not torch.equal(plain[n], shuffled[n]) for n in plain)
    for name, mask in shuffled.items():  # weights of the new masks are live
        module, attr = pruning.locate(b, name)
        assert (getattr(module, attr)[mask] != 0).all()


def test_shuffle_stays_inside_earlier_masks():
    model = small("mlp")
    first = pruning.prune(model, "magnitude", 0.5)
    second = pruning.prune(model, "synflow", 0.1, shuffle=True)
    assert all(not (second[n] & ~first[n]).any() for n in first)
    assert kept(second) == round(0.1 * total(second))


def test_reinitialize_redraws_weights_and_keeps_masks():
    model = small("conv")
    before = {n: p.detach().clone() for n, p in pruning.prunable_parameters(model).items()}
    masks = pruning.prune(model, "magnitude", 0.3, reinitialize=True)
    for name, p in pruning.prunable_parameters(model).items():
        assert (p[~masks[name]] == 0).all()
        assert not torch.equal(p[masks[name]], before[name][masks[name]])
    user = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
    w = user[1].weight.detach().clone()
    masks = pruning.prune(user, "magnitude", 0.5, reinitialize=True)
    assert not torch.equal(user[1].weight_orig[masks["1.weight"]], w[masks["1.weight"]])


def test_prunable_options_in_the_loop():
    model = small("conv", bias=True)
    masks = pruning.prune(model, "magnitude", 0.3, prunable={"bias": True, "final": False})
    assert "fc.weight" not in masks and "layers.0.bias" in masks
    assert not torch_prune.is_pruned(model.fc)
    assert kept(masks) == round(0.3 * total(masks))


def test_progress_bar_device_and_iterables_of_batches():
    model = small("conv")
    x, y = data_for(model)
    loader = list(zip(x.split(16), y.split(16)))
    masks = pruning.prune(model, "snip", 0.2, iterations=2, data=loader, device="cpu",
                          progress=True)
    assert kept(masks) == round(0.2 * total(masks))


# ----------------------------------------------------------------------- history

def test_history_for_single_shot_magnitude():
    model = small("mlp")
    w = {n: p.detach().abs().double() for n, p in pruning.prunable_parameters(model).items()}
    history = []
    masks = pruning.prune(model, "magnitude", 0.25, history=history)
    (h,) = history
    assert h["iteration"] == 1 and h["density"] == pytest.approx(kept(masks) / total(masks))
    removed = sum(w[n][~m].sum().item() for n, m in masks.items())
    assert h["removed_score"] == pytest.approx(removed, rel=1e-9)
    for name, mask in masks.items():
        assert h["layer_score_totals"][name] == pytest.approx(w[name].sum().item(), rel=1e-9)
        assert h["layer_density"][name] == pytest.approx(mask.float().mean().item())
    assert h["objective"] != h["objective"]  # NaN for a score without objective


def small_vgg(seed=0):
    nbkit.seed(seed)
    model = init_weights(VGG([8, 8, "M", 16, 16, "M", 32, 32, "M", 64], num_classes=10))
    model.input_shape = (3, 8, 8)
    return model


def flow_ratios(history):
    return [h["removed_score"] / min(h["layer_score_totals"].values()) for h in history]


@pytest.mark.slow
def test_synaptic_flow_ratio_shows_when_collapse_is_avoided():
    """Paper Fig. 7 on a small VGG at ρ = 10³: single-shot SynFlow removes more than a
    cut's flow at once, 100 exponential iterations never do, 100 linear ones still do."""
    base = small_vgg()
    runs = {}
    for label, iterations, schedule in (("once", 1, "exponential"),
                                        ("exp", 100, "exponential"),
                                        ("lin", 100, "linear")):
        history = []
        pruning.prune(copy.deepcopy(base), "synflow", 1e-3, iterations, schedule,
                      history=history)
        runs[label] = max(flow_ratios(history))
        for h in history:  # the objective is R, the flow through any cut
            assert h["objective"] == pytest.approx(min(h["layer_score_totals"].values()),
                                                   rel=0.5)
    assert runs["once"] > 1 and runs["exp"] < 1 and runs["lin"] > 1, runs


# --------------------------------------------------------------------- bad input

BAD = [
    (dict(method="synflow", density=0.0), "density must be in \\(0, 1\\]"),
    (dict(method="synflow", density=1.5), "density must be in"),
    (dict(method="synflow", density=float("nan")), "density must be in"),
    (dict(method="synflow", density="half"), "density must be a number"),
    (dict(method="obd", density=0.5), "valid methods are: random, magnitude, snip, grasp, "
                                      "grasp_paper, synflow"),
    (dict(method="snip", density=0.5), "pass data="),
    (dict(method="grasp", density=0.5), "pass data="),
    (dict(method="synflow", density=1e-6), "fewer than one per prunable layer"),
    (dict(method="synflow", density=0.5, iterations=0), "iterations"),
    (dict(method="synflow", density=0.5, schedule="cosine"), "schedule"),
    (dict(method="synflow", density=0.5, scope="layer"), "scope"),
    (dict(method="synflow", density=0.01, scope="local", prunable={"bias": True}),
     "keeps no weight of"),
    (dict(method="magnitude", density=0.5, prunable={"biases": True}), "valid options"),
    (dict(method="snip", density=0.5, data=[1, 2]), "not an \\(x, y\\) pair"),
    (dict(method="synflow", density=0.5, device="tpu"), "device"),
]


@pytest.mark.parametrize("kwargs, match", BAD)
def test_bad_input_raises_and_leaves_the_model_untouched(kwargs, match):
    model = small("conv", bias=True)
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=match):
        pruning.prune(model, **kwargs)
    assert not torch_prune.is_pruned(model)
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_no_prunable_layer_and_growing_density():
    with pytest.raises(ValueError, match="no prunable layer"):
        pruning.prune(nn.Sequential(nn.ReLU()), "magnitude", 0.5)
    model = small("mlp")
    pruning.prune(model, "magnitude", 0.1)
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="masks only shrink"):
        pruning.prune(model, "magnitude", 0.5)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_a_failing_scorer_leaves_the_model_untouched():
    model = small("mlp")

    @pruning.register("failing")
    def failing(model, weights, out, ctx):
        raise RuntimeError("boom")

    try:
        state = copy.deepcopy(model.state_dict())
        with pytest.raises(RuntimeError, match="boom"):
            pruning.prune(model, "failing", 0.5)
        assert not torch_prune.is_pruned(model)
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        assert all(m.training for m in model.modules())
    finally:
        del pruning.SCORERS["failing"]
