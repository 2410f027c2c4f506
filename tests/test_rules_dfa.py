"""Direct feedback alignment: every layer sends δx = D e, e being the output error; the
weight gradients stay local; D is fixed, seeded and saved; the probes, fit and pruning."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbkit
from nbkit import rules, train

DFA = "direct_feedback_alignment"
D64 = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.Tanh(),
                         nn.Linear(4, 3)).to(D64)


def _convnet(padding_mode="reflect"):
    """Two convs (the second strided, with an explicit padding mode), a classifier."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode=padding_mode),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5)).to(D64)


def _run(model, x, y):
    """Forward and backward of the cross-entropy; returns the inputs of every weight
    layer (their .grad is the δx that reached them) and e = ∂L/∂output."""
    inputs = {}

    def keep(name):
        def hook(_module, args):
            if args[0].requires_grad:
                args[0].retain_grad()
            inputs[name] = args[0]
        return hook

    handles = [m.register_forward_pre_hook(keep(n)) for n, m in model.named_children()
               if isinstance(m, (nn.Linear, nn.Conv2d))]
    out = model(x)
    for h in handles:
        h.remove()
    out.retain_grad()
    F.cross_entropy(out, y).backward()
    return inputs, out.grad


def _reference(model, x, e):
    """DFA's backward written out for a Sequential: at a weight layer, δW and δb are the
    plain layer's weight gradients for the δy that reached it (δy xᵀ) and it sends
    δx = D e, D e = (e @ D.reshape(n_out, -1)) in its input's shape; every other module
    passes the δ back through its ordinary backward."""
    acts = [x.detach()]
    with torch.no_grad():
        for m in rules.unconvert(copy.deepcopy(model)):
            acts.append(m(acts[-1]))
    grads, sent, delta = {}, {}, e
    for i in reversed(range(len(model))):
        m, h = model[i], acts[i].detach().requires_grad_()
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            plain = nn.Linear if isinstance(m, nn.Linear) else nn.Conv2d
            out = plain.forward(m, h.detach())
            grads[str(i)] = torch.autograd.grad(out, (m.weight, m.bias), delta)
            d = m.direct_feedback
            delta = (e @ d.reshape(d.shape[0], -1)).reshape(h.shape)
            sent[str(i)] = delta
        else:
            delta = torch.autograd.grad(m(h), h, delta)[0]
    return grads, sent


