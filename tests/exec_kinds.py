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
