"""The resumable sweep: a declared grid of runs, one atomic JSON result per run.

An :class:`Experiment` names a run kind (a function ``config -> result dict`` registered
with :func:`register_kind`) and, per variant ("quick", "full", ...), a grid::

    {"base": {...},                        # keys every run shares
     "axes": {"seed": [0, 1, 2], "method": [...], "log10_rho": [...]},   # crossed
     "include": [{"method": "dense", "log10_rho": 0.0}],  # extra points, crossed with the
                                                          # axes they do not fix
     "per": {"method": {"synflow": {"iterations": 100}}}}  # settings that depend on a value

A grid may give ``"points"`` instead of crossing every axis: a list of points, each
crossed with the axes it does not fix (for settings that go together, such as a rule and
its coefficients); ``include`` points come on top.

:func:`expand` turns a grid into a list of run configurations, ordered by the first axis
(seed first, so an interrupted sweep has complete seeds; within a value of the first
axis the ``include`` points come first). :func:`sweep` runs every
configuration that has no valid result file yet, so it can be stopped at any point and
started again without losing or repeating finished work; a corrupt or partial file is
detected and its run redone. :func:`collect` merges a results folder into one small JSON;
it names every file it skipped, and refuses to replace a results file with one that holds
fewer runs (:class:`CollectRefused`) unless told to.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..studies.results import RESULTS_DIR
from . import claims, store
from . import executors as _executors
from .spec import PREPARE, RUN_KINDS, Experiment, get, register_kind

__all__ = ["Experiment", "SweepReport", "RUN_KINDS", "register_kind", "expand", "plan",
           "sweep", "collect", "write_collected", "CollectRefused", "set_path", "DEFAULT_OUT"]

DEFAULT_OUT = RESULTS_DIR  # data/results

@dataclass
class Run:
    """One planned run: its configuration, id and result path."""

    config: dict
    run_id: str
    path: Path


@dataclass
class SweepReport:
    """What a :func:`sweep` did."""

    experiment: str
    variant: str
    out: Path
    total: int = 0
    already_done: int = 0
    ran: int = 0
    redone: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    retried: dict = field(default_factory=dict)  # run id -> times its worker died
    elsewhere: int = 0  # runs another driver held (a claim) when this one came to them
    stopped_for_time: bool = False
    setup_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def remaining(self) -> int:
        return self.total - self.already_done - self.ran

    def __str__(self):
        parts = [f"{self.experiment}/{self.variant}: {self.total} runs", f"{self.already_done} "
                 "already done", f"{self.ran} ran", f"{len(self.redone)} redone (corrupt)",
                 f"{len(self.failed)} failed", f"{self.remaining} remaining"]
        if self.elsewhere:
            parts.insert(3, f"{self.elsewhere} held by another driver")
        tail = " (stopped: time budget)" if self.stopped_for_time else ""
        return ", ".join(parts) + f" in {self.seconds:.1f} s{tail}; results in {self.out}"


# ----------------------------------------------------------------------------- grids

def set_path(config: dict, key: str, value) -> None:
    """Set ``config[key] = value``; a dotted key ("train.epochs") reaches into sub-dicts."""
    *head, last = key.split(".")
    node = config
    for part in head:
        if not isinstance(node.get(part), dict):
            raise ValueError(f"cannot set {key!r}: {part!r} is not a dict in the run config")
        node = node[part]
    node[last] = value


def expand(grid: dict, seeds=None, overrides: dict | None = None) -> list[dict]:
    """The run configurations of ``grid``, ordered by the first axis.

    ``seeds`` replaces the ``seed`` axis; ``overrides`` ({dotted key: value}) is applied
    to every configuration last, so it wins over ``base`` and ``per``.
    """
    unknown = set(grid) - {"base", "axes", "include", "per", "points"}
    if unknown:
        raise ValueError(f"unknown grid keys {sorted(unknown)}; use base, axes, include, "
                         "points, per")
    axes = dict(grid.get("axes", {}))
    if seeds is not None:
        if "seed" not in axes:
            raise ValueError("this experiment has no seed axis to override")
        axes["seed"] = [int(s) for s in seeds]
    for key, values in axes.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"axis {key!r} must be a non-empty list, got {values!r}")

    def product(fixed: dict):
        free = [k for k in axes if k not in fixed]
        for values in itertools.product(*(axes[k] for k in free)):
            yield {**fixed, **dict(zip(free, values))}

    points = [p for extra in grid.get("include", []) for p in product(dict(extra))]
    if "points" in grid:
        if not grid["points"]:
            raise ValueError("'points' must be a non-empty list of dicts")
        points.extend(p for point in grid["points"] for p in product(dict(point)))
    else:
        points.extend(product({}))
    if axes:
        first = next(iter(axes))
        order = {v: i for i, v in enumerate(axes[first])}
        points.sort(key=lambda p: order.get(p.get(first), len(order)))

    configs, seen = [], set()
    for point in points:
        config = copy.deepcopy(grid.get("base", {}))
        config.update(copy.deepcopy(point))
        for key, table in grid.get("per", {}).items():
            config.update(copy.deepcopy(table.get(config.get(key), {})))
        for key, value in (overrides or {}).items():
            set_path(config, key, copy.deepcopy(value))
        text = store.canonical(config)
        if text not in seen:
            seen.add(text)
            configs.append(config)
    return configs


def _label(config: dict, keys) -> str:
    def fmt(v):
        return f"{v:g}" if isinstance(v, float) else str(v)
    return store.slug("_".join(f"{k}={fmt(config[k])}" for k in keys if k in config)) or "run"


def check_shard(shard) -> tuple[int, int] | None:
    """``shard`` as a valid ``(k, n)`` pair (or None); see :func:`plan`."""
    if shard is None:
        return None
    try:
        k, n = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ValueError(f"shard must be a pair (k, n) of integers, got {shard!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"shard ({k}, {n}) is out of range: n must be >= 1 and "
                         f"0 <= k < n (shards are numbered from 0)")
    return k, n


_MISSING = object()


def _value(config: dict, key: str):
    """``config[key]`` for a dotted key, or ``_MISSING``."""
    for part in key.split("."):
        if not isinstance(config, dict) or part not in config:
            return _MISSING
        config = config[part]
    return config


def select(configs: list[dict], where: dict) -> list[dict]:
    """The configs whose every ``where`` key (dotted for nested keys) has one of the
    given values (a value or a list of them), in grid order. A key no config has, or a
    selection that keeps nothing, is an error that lists what the grid holds."""
    for key, wanted in where.items():
        wanted = wanted if isinstance(wanted, (list, tuple)) else [wanted]
        values = [_value(c, key) for c in configs]
        if all(v is _MISSING for v in values):
            raise ValueError(f"no run of this grid has a config key {key!r}; select on one of "
                             f"{sorted(configs[0]) if configs else []}")
        configs = [c for c, v in zip(configs, values) if v in wanted]
        if not configs:
            have = sorted({json.dumps(v) for v in values if v is not _MISSING})
            raise ValueError(f"no run of this grid has {key} in {wanted}; its values there: "
                             f"{', '.join(have)}")
    return configs


def plan(experiment: Experiment, variant: str, out, seeds=None, overrides=None,
         limit: int | None = None, shard=None, where: dict | None = None) -> list[Run]:
    """The runs of one variant, each with its id and result path under ``out``.

    ``where={"method": "synflow", "log10_rho": [3.0]}`` keeps the runs whose config has
    those values (:func:`select`; before ``limit``), so that a short session can run the
    runs that matter most first. ``shard=(k, n)`` keeps every n-th run of the grid,
    starting at run k (after ``limit``), so that n processes, on one GPU or several
    machines, can share one sweep and one results folder: the shards are disjoint and
    together cover the grid.
    """
    shard = check_shard(shard)
    configs = expand(experiment.grid(variant), seeds, overrides)
    if where:
        configs = select(configs, where)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        configs = configs[:limit]
    if shard is not None:
        configs = configs[shard[0]::shard[1]]
    out = Path(out)
    runs = []
    for config in configs:
        run_id = (f"{_label(config, experiment.label)}--"
                  f"{store.config_hash(experiment.name, experiment.kind, config)}")
        runs.append(Run(config, run_id, out / store.run_filename(run_id)))
    return runs


# ----------------------------------------------------------------------------- sweep

def _resolve(experiment) -> Experiment:
    return experiment if isinstance(experiment, Experiment) else get(experiment)


def sweep(experiment, variant: str = "full", out=None, *, device=None, seeds=None,
          overrides: dict | None = None, limit: int | None = None, shard=None,
          where: dict | None = None,
          progress: bool = True, on_error: str = "raise",
          time_budget: float | None = None, compile: bool = False,
          executor="local", workers: int | None = None, max_retries: int | None = None,
          gpus_per_run: float | None = None, cpus_per_run: float | None = None,
          address: str | None = None, checkpoint_every: int = 1,
          executor_options: dict | None = None) -> SweepReport:
    """Run every run of ``experiment``'s ``variant`` that has no valid result in ``out``.

    Args:
        experiment: an :class:`Experiment` or the name of a declared one.
        out: the results folder (default ``data/results/raw/<name>/<variant>``).
        device: passed to the run kind; recorded, with its name, in the provenance.
        seeds, overrides, limit, shard, where: see :func:`expand` and :func:`plan`. Shards of
            one sweep may run at the same time on the same ``out``.
        on_error: ``"raise"`` stops the sweep at the first failing run (finished runs
            stay); ``"continue"`` records the error in the report and goes on.
        time_budget: seconds; no new run starts when the time spent so far plus the
            longest run of this sweep would exceed it, so a sweep can end cleanly before
            a machine is taken back. Rerun to continue.
        compile: train with the compiled whole step (``fit(compile=True)``: one
            ``torch.compile`` graph per step, a CUDA graph on a GPU; compiling the model
            alone was about 2.5x faster per epoch on an H100). An execution setting like
            ``device``: it is recorded in
            the provenance but is not part of a run's identity, so runs made with and
            without it are the same runs. Only for run kinds that train.
        executor: where runs run (:mod:`.executors`): ``"local"`` (this process, one
            after another), ``"process"`` (``workers`` fresh processes of this machine;
            a run whose worker dies is retried up to ``max_retries`` times) or ``"ray"``
            (Ray tasks of ``gpus_per_run`` GPUs and ``cpus_per_run`` CPUs each, retried
            ``max_retries`` times; ``address="auto"`` joins a running cluster, None starts
            one on this machine, on 127.0.0.1). Whichever runs them, only this process
            writes results, so the files, the run identity and ``collect`` are the same.
        checkpoint_every: a run kind that trains saves a checkpoint every this many
            epochs under ``out/.checkpoints`` (0: none); a run started again (after a
            crash, a kill, a preemption) resumes from its checkpoint, and its
            provenance says from which epoch. A run's checkpoint is deleted once its
            result is written.
    """
    if on_error not in ("raise", "continue"):
        raise ValueError(f"on_error must be 'raise' or 'continue', got {on_error!r}")
    exp = _resolve(experiment)
    if exp.kind not in RUN_KINDS:
        raise ValueError(f"run kind {exp.kind!r} of experiment {exp.name!r} is not "
                         f"registered; known kinds: {sorted(RUN_KINDS)}")
    kind = RUN_KINDS[exp.kind]
    options = {"compile": True} if compile else {}
    takes = inspect.signature(kind).parameters
    if compile and "compile" not in takes:
        raise ValueError(f"run kind {exp.kind!r} of experiment {exp.name!r} trains "
                         "nothing, so compile=True has no meaning for it; leave it off")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) \
            or checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be an int >= 0 (0: no checkpoints), got "
                         f"{checkpoint_every!r}")
    out = Path(out) if out is not None else DEFAULT_OUT / "raw" / exp.name / variant
    if isinstance(executor, str):
        extra = dict(executor_options or {})
        if "folder" in _executors.options(executor):  # where job files live (Slurm)
            extra.setdefault("folder", out / ".submitit")
        pool = _executors.make(executor, workers=workers, max_retries=max_retries,
                               gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run,
                               address=address, **extra)
    elif callable(getattr(executor, "run", None)):
        pool, executor = executor, getattr(executor, "name", type(executor).__name__)
    else:
        raise ValueError(f"executor must be a name ({sorted(_executors.EXECUTORS)}) or an "
                         f"object with a run(tasks, may_start) method, got {executor!r}")
    checkpoints = checkpoint_every > 0 and "checkpoint" in takes
    runs = plan(exp, variant, out, seeds, overrides, limit, shard, where)
    report = SweepReport(exp.name, variant, out, total=len(runs))
    t_start = time.perf_counter()

    out.mkdir(parents=True, exist_ok=True)
    # an interrupted write's leftovers, but not those of a run another driver holds now
    store.clean_temporaries(out, [r.run_id for r in runs if not claims.held(out, r.run_id)])
    pending = []
    for run in runs:
        record, reason = store.read_record(run.path, expect_config=run.config)
        if record is not None:
            report.already_done += 1
            continue
        if reason != "missing":
            warnings.warn(f"redoing {run.path.name}: {reason}", stacklevel=2)
            report.redone[run.run_id] = reason
            run.path.unlink(missing_ok=True)
        pending.append(run)
    if not pending:
        report.seconds = time.perf_counter() - t_start
        return report

    import nbkit
    from nbkit.device import get as get_device
    from nbkit.train import checkpoint_epoch

    dev = get_device(device)
    static = {**store.provenance(dev), "compile": bool(compile), "executor": executor}
    if exp.kind in PREPARE:
        t0 = time.perf_counter()
        PREPARE[exp.kind](copy.deepcopy(pending[0].config), device=dev)
        report.setup_seconds = time.perf_counter() - t0
    longest = 0.0
    bar = tqdm(total=len(runs), initial=report.already_done, desc=f"{exp.name}/{variant}",
               unit="run", disable=not progress, dynamic_ncols=True)
    def run_options(run: Run) -> dict:
        if not checkpoints:
            return options
        return {**options, "checkpoint": str(_checkpoint_path(out, run.run_id)),
                "checkpoint_every": checkpoint_every}

    if executor != "local":
        try:
            _sweep_elsewhere(pool, exp, variant, pending, kind, device, dev, run_options,
                             static, out, report, bar, on_error, time_budget, t_start)
        finally:
            bar.close()
            claims.tidy(out)
            report.seconds = time.perf_counter() - t_start
        return report
    try:
        for run in pending:
            spent = time.perf_counter() - t_start
            if time_budget is not None and report.ran and spent + longest > time_budget:
                report.stopped_for_time = True
                break
            if not _take(out, run, report):
                bar.update(1)
                continue
            bar.set_postfix_str(run.run_id.split("--")[0][:60])
            if "seed" in run.config:
                nbkit.seed(int(run.config["seed"]))
            run_opts = run_options(run)
            resumed = (checkpoint_epoch(run_opts["checkpoint"]) if "checkpoint" in run_opts
                       else None)
            t0 = time.perf_counter()
            try:
                try:
                    result = kind(copy.deepcopy(run.config), device=dev, **run_opts)
                except Exception as e:
                    if on_error == "raise":
                        raise
                    report.failed[run.run_id] = f"{type(e).__name__}: {e}"
                    bar.update(1)
                    continue
                seconds = time.perf_counter() - t0
                longest = max(longest, seconds)
                prov = {**static, "date": store.provenance_date(),
                        "seconds": round(seconds, 3),
                        **({"resumed_from_epoch": resumed} if resumed is not None else {})}
                store.write_record(out, {"schema": store.SCHEMA, "experiment": exp.name,
                                         "variant": variant, "kind": exp.kind,
                                         "run_id": run.run_id, "config": run.config,
                                         "result": result, "provenance": prov})
                _checkpoint_path(out, run.run_id).unlink(missing_ok=True)
            finally:
                claims.release(out, run.run_id)
            report.ran += 1
            bar.update(1)
    finally:
        bar.close()
        claims.tidy(out)
        report.seconds = time.perf_counter() - t_start
    return report


def _take(out: Path, run: Run, report: SweepReport) -> bool:
    """Claim ``run`` for this driver; False (and counted) when another driver holds it or
    has finished it since this sweep planned."""
    if not claims.claim(out, run.run_id):
        report.elsewhere += 1
        return False
    if store.read_record(run.path, expect_config=run.config)[0] is not None:
        claims.release(out, run.run_id)
        report.already_done += 1
        return False
    store.clean_temporaries(out, [run.run_id])
    return True


def _checkpoint_path(out: Path, run_id: str) -> Path:
    """Where a training run of the sweep in ``out`` keeps its checkpoint."""
    return out / ".checkpoints" / f"{store.slug(run_id)}.pt"


def _sweep_elsewhere(pool, exp, variant, pending, kind, device, dev, run_options, static,
                     out, report, bar, on_error, time_budget, t_start):
    """The sweep's loop for an executor other than this process: tasks out, records in
    (written here, in the order they finish)."""
    import torch

    longest = [0.0]

    def may_start() -> bool:
        spent = time.perf_counter() - t_start
        if time_budget is not None and report.ran and spent + longest[0] > time_budget:
            report.stopped_for_time = True
            return False
        return True

    # a cluster's worker picks its own device unless the sweep was given one
    task_device = None if device is None and getattr(pool, "device_on_worker", False) \
        else str(dev)
    tasks = (_executors.Task(exp.kind, kind.__module__, run.config, run.run_id,
                             task_device, run_options(run), torch.get_num_threads())
             for run in pending if _take(out, run, report))  # claimed as they are started
    by_id = {run.run_id: run for run in pending}
    for task, outcome in pool.run(tasks, may_start):
        try:
            if "error" in outcome:
                if on_error == "raise":
                    raise RuntimeError(f"run {task.run_id} failed: {outcome['error']}")
                report.failed[task.run_id] = outcome["error"]
                bar.update(1)
                continue
            longest[0] = max(longest[0], outcome["seconds"])
            prov = {**static, **outcome.get("where", {}), "date": store.provenance_date(),
                    "seconds": outcome["seconds"]}
            if outcome.get("resumed_from_epoch") is not None:
                prov["resumed_from_epoch"] = outcome["resumed_from_epoch"]
            store.write_record(out, {"schema": store.SCHEMA, "experiment": exp.name,
                                     "variant": variant, "kind": exp.kind,
                                     "run_id": task.run_id,
                                     "config": by_id[task.run_id].config,
                                     "result": outcome["result"], "provenance": prov})
            _checkpoint_path(out, task.run_id).unlink(missing_ok=True)
        finally:  # after the record is written: no other driver can start it in between
            claims.release(out, task.run_id)
        report.ran += 1
        bar.update(1)
    report.retried = dict(getattr(pool, "retried", {}))


# --------------------------------------------------------------------------- collect

def _round(value, digits=6):
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    return value


class CollectRefused(ValueError):
    """:func:`collect` would replace a results file with one that holds fewer runs (or
    that is not a collected results file of the same experiment and variant). ``path``
    is the file, ``existing_runs`` and ``new_runs`` the run counts (None if unknown)."""

    def __init__(self, message: str, *, path: Path, existing_runs=None, new_runs=None):
        super().__init__(message)
        self.path, self.existing_runs, self.new_runs = path, existing_runs, new_runs


def _existing_collection(path: Path) -> tuple[dict | None, int | None, str]:
    """(document, run count, problem) of an existing collected results file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return None, None, f"it cannot be read as JSON ({type(e).__name__}: {e})"
    if not isinstance(doc, dict):
        return None, None, "it is not a JSON object"
    runs, prov = doc.get("runs"), doc.get("provenance")
    count = (len(runs) if isinstance(runs, list)
             else prov.get("runs") if isinstance(prov, dict) else None)
    if isinstance(count, bool) or not isinstance(count, int):
        return doc, None, "it holds no run list or run count"
    return doc, count, ""