@pytest.mark.parametrize("make, x_shape", [(_mlp, (7, 6)), (_convnet, (3, 2, 8, 8))])
def test_each_layer_sends_d_e_and_keeps_local_weight_gradients(make, x_shape):
    model = make()
    shape = x_shape[1:]
    rules.convert(model, DFA, seed=0, input_shape=shape)
    x = torch.randn(*x_shape, dtype=D64, requires_grad=True)
    y = torch.randint(0, model[-1].out_features, (x_shape[0],))
    inputs, e = _run(model, x, y)
    grads, sent = _reference(model, x, e)
    for name, layer in model.named_children():
        if name not in grads:
            continue
        d = layer.direct_feedback
        assert d.shape == (model[-1].out_features, *inputs[name].shape[1:])  # per example
        assert inputs[name].grad.shape == inputs[name].shape
        torch.testing.assert_close(inputs[name].grad, sent[name], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(layer.weight.grad, grads[name][0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(layer.bias.grad, grads[name][1], rtol=1e-12, atol=1e-14)


def test_several_calls_before_one_backward_each_send_their_own_error():
    model = rules.convert(_convnet(), DFA, seed=0, input_shape=(2, 8, 8))
    twin = copy.deepcopy(model)
    (x1, x2), y = torch.randn(2, 3, 2, 8, 8, dtype=D64), torch.randint(0, 5, (3,))
    (F.cross_entropy(model(x1), y) + F.cross_entropy(model(x2), y)).backward()
    for x in (x1, x2):  # one call, one backward, twice: the gradients add up
        F.cross_entropy(twin(x), y).backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------- D: fixed, seeded, saved

def test_seed_repeats_d_and_state_dict_and_deepcopy_keep_it():
    a = rules.convert(nbkit.models.build("conv", depth=2, width=4), DFA, seed=3)
    b = rules.convert(nbkit.models.build("conv", depth=2, width=4), DFA, seed=3)
    c = rules.convert(nbkit.models.build("conv", depth=2, width=4), DFA, seed=4)
    names = ["layers.0.direct_feedback", "layers.3.direct_feedback", "fc.direct_feedback"]
    for n in names:
        assert torch.equal(a.get_buffer(n), b.get_buffer(n))
        assert not torch.equal(a.get_buffer(n), c.get_buffer(n))
    assert not a.fc.direct_feedback.requires_grad
    assert all("direct_feedback" not in n for n, _ in a.named_parameters())  # not trained
    # D's scale: N(0, 1/m), m = one example's input size
    d = a.layers[3].direct_feedback
    assert d.shape == (10, 4, 32, 32)
    assert d.std().item() == pytest.approx(1 / math.sqrt(4 * 32 * 32), rel=0.02)
    c.load_state_dict(a.state_dict())
    twin = copy.deepcopy(a)
    assert twin.fc.direct_feedback is not a.fc.direct_feedback
    assert twin._direct_tap is not a._direct_tap and twin.fc._tap is twin._direct_tap
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    outs = [a(x), c(x), twin(x)]  # interleaved calls of three models
    for out in reversed(outs):
        F.cross_entropy(out, y).backward()
    for p, q, r in zip(a.parameters(), c.parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad) and torch.equal(p.grad, r.grad)


@pytest.mark.parametrize("how", ["unconvert", "backprop", "feedback_alignment"])
def test_unconvert_or_another_rule_removes_the_hooks_and_the_ds(how):
    nbkit.seed(0)
    model = nbkit.models.build("conv", depth=2, width=4)
    ref = copy.deepcopy(model)
    keys = list(model.state_dict())
    rules.convert(model, DFA, seed=0)
    rules.convert(model, DFA, seed=1)  # converting again replaces, never stacks
    assert len(model._forward_hooks) == len(model._forward_pre_hooks) == 1
    rules.unconvert(model) if how == "unconvert" else rules.convert(model, how, seed=0)
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert not hasattr(model, "_direct_tap")
    assert not any("direct_feedback" in k for k in model.state_dict())
    assert all("_tap" not in m.__dict__ for m in model.modules())
    if how == "feedback_alignment":
        return
    assert list(model.state_dict()) == keys
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    for m in (model, ref):
        F.cross_entropy(m(x), y).backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p.grad, q.grad)


# ----------------------------------------------------------------- models and input shapes

def test_input_shape_comes_from_the_model_the_first_linear_or_the_keyword():
    assert rules.convert(nbkit.models.build("mlp", depth=2, width=8), DFA).layers[0] \
        .direct_feedback.shape == (10, 3 * 32 * 32)
    plain = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))
    assert rules.convert(plain, DFA)[2].direct_feedback.shape == (4, 8)
    convnet = _convnet()
    with pytest.raises(ValueError, match="input_shape="):
        rules.convert(convnet, DFA)
    assert type(convnet[0]) is nn.Conv2d  # nothing converted
    with pytest.raises(ValueError, match=r"failed \(RuntimeError"):
        rules.convert(convnet, DFA, input_shape=(3, 8, 8))  # 3 channels for a 2-channel conv
    with pytest.raises(ValueError, match="positive ints"):
        rules.convert(convnet, DFA, input_shape=(2, 0, 8))
    rules.convert(convnet, DFA, input_shape=(2, 8, 8))
    assert convnet[2].direct_feedback.shape == (5, 3, 8, 8)  # the conv's own (unpadded) input
    with pytest.raises(ValueError, match=r"\(2, 8, 8\) per example"):
        convnet(torch.randn(2, 2, 10, 10, dtype=D64))
    with pytest.raises(ValueError, match="learned rules only"):
        rules.convert(_mlp(), DFA, feedback_lr=0.1)


