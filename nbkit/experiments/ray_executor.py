"""The ``"ray"`` executor: a sweep's runs as Ray tasks, on one machine or a cluster.

Each run is one Ray task that asks for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs
(a fraction packs several runs per GPU: 0.25 runs four at a time on each). Ray starts a
task again when its worker dies (``max_retries`` times); the result comes back to the
driver, which alone writes it through the store, so workers need no shared results
folder and the files are the local loop's.

``address=None`` starts a Ray instance on this machine for the sweep and stops it after;
it listens on 127.0.0.1 only. ``address="auto"`` (or ``"host:port"``) joins a running
cluster (``ray start --head`` on one machine, ``ray start --address=...`` on the others)
and leaves it running. Ray is an optional extra: ``pip install "nbkit[cluster]"``.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator

from .tasks import Task, execute

__all__ = ["RayExecutor", "LOOPBACK_ENV", "start_local"]

# Set before ray is imported, these make a Ray instance started here listen on 127.0.0.1
# only (Ray's servers otherwise bind every interface on Linux) and send no usage report.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


NO_RAY = ("the 'ray' executor needs Ray: pip install 'nbkit[cluster]' (or choose "
          "executor='process' to use this machine's cores)")


def _import_ray(local: bool):
    if local and "ray" not in sys.modules:
        for k, v in LOOPBACK_ENV.items():
            os.environ.setdefault(k, v)
    try:
        import ray
    except ImportError as e:
        raise ImportError(NO_RAY) from e
    return ray


def start_local(**options):
    """Start a Ray instance on this machine that listens on 127.0.0.1 only and return the
    ``ray`` module; ``options`` go to ``ray.init`` (``num_cpus``, ``num_gpus``: logical
    resources, say, to try GPU packing on a machine without one)."""
    ray = _import_ray(local=True)
    if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        raise RuntimeError("ray was imported before nbkit could ask it to stay on 127.0.0.1; "
                           "set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray, or "
                           "start Ray yourself (ray start --head) and pass address='auto'")
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
             **options)
    return ray


def _run_on_node(task: Task) -> dict:
    """:func:`execute`, plus which Ray node ran it."""
    import ray

    outcome = execute(task)
    outcome.setdefault("where", {})["ray_node"] = ray.get_runtime_context().get_node_id()
    return outcome


class RayExecutor:
    """Runs as Ray tasks of ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs each; a task
    whose worker dies is started again up to ``max_retries`` times, then reported as an
    error. At most as many runs are in flight as the cluster has room for, so a sweep's
    time budget still stops new runs from starting."""

    name = "ray"
    device_on_worker = True  # each task uses its node's device unless the sweep names one

    def __init__(self, gpus_per_run: float = 0.0, cpus_per_run: float = 1.0,
                 address: str | None = None, max_retries: int = 2):
        for label, value in (("gpus_per_run", gpus_per_run), ("cpus_per_run", cpus_per_run)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{label} must be a number >= 0, got {value!r}")
        if gpus_per_run > 1 and gpus_per_run != int(gpus_per_run):
            raise ValueError(f"gpus_per_run above 1 must be a whole number, got {gpus_per_run}")
        if cpus_per_run == 0 and gpus_per_run == 0:
            raise ValueError("a run needs some CPU or GPU: cpus_per_run and gpus_per_run "
                             "cannot both be 0")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if address is not None and (not isinstance(address, str) or not address):
            raise ValueError(f"address must be 'auto', 'host:port' or None, got {address!r}")
        if "ray" not in sys.modules and importlib.util.find_spec("ray") is None:
            raise ValueError(NO_RAY)  # before a sweep plans anything
        self.gpus_per_run, self.cpus_per_run = float(gpus_per_run), float(cpus_per_run)
        self.address, self.max_retries = address, max_retries
        self.retried: dict = {}  # Ray retries inside the cluster; counts are not reported

    def _connect(self):
        """(ray, whether this executor started the instance and must stop it)."""
        ray = _import_ray(local=self.address is None)
        if ray.is_initialized():
            return ray, False
        if self.address is None:
            start_local()
        else:
            ray.init(address=self.address, log_to_driver=False)
        return ray, True

    def _room(self, ray) -> int:
        """Runs the cluster can hold at once (an error when a run can never be placed)."""
        have = ray.cluster_resources()
        cpus, gpus = have.get("CPU", 0.0), have.get("GPU", 0.0)
        if self.gpus_per_run > gpus:
            raise ValueError(f"each run asks for {self.gpus_per_run:g} GPU but the Ray "
                             f"cluster has {gpus:g}; lower --gpus-per-run (0 runs on CPUs) or "
                             "join a cluster with GPUs (--address auto)")
        if self.cpus_per_run > cpus:
            raise ValueError(f"each run asks for {self.cpus_per_run:g} CPUs but the Ray "
                             f"cluster has {cpus:g}; lower cpus_per_run")
        fits = [int(cpus // self.cpus_per_run) if self.cpus_per_run else None,
                int(gpus // self.gpus_per_run) if self.gpus_per_run else None]
        return max(1, min(f for f in fits if f is not None))

    def run(self, tasks: Iterable[Task], may_start: Callable[[], bool] = lambda: True
            ) -> Iterator[tuple[Task, dict]]:
        ray, started = self._connect()
        try:
            remote = ray.remote(_run_on_node).options(
                num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                max_retries=self.max_retries, retry_exceptions=False)
            room = self._room(ray)
            source, inflight = iter(tasks), {}
            while True:
                while len(inflight) < room and may_start():
                    task = next(source, None)
                    if task is None:
                        break
                    inflight[remote.remote(task)] = task
                if not inflight:
                    return
                (ref,), _ = ray.wait(list(inflight), num_returns=1)
                task = inflight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as e:  # its worker died max_retries + 1 times
                    outcome = {"run_id": task.run_id,
                               "error": f"Ray gave up on it after {self.max_retries} "
                                        f"retries: {type(e).__name__}: {str(e)[:500]}"}
                yield task, outcome
        finally:
            if started:
                ray.shutdown()
