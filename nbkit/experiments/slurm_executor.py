"""The ``"slurm"`` executor: a sweep's runs as Slurm jobs, through submitit.

Each run is one job of ``gpus_per_run`` GPUs and ``cpus_per_run`` CPUs, submitted with
submitit from the machine that runs the sweep (a login node, say). The job's result comes
back through submitit's files in ``folder``, which must be on a filesystem the compute
nodes share (Slurm clusters have one); the driver alone writes the result records, as
with every executor. A job that ends without a result (killed, preempted, out of time or
memory) is submitted again, up to ``max_retries`` times; a training run then resumes from
its checkpoint. ``cluster="local"`` runs the jobs as processes of this machine through the
same code path, for trying a sweep (and for the tests). Needs ``pip install
"nbkit[cluster]"``.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .tasks import Task, execute

__all__ = ["SlurmExecutor"]

NO_SUBMITIT = ("the 'slurm' executor needs submitit: pip install 'nbkit[cluster]' (or "
               "choose executor='process' to use this machine's cores)")


class SlurmExecutor:
    """Runs as Slurm jobs (``cluster="slurm"``) or local processes (``"local"``), at most
    ``max_jobs`` at a time, polled every ``poll_seconds``. ``slurm`` holds further
    sbatch settings by submitit's names (``{"account": "...", "mem": "32GB"}``)."""

    name = "slurm"
    device_on_worker = True  # each job uses its node's device unless the sweep names one

    def __init__(self, folder=None, gpus_per_run: int = 0, cpus_per_run: int = 1,
                 partition: str | None = None, timeout_min: int = 24 * 60,
                 max_retries: int = 2, max_jobs: int = 64, poll_seconds: float = 10.0,
                 cluster: str = "slurm", slurm: dict | None = None):
        for label, value, low in (("gpus_per_run", gpus_per_run, 0),
                                  ("cpus_per_run", cpus_per_run, 1),
                                  ("timeout_min", timeout_min, 1), ("max_jobs", max_jobs, 1),
                                  ("max_retries", max_retries, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{label} must be an int >= {low} for executor='slurm' "
                                 f"(Slurm gives whole GPUs), got {value!r}")
        if cluster not in ("slurm", "local"):
            raise ValueError(f"cluster must be 'slurm' or 'local', got {cluster!r}")
        if importlib.util.find_spec("submitit") is None:
            raise ValueError(NO_SUBMITIT)
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError("executor='slurm' submits with sbatch, which this machine does "
                             "not have: run the sweep on the cluster's login node, or pass "
                             "cluster='local' to run the jobs here")
        self.folder = Path(folder) if folder is not None else None
        self.gpus_per_run, self.cpus_per_run = gpus_per_run, cpus_per_run
        self.partition, self.timeout_min = partition, timeout_min
        self.max_retries, self.max_jobs = max_retries, max_jobs
        self.poll_seconds, self.cluster = float(poll_seconds), cluster
        self.slurm = dict(slurm or {})
        self.retried: dict = {}  # run id -> jobs submitted again after one ended unfinished

    def _executor(self, folder: Path):
        import submitit

        if self.cluster == "local":
            ex = submitit.LocalExecutor(folder)
            ex.update_parameters(timeout_min=self.timeout_min, gpus_per_node=self.gpus_per_run)
            return ex
        ex = submitit.SlurmExecutor(folder)
        ex.update_parameters(time=self.timeout_min, gpus_per_node=self.gpus_per_run or None,
                             cpus_per_task=self.cpus_per_run, ntasks_per_node=1,
                             **({"partition": self.partition} if self.partition else {}),
                             **self.slurm)
        return ex

    def run(self, tasks: Iterable[Task], may_start: Callable[[], bool] = lambda: True
            ) -> Iterator[tuple[Task, dict]]:
        import submitit

        folder = self.folder or Path(".submitit")
        executor = self._executor(folder)
        source, inflight = iter(tasks), []
        while True:
            while len(inflight) < self.max_jobs and may_start():
                task = next(source, None)
                if task is None:
                    break
                inflight.append((task, executor.submit(execute, task)))
            if not inflight:
                return
            done = [(t, j) for t, j in inflight if j.done()]
            if not done:
                time.sleep(self.poll_seconds)
                continue
            finished = {id(j) for _, j in done}
            inflight = [(t, j) for t, j in inflight if id(j) not in finished]
            for task, job in done:
                try:
                    outcome = job.result()
                except submitit.core.utils.UncompletedJobError as e:  # killed, preempted
                    retried = self.retried.get(task.run_id, 0)
                    if retried < self.max_retries:
                        self.retried[task.run_id] = retried + 1
                        inflight.append((task, executor.submit(execute, task)))
                        continue
                    outcome = {"run_id": task.run_id,
                               "error": f"its job ended without a result {retried + 1} "
                                        f"times (job {job.job_id}; see {folder}): "
                                        f"{str(e).splitlines()[0][:300]}"}
                yield task, outcome