def test_resnet_sends_d_e_through_the_residual_adds():
    nbkit.seed(0)
    model = rules.convert(nbkit.models.build("resnet20"), DFA, seed=0)
    block = model.layers[4]
    seen = {}

    def keep(name):  # an alias of the input: the block input also feeds the shortcut
        def hook(_m, args):
            seen[name] = args[0].view_as(args[0])
            seen[name].retain_grad()
            return (seen[name],)
        return hook

    for name in ("conv1", "conv2"):
        getattr(block, name).register_forward_pre_hook(keep(name))
    x, y = torch.randn(3, 3, 32, 32), torch.randint(0, 10, (3,))
    out = model(x)
    out.retain_grad()
    F.cross_entropy(out, y).backward()
    for name in ("conv1", "conv2"):
        d = getattr(block, name).direct_feedback
        want = (out.grad @ d.reshape(10, -1)).reshape(seen[name].shape)
        torch.testing.assert_close(seen[name].grad, want)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_loss_that_skips_the_output_or_a_layer_run_alone_is_a_clear_error():
    model = rules.convert(_mlp(), DFA, seed=0)
    x = torch.randn(4, 6, dtype=D64)
    hidden = model[3](model[2](model[1](model[0](x))))  # layers run outside a model call
    with pytest.raises(RuntimeError, match="outside a call"):
        hidden.sum().backward()
    inner = {}
    model[3].register_forward_hook(lambda _m, _a, out: inner.setdefault("h", out))
    model(x)
    with pytest.raises(RuntimeError, match="did not go through the output"):
        inner["h"].sum().backward()


def test_pruned_layers_keep_their_masks():
    nbkit.seed(0)
    model = nbkit.models.build("conv", depth=2, width=8)
    nbkit.pruning.prune(model, "magnitude", density=0.5, scope="local")
    rules.convert(model, DFA, seed=0)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    F.cross_entropy(model(x), y).backward()
    for layer in (model.layers[0], model.layers[3], model.fc):
        assert layer.weight_mask.float().mean() < 0.9
        assert torch.all(layer.weight_orig.grad[layer.weight_mask == 0] == 0)
        assert layer.weight_orig.grad.abs().sum() > 0


def test_bf16_autocast_matches_float32():
    nbkit.seed(0)
    model = rules.convert(nbkit.models.build("conv", depth=2, width=8, batchnorm=False), DFA,
                          seed=0, input_shape=(3, 16, 16))
    twin = copy.deepcopy(model)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    F.cross_entropy(model(x), y).backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = twin(x)
    F.cross_entropy(out.float(), y).backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert q.grad.dtype == torch.float32
        assert F.cosine_similarity(p.grad.flatten(), q.grad.flatten(), dim=0) > 0.97


# ------------------------------------------------------------------------------ training

def test_dfa_trains_a_conv_net_above_chance(mini):
    nbkit.seed(0)
    model = rules.convert(nbkit.models.build("conv", depth=4, width=8), DFA, seed=0)
    start = {n: b.clone() for n, b in model.named_buffers() if "direct_feedback" in n}
    history = train.fit(model, mini, steps=300, batch_size=32, lr=0.05, device="cpu",
                        progress=False, seed=0)
    assert history["test_acc"][-1] > 0.18  # chance is 0.10
    assert all(torch.equal(b, start[n]) for n, b in model.named_buffers() if n in start)


# -------------------------------------------------------------------------------- angles

def _angle(a, b):
    cos = (a * b).sum() / (a.norm() * b.norm())
    return math.degrees(math.acos(max(-1.0, min(1.0, float(cos)))))


