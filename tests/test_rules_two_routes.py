"""What [TR]'s comparisons need of the rules: Kolen-Pollack at the task's weight decay,
both δ angles, and an optimizer of B's own where the quick preset asks for one."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbkit
from nbkit import rules, train

D = torch.float64


def _net():
    nbkit.seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, padding=1, dilation=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 4 * 4, 5)).to(D)


# ---------------------------------------------------------------------- Kolen-Pollack

def test_kolen_pollack_keeps_the_tasks_weight_decay_on_w():
    model = rules.convert(_net(), "kolen_pollack", seed=0)
    opt = train.make_optimizer(model, lr=0.1, weight_decay=3e-4)
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    for _, m in rules.converted_layers(model):
        assert decay[id(m.weight)] == 3e-4          # W: the task's decay, as backprop's
        assert decay[id(m.feedback)] == 0.0         # B: its decay is the rule's own 2α B
    # B's decay lives in the rule: its gradient has 2α B beside W's gradient
    layer = model[5]
    x = torch.randn(2, 6 * 4 * 4, dtype=D)
    out = layer(x)
    out.backward(torch.ones_like(out))
    alpha = layer.coefficients["alpha"]
    torch.testing.assert_close(layer.feedback.grad, layer.weight.grad + 2 * alpha *
                               layer.feedback.detach())


@pytest.mark.parametrize("kw", [dict(feedback_lr=0.5), dict(feedback_optimizer="adam")])
def test_kolen_pollack_refuses_a_feedback_learning_rate_or_optimizer(kw):
    with pytest.raises(ValueError, match="exactly W's update"):
        rules.convert(_net(), "kolen_pollack", **kw)


# ---------------------------------------------------------------------- δ angles

def _manual_local_angles(model, x, y):
    """Per converted layer, the angle between B δy and Wᵀ δy, δy being the gradient that
    reaches the layer's output when every layer uses its rule, written out with
    conv_transpose2d and matrix products."""
    outs, ins = {}, {}

    def keep(name):
        def hook(_module, args, out):
            outs[name], ins[name] = out, args[0]
        return hook

    handles = [m.register_forward_hook(keep(name)) for name, m in rules.converted_layers(model)]
    loss = F.cross_entropy(model(x), y)
    for h in handles:
        h.remove()
    names = list(outs)
    grads = torch.autograd.grad(loss, [outs[n] for n in names])
    got = {}
    for name, g in zip(names, grads):
        m = dict(model.named_modules())[name]
        w = m.weight.detach()
        # sign symmetry computes B from W: sign(Wᵀ) (its positive scale leaves angles be)
        fb = torch.sign(w) if m.feedback is None else m.feedback.detach()
        if isinstance(m, nn.Linear):
            sent, true = g @ fb, g @ w
        else:
            kw = dict(stride=m.stride, padding=m.padding, dilation=m.dilation)
            size = ins[name].shape[-2:]
            out_pad = [size[i] - ((g.shape[2 + i] - 1) * m.stride[i] - 2 * m.padding[i]
                                  + m.dilation[i] * (m.kernel_size[i] - 1) + 1)
                       for i in range(2)]
            sent = F.conv_transpose2d(g, fb, output_padding=out_pad, **kw)
            true = F.conv_transpose2d(g, w, output_padding=out_pad, **kw)
        cos = (sent * true).sum() / (sent.norm() * true.norm())
        got[name] = math.degrees(math.acos(max(-1.0, min(1.0, float(cos)))))
    return got


@pytest.mark.parametrize("rule", ["feedback_alignment", "sign_symmetry",
                                  "information_alignment"])
def test_local_delta_angle_is_the_angle_between_b_dy_and_wt_dy(rule):
    model = rules.convert(_net(), rule, seed=0)
    torch.manual_seed(1)
    x, y = torch.randn(4, 3, 8, 8, dtype=D), torch.randint(0, 5, (4,))
    local = rules.gradient_angles(model, (x, y), kind="local")
    expected = _manual_local_angles(model, x, y)
    assert set(local) == set(expected) == {"0", "2", "5"}
    for name, value in expected.items():
        assert local[name] == pytest.approx(value, abs=1e-4), name  # returned as float32


def test_global_angle_is_the_default_and_compounds_through_depth():
    model = rules.convert(_net(), "feedback_alignment", seed=0)
    x, y = torch.randn(4, 3, 8, 8, dtype=D), torch.randint(0, 5, (4,))
    assert rules.gradient_angles(model, (x, y)) == rules.gradient_angles(model, (x, y),
                                                                         kind="global")
    local = rules.gradient_angles(model, (x, y), kind="local")
    glob = rules.gradient_angles(model, (x, y), kind="global")
    # the classifier sends the first δ: both kinds agree there; deeper down the global
    # angle also carries the errors of the layers above
    assert glob["5"] == pytest.approx(local["5"], abs=1e-9)
    assert glob["0"] != pytest.approx(local["0"], abs=1e-3)
    with pytest.raises(ValueError, match="kind"):
        rules.gradient_angles(model, (x, y), kind="both")


def test_backprop_has_zero_local_angle_and_the_logger_records_both_kinds():
    model = rules.convert(_net(), "symmetric_alignment", seed=0)
    rules.convert(model[0], "backprop")
    x, y = torch.randn(4, 3, 8, 8, dtype=D), torch.randint(0, 5, (4,))
    record = rules.AngleLogger(batch=(x, y)).log(model, 0)
    assert record["gradient_local"]["0"] == 0.0
    assert set(record["gradient_local"]) == set(record["gradient"]) == {"0", "2", "5"}


# ---------------------------------------------------------------------- B's own optimizer

def test_quick_preset_gives_data_driven_rules_an_adam_of_their_own():
    model = rules.convert(_net(), "activation_alignment", preset="quick", seed=0)
    assert model[5].coefficients["alpha"] == rules.get("activation_alignment").coefficients[
        "alpha"]                                        # [TR]'s coefficients, kept
    opt = train.make_optimizer(model, lr=0.1, weight_decay=1e-4)
    assert isinstance(opt, train.Optimizers)
    sgd, adam = opt.optimizers
    assert isinstance(sgd, torch.optim.SGD) and isinstance(adam, torch.optim.Adam)
    fbs = {id(p) for p in rules.feedback_parameters(model)}
    assert {id(p) for g in adam.param_groups for p in g["params"]} == fbs
    assert not fbs & {id(p) for g in sgd.param_groups for p in g["params"]}
    with pytest.raises(ValueError, match="make_optimizer"):
        rules.param_groups(model, lr=0.1)
    groups = rules.param_groups(model, lr=0.1, feedback=False)
    assert not fbs & {id(p) for g in groups for p in g["params"]}
    # a training step moves B by Adam's step, whatever the size of its gradient
    x, y = torch.randn(8, 3, 8, 8, dtype=D), torch.randint(0, 5, (8,))
    before = model[0].feedback.detach().clone()
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    step = (model[0].feedback.detach() - before).abs()
    lr_b = rules.QUICK_FEEDBACK["activation_alignment"]["lr"]
    assert step.max() == pytest.approx(lr_b, rel=1e-3)   # Adam's first step: lr · sign


def test_fit_trains_a_quick_preset_rule_with_both_optimizers(mini):
    nbkit.seed(0)
    model = nbkit.models.build("conv", depth=2, width=8)
    rules.convert(model, "weight_mirror", preset="quick", seed=0)
    start = model.fc.feedback.detach().clone()
    history = train.fit(model, mini.subset(train=512, test=200), steps=20, batch_size=64,
                        progress=False)
    assert math.isfinite(history["train_loss"][-1])
    assert not torch.equal(model.fc.feedback.detach(), start)


# ---------------------------------------------------------------------- the paper preset

def test_paper_preset_takes_tuned_values_from_the_reference_file_and_never_guesses(
        tmp_path, monkeypatch):
    from nbkit.rules import registry

    shipped = registry._paper_preset()
    status = shipped[1]
    # the shipped file has no tuned values: the preset says so and changes nothing
    assert set(status) == {"weight_mirror", "information_alignment"}
    assert all("not known here" in text for text in status.values())
    assert rules.resolve("weight_mirror", "paper") == rules.resolve("weight_mirror")
    doc = {"metaparameters": {"tuned": {"weight_mirror": {"alpha": 0.5, "beta": 0.25},
                                        "information_alignment": {"alpha": 1.0,
                                                                  "beta": None,
                                                                  "gamma": 1.0}}}}
    path = tmp_path / "two_routes.json"
    path.write_text(__import__("json").dumps(doc))
    monkeypatch.setattr(registry, "REFERENCE_FILE", path)
    preset, status = registry._paper_preset()
    assert preset == {"weight_mirror": {"alpha": 0.5, "beta": 0.25}}  # IA: one is unknown
    assert status["weight_mirror"] == "the paper's tuned values"
    assert "not known" in status["information_alignment"]
    path.write_text("{broken")
    assert "could not be read" in registry._paper_preset()[1]["*"]
