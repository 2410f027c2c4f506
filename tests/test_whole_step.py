"""The compiled whole training step (nbkit.step): one graph, no breaks, and the same
training as the eager loop on the CPU, for a pruned model and for the learning rules
whose B moves (Kolen-Pollack, weight mirror) or does not (feedback alignment)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch._dynamo
import torch._inductor.config
from helpers import Stop, StopAt
from torch import nn

from nbkit import data, pruning, rules, train
from nbkit.step import WholeStep, _own_code, unsupported

# (what the model is, convert/prune settings); weight mirror takes the quick preset, so
# its B trains with an Adam of its own and the Adam update is checked as well
KINDS = {
    "pruned": ("prune", {}),
    "feedback_alignment": ("convert", {}),
    "kolen_pollack": ("convert", {}),
    "weight_mirror": ("convert", {"preset": "quick"}),
}


def tiny_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (96, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 4, (96,), generator=g)
    return data.from_tensors(x, y, x[:32], y[:32])


def tiny_model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 4))
    how, settings = KINDS[kind]
    if how == "prune":
        pruning.prune(model, "magnitude", 0.2)
    else:
        rules.convert(model, kind, seed=0, **settings)
    return model


def train_tiny(kind: str, compile, device="cpu"):
    model = tiny_model(kind)
    losses = []
    torch.manual_seed(7)  # weight mirror's noise inputs
    # fp32 and NCHW everywhere (on CUDA too), so that eager and compiled can be compared
    history = train.fit(model, tiny_data(), epochs=2, batch_size=16, lr=0.05, seed=1,
                        compile=compile, progress=False, device=device, amp=False,
                        channels_last=False,
                        callbacks=[lambda s: losses.append(float(s.loss.detach()))])
    return model, losses, history


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_compiled_whole_step_trains_as_eager(kind):
    eager_model, eager_losses, eager_history = train_tiny(kind, False)
    # weight mirror draws white noise in its backward pass: with the compiler's own
    # generator the draws would differ; fallback_random makes them the eager ones.
    # error_on_recompile: a schedule that changes the learning rate every step must
    # not retrace the step.
    with torch._inductor.config.patch(fallback_random=True), \
            torch._dynamo.config.patch(error_on_recompile=True):
        model, losses, history = train_tiny(kind, "step")
    assert len(losses) == len(eager_losses) == 12
    torch.testing.assert_close(losses, eager_losses, rtol=1e-5, atol=1e-5)
    # everything the step updates: weights, B, BatchNorm's running statistics
    state, eager_state = model.state_dict(), eager_model.state_dict()
    assert state.keys() == eager_state.keys()
    for name, value in state.items():
        torch.testing.assert_close(value, eager_state[name], rtol=1e-4, atol=1e-5,
                                   msg=f"{kind}: {name}")
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        torch.testing.assert_close(history[key], eager_history[key], rtol=1e-5, atol=1e-5)
    if kind == "pruned":  # the masks held: pruned weights compute as exact zeros
        for name, mask in pruning.masks(model).items():
            module, attr = pruning.locate(model, name)
            assert torch.equal(getattr(module, attr)[~mask.bool()],
                               torch.zeros(int((~mask.bool()).sum())))
    else:  # B learned where the rule learns it (the first layer's B included)
        moved = [not torch.equal(m.feedback, tiny_model(kind).get_submodule(n).feedback)
                 for n, m in rules.converted_layers(model)]
        assert all(moved) == (kind != "feedback_alignment")


@pytest.mark.parametrize("kind", list(KINDS))
def test_whole_step_is_one_graph(kind):
    model = tiny_model(kind)
    opt = train.make_optimizer(model, 0.05)
    batches = tiny_data().loader("train", 16, device="cpu", seed=0)
    step = WholeStep(model, opt, batches.finish)
    step.prepare()
    x, y, draws = next(iter(batches.raw()))
    counters = ([torch.zeros(())], [torch.zeros((), dtype=torch.long)],
                torch.zeros((), dtype=torch.long), torch.zeros((), dtype=torch.long))
    explained = torch._dynamo.explain(_own_code(step._step))(
        *step._tensors, x, y, draws, step.scale, counters)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    # the optimizer update is in that graph: it ran, and moved every trainable tensor
    assert counters[3].item() == 1


def test_what_the_whole_step_cannot_take_falls_back_or_raises():
    ds = tiny_data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    rules.convert(model, "direct_feedback_alignment", seed=0, input_shape=(3, 8, 8))
    assert "direct feedback alignment" in unsupported(model, train.make_optimizer(model))
    with pytest.raises(ValueError, match="compile='model'"):
        train.fit(model, ds, steps=1, batch_size=16, compile="step", progress=False)

    class ReadsGradients:
        def after_backward(self, state):
            pass

    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    why = unsupported(plain, train.make_optimizer(plain), [ReadsGradients()])
    assert "after_backward" in why
    rmsprop = torch.optim.RMSprop(plain.parameters())
    assert "RMSprop" in unsupported(plain, rmsprop)
    with pytest.raises(ValueError, match="RMSprop"):
        train.fit(plain, ds, steps=1, batch_size=16, optimizer=rmsprop, compile="step",
                  progress=False)
    # compile=True falls back to compiling the model, and says so
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = train.fit(plain, ds, steps=2, batch_size=16, optimizer=rmsprop,
                            compile=True, progress=False)
    assert history["step"] == [2]
    assert any("compiling only the model" in str(w.message) for w in caught)


def _fit_with_checkpoint(path, stop_after=None):
    model = tiny_model("weight_mirror")  # an SGD and an Adam: both states must come back
    callbacks = [] if stop_after is None else [StopAt(stop_after)]
    torch.manual_seed(7)
    with torch._inductor.config.patch(fallback_random=True):
        try:
            history = train.fit(model, tiny_data(), epochs=3, batch_size=16, lr=0.05, seed=1,
                                compile="step", progress=False, checkpoint=path,
                                callbacks=callbacks)
        except Stop:
            return None, None
    return model.state_dict(), history


@pytest.mark.slow
def test_a_compiled_run_resumes_from_its_checkpoint(tmp_path):
    ref, ref_history = _fit_with_checkpoint(None)
    path = tmp_path / "ck.pt"
    assert _fit_with_checkpoint(path, stop_after=2) == (None, None)
    assert train.checkpoint_epoch(path) == 1  # saved after epoch 1; epoch 2 ended in the stop
    state, history = _fit_with_checkpoint(path)
    assert history["epoch"] == ref_history["epoch"] == [1, 2, 3]
    torch.testing.assert_close(history["train_loss"], ref_history["train_loss"])
    for name, value in state.items():
        torch.testing.assert_close(value, ref[name], msg=name)


def test_a_step_that_cannot_be_captured_falls_back_without_losing_a_batch(monkeypatch):
    """When torch.compile cannot capture the step (here: made to fail at its first
    call), compile=True warns, compiles the model alone and trains every batch, the
    failed one included, as the eager loop does; compile='step' raises instead."""
    import nbkit.step

    def cannot_capture(self, *args):
        raise torch._dynamo.exc.TorchDynamoException("cannot capture this model")

    _, eager_losses, eager_history = train_tiny("pruned", False)
    monkeypatch.setattr(nbkit.step.WholeStep, "__call__", cannot_capture)
    with pytest.warns(UserWarning, match="cannot capture this model"):
        _, losses, history = train_tiny("pruned", True)
    torch.testing.assert_close(losses, eager_losses, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(history["test_acc"], eager_history["test_acc"])
    with pytest.raises(torch._dynamo.exc.TorchDynamoException, match="cannot capture"):
        train_tiny("pruned", "step")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["pruned", "kolen_pollack"])
def test_on_a_gpu_the_whole_step_is_one_cuda_graph_and_trains_as_eager(kind, monkeypatch):
    """On CUDA the default mode, reduce-overhead, must run the step as a CUDA graph
    (inductor counts every step it could not graph) and still train as eager (fp32;
    TF32 off so that both sides do the same arithmetic)."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    _, eager_losses, _ = train_tiny(kind, False, "cuda")
    skips = counters["inductor"]["cudagraph_skips"]
    model, losses, _ = train_tiny(kind, "step", "cuda")
    assert counters["inductor"]["cudagraph_skips"] == skips, "the step ran outside CUDA graphs"
    torch.testing.assert_close(losses, eager_losses, rtol=1e-4, atol=1e-4)
    assert next(model.parameters()).is_cuda