def write_collected(merged: dict, to, *, force: bool = False, source=None) -> Path:
    """Write a merged dict of :func:`collect` to ``to`` as JSON, atomically (a temporary
    file renamed over it, so an interrupted write leaves the old file whole).

    An existing ``to`` is only replaced when it is a collected results file of the same
    experiment and variant holding at most as many runs as ``merged``, or with
    ``force=True``; otherwise :class:`CollectRefused` says why and how to go on.
    ``source`` (the results folder) is named in that message."""
    to = Path(to)
    new = len(merged.get("runs", []))
    if to.exists() and not force:
        how = ("Collect from the folder that holds all the runs (--out / the first argument "
               "of collect), write the new collection elsewhere (to=... / --to FILE), or "
               "pass force=True (--force on the command line) to replace it anyway.")
        doc, old, problem = _existing_collection(to)
        if problem:
            raise CollectRefused(f"refusing to replace {to}: {problem}, so it may not be a "
                                 f"collected results file. {how}", path=to, new_runs=new)
        mine = (merged.get("experiment"), merged.get("variant"))
        theirs = (doc.get("experiment", mine[0]), doc.get("variant", mine[1]))
        if theirs != mine:
            raise CollectRefused(f"refusing to replace {to}: it holds {old} runs of "
                                 f"{theirs[0]}/{theirs[1]}, and this collection is "
                                 f"{mine[0]}/{mine[1]}. {how}", path=to, existing_runs=old,
                                 new_runs=new)
        if new < old:
            where = f" from {source}" if source is not None else ""
            raise CollectRefused(f"refusing to replace {to}, which holds {old} runs, with a "
                                 f"collection of only {new} runs{where}: {old - new} runs "
                                 f"would be lost. {how}", path=to, existing_runs=old,
                                 new_runs=new)
    text = json.dumps(merged, separators=(",", ":"), allow_nan=False) + "\n"
    return store.write_text_atomic(to, text)