def test_weight_angle_is_between_d_and_the_mean_jacobian():
    model = rules.convert(_mlp(), DFA, seed=0)
    x = torch.randn(9, 6, dtype=D64)
    assert all(math.isnan(v) for v in rules.alignment_angles(model).values())  # no batch
    assert all(math.isnan(v) for v in rules.norm_ratios(model).values())
    angles = rules.alignment_angles(model, (x, None))
    ratios = rules.norm_ratios(model, x)
    plain = rules.unconvert(copy.deepcopy(model))
    acts = [x]
    for m in plain:
        acts.append(m(acts[-1]).detach())
    for i in ("0", "2", "4"):
        rest = plain[int(i):]
        jac = torch.stack([torch.autograd.functional.jacobian(rest, a) for a in acts[int(i)]])
        jbar = jac.mean(0)  # (n_out, layer input): E_batch[∂ output / ∂ layer input]
        d = model.get_submodule(i).direct_feedback
        assert angles[i] == pytest.approx(_angle(d, jbar), abs=1e-4)
        assert ratios[i] == pytest.approx(float(d.norm() / jbar.norm()), rel=1e-5)


def _by_hand_local(model, x, y):
    """Per layer, the angle between D e and Wᵀ δy (conv_transpose2d or a matrix product),
    δy being what reaches the layer's output under DFA, e the output error."""
    outs, ins = {}, {}

    def keep(name):
        def hook(_module, args, out):
            outs[name], ins[name] = out, args[0]
        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in rules.converted_layers(model)]
    out = model(x)
    for h in handles:
        h.remove()
    names = list(outs)
    *grads, e = torch.autograd.grad(F.cross_entropy(out, y), [outs[n] for n in names] + [out])
    got = {}
    for name, g in zip(names, grads):
        m = model.get_submodule(name)
        d, w = m.direct_feedback, m.weight.detach()
        sent = (e @ d.reshape(d.shape[0], -1)).reshape(ins[name].shape)
        if isinstance(m, nn.Linear):
            true = g @ w
        else:
            size = ins[name].shape[-2:]
            pad = [size[i] - ((g.shape[2 + i] - 1) * m.stride[i] - 2 * m.padding[i]
                              + m.dilation[i] * (m.kernel_size[i] - 1) + 1) for i in range(2)]
            true = F.conv_transpose2d(g, w, stride=m.stride, padding=m.padding,
                                      dilation=m.dilation, output_padding=pad)
        got[name] = _angle(sent, true)
    return got


def test_local_delta_angle_is_between_d_e_and_wt_dy():
    model = rules.convert(_convnet("zeros"), DFA, seed=0, input_shape=(2, 8, 8))
    x, y = torch.randn(4, 2, 8, 8, dtype=D64), torch.randint(0, 5, (4,))
    local = rules.gradient_angles(model, (x, y), kind="local")
    expected = _by_hand_local(model, x, y)
    assert set(local) == set(expected) == {"0", "2", "5"}
    for name, value in expected.items():
        assert local[name] == pytest.approx(value, abs=1e-4), name
    # the classifier gets the true error: both kinds agree there
    glob = rules.gradient_angles(model, (x, y))
    assert glob["5"] == pytest.approx(local["5"], abs=1e-4)
    assert all(p.grad is None for p in model.parameters())


def test_angle_logger_and_noisy_updates_in_fit(mini):
    nbkit.seed(0)
    model = rules.convert(nbkit.models.build("conv", depth=2, width=8), DFA, seed=0)
    small = mini.subset(train=256, test=100)
    batch = next(iter(small.loader("test", 16, device="cpu")))
    logger = rules.AngleLogger(every=4, batch=batch)
    history = train.fit(model, small, steps=8, batch_size=32, lr=0.05, device="cpu",
                        progress=False, seed=0, callbacks=[logger, rules.NoisyUpdates(0.01)])
    records = history["angles"]
    assert [r["step"] for r in records] == [0, 4, 8]
    layers = {"layers.0", "layers.3", "fc"}
    for r in records:
        for key in ("alignment", "norm_ratio", "gradient", "gradient_local"):
            assert set(r[key]) == layers, key
            assert all(math.isfinite(v) for v in r[key].values()), (key, r[key])
    assert 60 < records[0]["alignment"]["layers.3"] < 120  # D is random at the start
