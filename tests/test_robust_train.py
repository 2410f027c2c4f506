"""fit and iter_fit stop at a NaN or infinite training loss, with the step, the epoch and
the history so far, and refuse bad hyper-parameters with clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import nbkit
from nbkit import train
from nbkit.train import NonFiniteLoss, fit, iter_fit

pytestmark = pytest.mark.usefixtures("one_thread")

N_TRAIN, BATCH = 64, 16  # 4 steps per epoch


def _data():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(N_TRAIN + 32, 1, 4, 4, generator=gen)
    y = (x.mean((1, 2, 3)) > 0.5).long()
    return nbkit.data.from_tensors(x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:])


class PoisonAt(nn.Module):
    """A linear classifier whose output turns NaN (``value`` NaN) or gives an infinite
    loss (``value`` inf: class 0 gets logit -inf) on its ``at``-th forward call in
    training mode (evaluation calls are not counted)."""

    def __init__(self, at: int, value=math.nan):
        super().__init__()
        self.lin = nn.Linear(16, 2)
        self.at, self.value, self.calls = at, value, 0

    def forward(self, x):
        out = self.lin(x.flatten(1))
        if self.training:
            self.calls += 1
            if self.calls == self.at and math.isnan(self.value):
                out = out * math.nan
            elif self.calls == self.at:
                out = torch.stack([torch.full_like(out[:, 0], -math.inf),
                                   torch.zeros_like(out[:, 1])], 1)
        return out


def _fit(model, **kw):
    kw = {"epochs": 3, "batch_size": BATCH, "lr": 0.05, "augment": False, "progress": False,
          "seed": 0, "device": "cpu", **kw}
    return fit(model, _data(), **kw)


@pytest.mark.parametrize("value, what", [(math.nan, "NaN"), (math.inf, "infinite")])
def test_fit_stops_at_the_first_non_finite_loss_with_the_history_so_far(value, what):
    model = PoisonAt(6, value)  # step 6 = the 2nd step of epoch 2
    with pytest.raises(NonFiniteLoss) as info:
        _fit(model)
    e = info.value
    assert isinstance(e, ValueError)
    assert (e.step, e.epoch) == (6, 2)
    assert f"became {what} at step 6 (epoch 2 of 3)" in str(e)
    assert "Lower the learning rate" in str(e) and "coefficients" in str(e)
    assert e.history["epoch"] == [1] and e.history["step"] == [4]
    assert all(math.isfinite(v) for v in e.history["train_loss"] + e.history["test_loss"])
    assert model.calls == 6  # stopped at once: no later step ran
    # the bad step was never applied: the weights are those of the last good step
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_iter_fit_raises_through_the_generator_and_keeps_what_it_yielded():
    model = PoisonAt(3)
    states = []
    with pytest.raises(NonFiniteLoss) as info:
        for state in iter_fit(model, _data(), epochs=2, batch_size=BATCH, augment=False,
                              progress=False, device="cpu", every=1):
            states.append(state.step)
    assert states == [1, 2]
    assert info.value.step == 3 and info.value.epoch == 1
    assert info.value.history["epoch"] == []
    assert "no evaluation had been made yet" in str(info.value)


def test_on_nonfinite_continue_trains_through_as_before():
    model = PoisonAt(2)
    history = _fit(model, epochs=2, on_nonfinite="continue")
    assert history["epoch"] == [1, 2]
    assert math.isnan(history["train_loss"][0])
    assert model.calls == 8


@pytest.mark.parametrize("every, poison, raised_after, history_epochs", [
    (None, 6, 8, [1]),     # found at the end of epoch 2, before its evaluation
    (None, 12, 12, [1, 2]),  # the very last step
    (None, 2, 4, []),     # found at the end of epoch 1, before any evaluation
    (2, 1, 2, []),        # found before the yield after step 2
    (3, 7, 8, [1]),       # step 8 ends epoch 2: found at the epoch's end
])
def test_deferred_check_on_accelerators_reports_the_first_bad_step(
        monkeypatch, every, poison, raised_after, history_epochs):
    """On a GPU the first bad step is recorded on the device and read only at the epoch's
    end and before a yield; run that code path on the CPU."""
    monkeypatch.setattr(train, "EAGER_NONFINITE_CHECK", ())
    model = PoisonAt(poison)
    steps_seen = []
    with pytest.raises(NonFiniteLoss) as info:
        for state in iter_fit(model, _data(), epochs=3, batch_size=BATCH, augment=False,
                              progress=False, device="cpu", every=every):
            steps_seen.append(state.step)
    e = info.value
    assert e.step == poison and e.epoch == (poison - 1) // 4 + 1
    assert f"at step {poison} (epoch {e.epoch} of 3)" in str(e)
    assert model.calls == raised_after
    assert e.history["epoch"] == history_epochs
    assert all(s < poison for s in steps_seen)


def test_deferred_check_sees_only_the_first_bad_step(monkeypatch):
    monkeypatch.setattr(train, "EAGER_NONFINITE_CHECK", ())

    class NanFrom(PoisonAt):
        def forward(self, x):
            out = super().forward(x)
            return out * math.nan if self.training and self.calls >= self.at else out

    with pytest.raises(NonFiniteLoss) as info:
        _fit(NanFrom(2))
    assert info.value.step == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_steps_do_not_synchronise_for_the_check():
    """Between the first and the last step of an epoch nothing synchronises with the
    host (torch's sync debug mode turns any synchronisation into an error)."""
    per_epoch = N_TRAIN // BATCH

    def guard(state):
        last = state.step % per_epoch == 0
        torch.cuda.set_sync_debug_mode("default" if last else "error")

    model = PoisonAt(6)
    try:
        with pytest.raises(NonFiniteLoss) as info:
            fit(model, _data(), epochs=3, batch_size=BATCH, augment=False, progress=False,
                device="cuda", callbacks=[guard])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert (info.value.step, info.value.epoch) == (6, 2)
    assert info.value.history["epoch"] == [1]


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": 0}, "lr must be a finite number > 0, got 0"),
    ({"lr": -0.1}, "lr must be a finite number > 0"),
    ({"lr": math.nan}, "lr must be a finite number > 0, got nan"),
    ({"lr": math.inf}, "lr must be"),
    ({"lr": "0.1"}, "lr must be"),
    ({"momentum": -0.5}, "momentum must be a finite number >= 0"),
    ({"momentum": math.nan}, "momentum must be"),
    ({"weight_decay": -1e-4}, "weight_decay must be a finite number >= 0"),
    ({"weight_decay": math.inf}, "weight_decay must be"),
    ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
    ({"batch_size": 16.0}, "batch_size must be a positive int, got 16.0"),
    ({"batch_size": True}, "batch_size must be a positive int"),
    ({"steps": 0}, "steps must be a positive int or None, got 0"),
    ({"steps": -3}, "steps must be a positive int"),
    ({"steps": 2.5}, "steps must be a positive int"),
    ({"epochs": 0}, "epochs must be a positive int \\(or pass steps=N\\), got 0"),
    ({"epochs": 1.5}, "epochs must be a positive int"),
    ({"on_nonfinite": "ignore"}, "on_nonfinite must be 'raise' or 'continue'"),
])
def test_bad_hyper_parameters_are_refused_before_training(kwargs, match):
    model = PoisonAt(10**9)
    with pytest.raises(ValueError, match=match):
        _fit(model, **kwargs)
    assert model.calls == 0


def test_good_edge_values_are_accepted():
    import numpy as np

    history = _fit(PoisonAt(10**9), momentum=0, weight_decay=0.0, batch_size=np.int64(16),
                   steps=np.int64(5), epochs=0)
    assert history["step"] == [4, 5]
