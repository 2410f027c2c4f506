import importlib.util
import math

import pytest

import nbkit
from nbkit.train import evaluate, fit, param_groups

REPO = nbkit.data.DATA_DIR.parent


def _small_conv():
    return nbkit.models.build("conv", depth=4, width=32)


def test_small_conv_net_learns_cifar10_mini(mini):
    nbkit.seed(0)
    model = _small_conv()
    history = fit(model, mini, epochs=4, lr=0.05, batch_size=128, seed=0, progress=False)
    assert len(history["test_acc"]) == 4
    assert history["test_acc"][-1] >= 0.35          # chance is 0.10
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert all(t > 0 for t in history["time"])
    assert history["config"]["data"] == "cifar10-mini"


def test_same_seed_same_history(mini):
    runs = []
    for _ in range(2):
        nbkit.seed(7)
        model = nbkit.models.build("conv", depth=2, width=8)
        runs.append(fit(model, mini, steps=15, batch_size=64, seed=7, progress=False))
    assert runs[0]["train_loss"] == runs[1]["train_loss"]
    assert runs[0]["test_acc"] == runs[1]["test_acc"]


def test_steps_and_schedules(mini):
    lrs = []
    model = nbkit.models.build("mlp", depth=2, width=16)
    fit(model, mini, steps=10, batch_size=500, lr=0.1, schedule="multistep", milestones=[1],
        progress=False, callbacks=[lambda s: lrs.append(s.lr)])
    assert lrs == [0.1] * 10                         # 10 steps, one epoch: no drop yet
    lrs.clear()
    fit(model, mini, steps=20, batch_size=500, lr=0.1, schedule="multistep", milestones=[1],
        progress=False, callbacks=[lambda s: lrs.append(s.lr)])
    assert lrs[:10] == [0.1] * 10 and lrs[10:] == pytest.approx([0.01] * 10)
    lrs.clear()
    fit(model, mini, steps=10, batch_size=500, lr=0.1, schedule="cosine", progress=False,
        callbacks=[lambda s: lrs.append(s.lr)])
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(
        0.05 * (1 + math.cos(math.pi * 9 / 10)))


class Recorder:
    def __init__(self):
        self.calls = []

    def on_fit_start(self, state):
        self.calls.append("start")

    def after_backward(self, state):
        assert all(p.grad is not None for p in state.model.parameters())
        self.calls.append("backward")

    def after_step(self, state):
        state.history.setdefault("steps_seen", []).append(state.step)

    def on_epoch_end(self, state):
        self.calls.append(f"epoch{state.epoch}")

    def on_fit_end(self, state):
        self.calls.append("end")


def test_callbacks_see_every_step(mini):
    rec = Recorder()
    history = fit(nbkit.models.build("mlp", depth=2, width=16), mini, steps=12, batch_size=500,
                  callbacks=[rec], progress=False)
    assert rec.calls[0] == "start" and rec.calls[-1] == "end"
    assert rec.calls.count("backward") == 12 and "epoch2" in rec.calls
    assert history["steps_seen"] == list(range(1, 13))


def test_param_groups_honour_overrides():
    model = nbkit.models.build("mlp", depth=2, width=4)
    special = model.fc.weight
    special.optim = {"weight_decay": 0.0, "lr": 0.5}
    groups = param_groups(model, lr=0.1, weight_decay=1e-4)
    assert len(groups) == 2
    assert groups[1]["params"] == [special] and groups[1]["weight_decay"] == 0.0
    assert groups[1]["lr"] == 0.5 and groups[0]["weight_decay"] == 1e-4


def test_evaluate_restores_mode(mini):
    model = _small_conv()
    model.train()
    loss, acc = evaluate(model, mini, device="cpu")
    assert model.training and 0 <= acc <= 1 and loss > 0


def test_bad_arguments(mini):
    model = _small_conv()
    with pytest.raises(ValueError, match="schedule"):
        fit(model, mini, schedule="step", progress=False)
    with pytest.raises(ValueError, match="dataset"):
        fit(model, 42, progress=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        fit(model, "mnist", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, mini, batch_size=10_000, progress=False)


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "train_throughput", REPO / "benchmarks" / "train_throughput.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fast_path_matches_the_plain_dataloader_pipeline(mini):
    """nbkit's device-resident pipeline and a plain torchvision DataLoader pipeline with an
    eager step reach the same accuracy within noise."""
    bench = _benchmark()
    accs = {}
    for name in ("nbkit", "dataloader"):
        nbkit.seed(1)
        model = nbkit.models.build("conv", depth=4, width=16)
        if name == "nbkit":
            fit(model, mini, epochs=3, lr=0.05, batch_size=128, seed=1, progress=False)
        else:
            bench.dataloader_fit(model, mini, epochs=3, lr=0.05, batch_size=128, workers=0)
        accs[name] = evaluate(model, mini, device="cpu")[1]
    assert accs["nbkit"] > 0.3 and accs["dataloader"] > 0.3
    assert abs(accs["nbkit"] - accs["dataloader"]) < 0.07, accs
