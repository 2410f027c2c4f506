"""Run kinds for the executor tests, importable by a fresh worker process (the tests
folder is on its sys.path): one that dies once per run (SIGKILL, as an out-of-memory
kill does), and one that computes a number from its seed with torch."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch

from nbkit.experiments import Experiment, register_kind


@register_kind("dies_once")
def dies_once(config: dict, *, device) -> dict:
    """Killed the first time it runs for a config (a marker file remembers), then fine."""
    marker = Path(config["markers"]) / f"{config['x']}.tried"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return {"value": 2 * config["x"], "noise": float(torch.randn(()))}


@register_kind("always_dies")
def always_dies(config: dict, *, device) -> dict:
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


@register_kind("slow_count")
def slow_count(config: dict, *, device) -> dict:
    """Takes a moment, and leaves a line per execution in a log, to count them."""
    import time

    with open(Path(config["markers"]) / "executions.log", "a") as f:
        f.write(f"{config['x']}\n")
    time.sleep(0.3)
    return {"x": config["x"]}


@register_kind("seeded_noise")
def seeded_noise(config: dict, *, device) -> dict:
    x = torch.randn(64, 64) @ torch.randn(64, 64)
    return {"sum": float(x.sum()), "x": config["x"]}


def experiment(kind: str, markers=None, n: int = 6) -> Experiment:
    base = {"markers": str(markers)} if markers is not None else {}
    return Experiment(f"exec_{kind}", kind, {"full": {"base": base,
                                                      "axes": {"seed": [0], "x": list(range(n))}}},
                      label=("x",))


class _KillAt:
    """Stops the process (SIGKILL, as a preemption does) at the end of ``epoch``, the
    first time only (a marker file remembers); ``raise_instead`` raises instead."""

    def __init__(self, epoch: int, marker: Path, raise_instead: bool = False):
        self.epoch, self.marker, self.raise_instead = epoch, marker, raise_instead

    def on_epoch_end(self, state):
        if state.epoch == self.epoch and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            if self.raise_instead:
                raise RuntimeError(f"stopped at the end of epoch {self.epoch}")
            os.kill(os.getpid(), signal.SIGKILL)


@register_kind("trains_stopped_once")
def trains_stopped_once(config: dict, *, device, checkpoint=None,
                        checkpoint_every: int = 1) -> dict:
    """Trains a small pruned MLP with dropout and noisy updates for ``epochs`` epochs,
    stopped once at the end of epoch ``stop_at`` (killed, or raising when ``raise``);
    returns its final weights."""
    from nbkit import models, pruning, rules, train

    model = models.build("mlp", num_classes=10, input_shape=(3, 8, 8), depth=2, width=32)
    pruning.prune(model, "magnitude", 0.3)
    marker = Path(config["markers"]) / f"{config['x']}.stopped"
    stop = _KillAt(config["stop_at"], marker, raise_instead=config.get("raise", False))
    ds = _small_data()
    history = train.fit(model, ds, epochs=config["epochs"], batch_size=64, lr=0.05,
                        seed=config["x"], progress=False, device=device,
                        callbacks=[rules.NoisyUpdates(0.01), stop],
                        checkpoint=checkpoint, checkpoint_every=checkpoint_every)
    return {"weights": [float(v) for v in torch.cat([p.detach().flatten() for p in
                                                     model.parameters()])[:200]],
            "weight_sum": float(sum(p.detach().double().sum() for p in model.parameters())),
            "test_acc": history["test_acc"]}


def _small_data():
    from nbkit import data

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (640, 3, 8, 8), generator=gen, dtype=torch.uint8)
    y = torch.randint(0, 10, (640,), generator=gen)
    return data.from_tensors(x[:512], y[:512], x[512:], y[512:])


def training_experiment(markers, *, stop_at: int = 2, epochs: int = 4, n: int = 2,
                        raise_instead: bool = False) -> Experiment:
    base = {"markers": str(markers), "stop_at": stop_at, "epochs": epochs,
            "raise": raise_instead}
    return Experiment("exec_training", "trains_stopped_once",
                      {"full": {"base": base, "axes": {"seed": [0], "x": list(range(n))}}},
                      label=("x",))


def records(out) -> dict:
    """The run files in ``out``, by file name."""
    import json

    return {p.name: json.loads(p.read_text()) for p in sorted(Path(out).glob("*.json"))}


def assert_same_as_local(tmp_path, experiment, variant: str = "full", **elsewhere) -> dict:
    """Sweep ``experiment`` with the local loop and with ``elsewhere`` (an executor and its
    options) into two folders; every run's config and result must be equal, bit for bit.
    Returns the second folder's records."""
    from nbkit import experiments as E

    kwargs = {"device": "cpu", "progress": False, "limit": elsewhere.pop("limit", None)}
    local = E.sweep(experiment, variant, tmp_path / "local", **kwargs)
    other = E.sweep(experiment, variant, tmp_path / "other", **kwargs, **elsewhere)
    assert local.ran == other.ran == local.total > 0
    a, b = records(tmp_path / "local"), records(tmp_path / "other")
    assert a.keys() == b.keys()
    for name in a:
        assert a[name]["result"] == b[name]["result"] and a[name]["config"] == b[name]["config"]
        assert b[name]["provenance"]["executor"] == elsewhere["executor"]
    return b
