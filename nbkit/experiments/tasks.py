"""One run as a task an executor can send anywhere, and how a task becomes an outcome:
the part of the runner every executor (:mod:`.executors`, :mod:`.ray_executor`) shares."""

from __future__ import annotations

import copy
import importlib
import socket
import time
from dataclasses import dataclass, field

__all__ = ["Task", "execute"]


@dataclass(frozen=True)
class Task:
    """One run to execute: its run kind (by name, with the module that registers it),
    configuration and id, and how to run it."""

    kind: str
    module: str
    config: dict
    run_id: str
    device: str | None = None
    options: dict = field(default_factory=dict)
    threads: int | None = None


def execute(task: Task) -> dict:
    """Run one task here: ``{"run_id", "result", "seconds", "where"}``, or ``{"run_id",
    "error"}`` when the run kind raised. ``where`` names the device and host that ran it
    (a worker of a cluster chooses its own device when ``task.device`` is None), and
    ``resumed_from_epoch`` the epoch of the checkpoint the run started from, if any."""
    import torch

    import nbkit
    from nbkit.device import get as get_device
    from nbkit.train import checkpoint_epoch

    from .spec import RUN_KINDS
    from .store import device_name

    importlib.import_module(task.module)  # registers the kind in a fresh worker
    if task.threads:
        torch.set_num_threads(int(task.threads))
    if "seed" in task.config:
        nbkit.seed(int(task.config["seed"]))
    dev = get_device(task.device)
    resumed = checkpoint_epoch(task.options["checkpoint"]) if "checkpoint" in task.options \
        else None
    t0 = time.perf_counter()
    try:
        result = RUN_KINDS[task.kind](copy.deepcopy(task.config), device=dev, **task.options)
    except Exception as e:  # reported to the driver, which applies its on_error
        return {"run_id": task.run_id, "error": f"{type(e).__name__}: {e}"}
    outcome = {"run_id": task.run_id, "result": result,
               "seconds": round(time.perf_counter() - t0, 3),
               "where": {"device": str(dev), "device_name": device_name(dev),
                         "host": socket.gethostname()}}
    if resumed is not None:
        outcome["resumed_from_epoch"] = resumed
    return outcome
