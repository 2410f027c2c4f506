"""How a sweep's missing runs become results.

The driver (:func:`nbkit.experiments.sweep`) plans the runs that have no valid result
yet, hands them to an executor, and writes every result that comes back through the
store, so the file format, the run identity and ``collect`` do not depend on where a run
ran. An executor only turns a :class:`Task` into an outcome:

- ``"local"``: in this process, one run after another (the default);
- ``"process"``: ``workers`` processes on this machine (started fresh, so each imports
  nbkit itself), at most ``workers`` runs at a time. A worker that dies (killed, out of
  memory) takes the runs in flight with it: each is started again, alone, and one that
  keeps killing its worker is reported after ``max_retries`` tries. Nothing is written
  twice, since only the driver writes.
- ``"ray"``: Ray tasks with fractional GPU requests, on this machine or a cluster
  (:mod:`.ray_executor`; needs ``pip install "nbkit[cluster]"``);
- ``"slurm"``: Slurm jobs through submitit (:mod:`.slurm_executor`, same extra).

A run computes the same numbers wherever it runs: each worker seeds as the local loop
does and uses the driver's number of torch threads.
"""

from __future__ import annotations

import inspect
import multiprocessing
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .tasks import Task, execute

__all__ = ["Task", "execute", "EXECUTORS", "LocalExecutor", "ProcessExecutor", "make",
           "options"]


class LocalExecutor:
    """Every run in this process, in order (the sweep's own loop does this; the class
    makes the choice explicit and testable)."""

    name = "local"

    def run(self, tasks: Iterable[Task], may_start: Callable[[], bool] = lambda: True
            ) -> Iterator[tuple[Task, dict]]:
        for task in tasks:
            if not may_start():
                return
            yield task, execute(task)


class ProcessExecutor:
    """Runs on ``workers`` fresh processes of this machine. When a worker dies, every run
    then in flight is started again, each alone in a fresh worker, so that the one that
    kills its worker is found; a run that dies alone more than ``max_retries`` times is
    reported as an error instead of retried for ever."""

    name = "process"

    def __init__(self, workers: int = 2, max_retries: int = 2):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) \
                or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.workers, self.max_retries = workers, max_retries
        self.retried: Counter = Counter()  # run id -> times started again after a death
        self.deaths: Counter = Counter()   # run id -> times it killed its worker alone

    def run(self, tasks: Iterable[Task], may_start: Callable[[], bool] = lambda: True
            ) -> Iterator[tuple[Task, dict]]:
        source, queue, suspects = iter(tasks), deque(), deque()  # taken as runs start
        context = multiprocessing.get_context("spawn")

        def refill() -> bool:
            if not queue:
                task = next(source, None)
                if task is not None:
                    queue.append(task)
            return bool(queue)

        while refill() or suspects:
            if not may_start():
                return  # out of time: the rest stays for a rerun
            if suspects:  # alone in a fresh worker: a death is this run's own
                task = suspects.popleft()
                try:
                    with ProcessPoolExecutor(1, mp_context=context) as pool:
                        outcome = pool.submit(execute, task).result()
                except BrokenProcessPool:
                    self.deaths[task.run_id] += 1
                    if self.deaths[task.run_id] > self.max_retries:
                        yield task, {"run_id": task.run_id,
                                     "error": f"its worker died {self.deaths[task.run_id]} "
                                              "times when it ran alone (killed, or out of "
                                              "memory?)"}
                    else:
                        self.retried[task.run_id] += 1
                        suspects.append(task)
                    continue
                yield task, outcome
                continue
            inflight = {}
            try:
                with ProcessPoolExecutor(self.workers, mp_context=context) as pool:
                    while refill() or inflight:
                        while len(inflight) < self.workers and may_start() and refill():
                            task = queue.popleft()
                            inflight[pool.submit(execute, task)] = task
                        if not inflight:
                            return
                        done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                        for future in done:
                            outcome = future.result()  # a dead worker raises here, and
                            task = inflight.pop(future)  # its run stays in flight
                            yield task, outcome
            except BrokenProcessPool:
                for task in inflight.values():  # lost their worker or their pool
                    self.retried[task.run_id] += 1
                    suspects.append(task)


EXECUTORS = ("local", "process", "ray", "slurm")


def _class(name: str):
    if name == "ray":
        from .ray_executor import RayExecutor  # Ray itself is imported when a sweep runs

        return RayExecutor
    if name == "slurm":
        from .slurm_executor import SlurmExecutor  # submitit too

        return SlurmExecutor
    return {"local": LocalExecutor, "process": ProcessExecutor}[name]


def options(name: str) -> list[str]:
    """The options executor ``name`` takes."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose one of {list(EXECUTORS)}")
    return list(inspect.signature(_class(name)).parameters)


def make(name: str = "local", **settings):
    """An executor by name, with its options (None means the executor's default):
    ``"local"`` (none); ``"process"`` (``workers``, ``max_retries``); ``"ray"``
    (``gpus_per_run``, ``cpus_per_run``, ``address``, ``max_retries``); ``"slurm"``
    (``gpus_per_run``, ``cpus_per_run``, ``partition``, ``timeout_min``, ``folder``,
    ``slurm``, ``cluster``, ``max_retries``). An option the executor does not take is an
    error."""
    takes = options(name)
    cls = _class(name)
    given = {k: v for k, v in settings.items() if v is not None}
    wrong = [k for k in given if k not in takes]
    if wrong:
        raise ValueError(f"{', '.join(wrong)} do not apply to executor={name!r}; it takes "
                         f"{', '.join(takes) or 'no options'}")
    return cls(**given)