def collect(folder, experiment=None, variant: str | None = None, to=None, *,
            seeds=None, overrides: dict | None = None, all_runs: bool = False,
            digits: int = 5, force: bool = False) -> dict:
    """Merge the valid result files in ``folder`` into one small dict (and write it as
    JSON to ``to`` when given, atomically; see :func:`write_collected`: an existing file
    that holds more runs is only replaced with ``force=True``).

    Files that were skipped (unreadable, truncated, edited, or the temporary file of an
    unfinished write) are named in the provenance: ``invalid_file_names`` lists them and
    ``invalid_file_reasons`` says why each was skipped; ``invalid_files`` counts them.

    The merged dict holds the configuration that all runs share (``config``), each run's
    differing keys and result (``runs``), the provenance (commits, devices, torch
    versions, dates, GPU time), how many of the variant's declared runs are present, and
    the experiment's ``summary``. ``seeds`` and ``overrides``, as given to :func:`sweep`,
    define which runs are declared; valid results of other configurations in the folder
    (an earlier grid, say) are left out and counted, unless ``all_runs`` is set. Floats
    are rounded to ``digits`` significant digits.
    """
    folder = Path(folder)
    records, bad = store.scan(folder)
    for tmp in store.temporaries(folder):
        bad[tmp.name] = ("the temporary file of an unfinished write (a sweep was stopped "
                         "while writing this run, or is writing it now)")
    if experiment is None:
        names = sorted({r["experiment"] for r in records})
        if len(names) != 1:
            raise ValueError(f"{folder} holds results of {names or 'no experiment'}; "
                             "name the experiment to collect")
        experiment = names[0]
    exp = _resolve(experiment)
    records = [r for r in records if r["experiment"] == exp.name]
    variants = sorted({r.get("variant", "?") for r in records})
    if variant is None:
        if len(variants) > 1:
            raise ValueError(f"{folder} mixes variants {variants} of {exp.name!r}; pass "
                             "variant= to choose one")
        variant = variants[0] if variants else None
    records = [r for r in records if r.get("variant", "?") == variant]
    declared = set()
    if variant in exp.variants:
        declared = {p.run_id for p in plan(exp, variant, folder, seeds, overrides)}
    outside = [r for r in records if r["run_id"] not in declared]
    if declared and not all_runs:
        records = [r for r in records if r["run_id"] in declared]
    if not records:
        skipped = "".join(f"; skipped {name}: {why}" for name, why in sorted(bad.items()))
        raise FileNotFoundError(f"no valid {exp.name!r} results in {folder}; run "
                                f"`python -m nbkit.experiments {exp.name} --out {folder}` "
                                "first (or pass all_runs=True to take results outside the "
                                f"declared grid){skipped}")

    configs = [r["config"] for r in records]
    common = {k: v for k, v in configs[0].items()
              if all(k in c and store.canonical(c[k]) == store.canonical(v) for c in configs)}
    runs = [{"run_id": r["run_id"],
             "config": {k: v for k, v in r["config"].items() if k not in common},
             "result": exp.compact(r["result"]) if exp.compact else r["result"],
             "seconds": r["provenance"].get("seconds"),
             "device_name": r["provenance"].get("device_name")} for r in records]

    present = {r["run_id"] for r in records}
    prov = [r["provenance"] for r in records]
    seconds = [p.get("seconds") or 0.0 for p in prov]
    merged = {
        "schema": store.SCHEMA + "/collected",
        "experiment": exp.name,
        "variant": variant,
        "description": exp.description,
        "notes": exp.notes,
        "config": common,
        "provenance": {
            "git_commits": sorted({str(p.get("git_commit")) for p in prov}),
            "git_dirty": any(bool(p.get("git_dirty")) for p in prov),
            "devices": sorted({str(p.get("device_name")) for p in prov}),
            "torch": sorted({str(p.get("torch")) for p in prov}),
            "compiled": sorted({bool(p.get("compile")) for p in prov}),
            "first_date": min(str(p.get("date")) for p in prov),
            "last_date": max(str(p.get("date")) for p in prov),
            "runs": len(records),
            "runs_declared": len(declared),
            "runs_missing": len(declared - present),
            "runs_outside_grid": len(outside),
            "runs_outside_grid_included": bool(all_runs and outside),
            "invalid_files": len(bad),
            "invalid_file_names": sorted(bad),
            "invalid_file_reasons": dict(sorted(bad.items())),
            "total_seconds": round(sum(seconds), 1),
            "seconds_per_run": round(sum(seconds) / len(seconds), 2),
        },
        "summary": exp.summarize(records) if exp.summarize else {},
        "runs": runs,
    }
    merged = _round(store.jsonable(merged), digits)
    if to is not None:
        write_collected(merged, to, force=force, source=folder)
    return merged
