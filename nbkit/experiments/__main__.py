"""Command line: run, resume and collect the declared experiments.

    python -m nbkit.experiments list
    python -m nbkit.experiments layer_collapse --quick
    python -m nbkit.experiments accuracy_vs_compression --variant short --time-budget 540
    python -m nbkit.experiments collect layer_collapse

Exit status: 0 when every run of the sweep has a valid result, 3 when some remain (the
time budget ran out, or runs failed under --keep-going; run the same command again to
continue), 1 on an error (among them a collection that would replace a results file
holding more runs: pass --force to replace it anyway), 2 on bad arguments.

``collect`` names every result file it skipped (truncated, edited, unfinished writes).
"""

from __future__ import annotations

import argparse
import json
import sys

from . import default_collect_path, default_out, get, names, store
from .runner import CollectRefused, collect, plan, sweep, write_collected


def _parse_set(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--set takes key=value (for example train.epochs=40), got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        out[key.strip()] = value
    return out


def _parse_where(items) -> dict:
    """``--where`` items as ``{key: [values]}``: a key given twice keeps either value."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--where takes key=value (for example method=synflow), "
                             f"got {item!r}")
        key, value = next(iter(_parse_set([item]).items()))
        out.setdefault(key, []).append(value)
    return out


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_const", const="quick", dest="variant",
                   help="the CPU-sized variant (same as --variant quick)")
    g.add_argument("--variant", default=None, help="full (default), short or quick")
    p.add_argument("--out", default=None,
                   help="results folder (default data/results/raw/<name>/<variant>)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="replace the seed axis")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                   help="override a config key in every run (dotted for nested keys, value "
                        "parsed as JSON), e.g. --set num_classes=100 --set train.epochs=40")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nbkit.experiments",
                                description="Resumable experiment sweeps. Commands: list, "
                                            "collect <name>, or an experiment name: "
                                            + ", ".join(names()))
    p.add_argument("command", help="an experiment name, 'list' or 'collect'")
    p.add_argument("name", nargs="?", help="the experiment to collect (after 'collect')")
    _common(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA if any)")
    p.add_argument("--limit", type=int, default=None, help="only the first N runs of the grid")
    p.add_argument("--where", action="append", metavar="KEY=VALUE", default=None,
                   help="only the runs whose config has this value (dotted keys, JSON "
                        "values; repeat a key for either value), e.g. --where method=synflow "
                        "--where log10_rho=3: the runs that matter most first")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="run every N-th run of the grid starting at run K (0 <= K < N); "
                        "start N processes with 0/N ... N-1/N to share a sweep, for "
                        "example several on one GPU, writing to the same results folder")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice); 1 is often fastest "
                        "for the quick variants on a busy machine")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="start no run that would end after this many seconds")
    p.add_argument("--compile", action="store_true",
                   help="train with the whole step compiled into one graph (a CUDA graph "
                        "on a GPU); recorded in the provenance, not part of a run's "
                        "identity")
    p.add_argument("--executor", choices=("local", "process", "ray", "slurm"),
                   default="local",
                   help="where runs run: this process (local, the default), WORKERS fresh "
                        "processes of this machine (process), Ray tasks on this machine or "
                        "a cluster (ray), or Slurm jobs (slurm; ray and slurm need pip "
                        "install 'nbkit[cluster]'). All but local retry a run whose worker "
                        "died; only this process writes results")
    p.add_argument("--workers", type=int, default=None,
                   help="processes for --executor process (default 2)")
    p.add_argument("--max-retries", type=int, default=None,
                   help="tries again for a run whose worker died (process, ray, slurm; "
                        "default 2)")
    p.add_argument("--gpus-per-run", type=float, default=None, metavar="G",
                   help="(ray) GPUs each run asks for; 0.25 packs four runs per GPU "
                        "(default 0: CPU runs)")
    p.add_argument("--cpus-per-run", type=float, default=None, metavar="C",
                   help="(ray) CPUs each run asks for (default 1)")
    p.add_argument("--address", default=None,
                   help="(ray) 'auto' or HOST:PORT joins a running Ray cluster; without it "
                        "a Ray instance is started on this machine, on 127.0.0.1 only")
    p.add_argument("--partition", default=None, help="(slurm) the partition to submit to")
    p.add_argument("--timeout-min", type=int, default=None,
                   help="(slurm) each job's time limit in minutes (default 1440)")
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="(slurm) another sbatch setting by submitit's name, e.g. "
                        "--slurm account=myproj --slurm mem=32GB")
    p.add_argument("--checkpoint-every", type=int, default=1, metavar="EPOCHS",
                   help="training runs save a checkpoint every EPOCHS epochs in "
                        "<out>/.checkpoints and resume from it when started again "
                        "(0: no checkpoints)")
    p.add_argument("--keep-going", action="store_true",
                   help="record a failing run and go on (default: stop at the first failure)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--collect", nargs="?", const="", default=None, metavar="FILE",
                   help="after the sweep, merge the results into FILE (default "
                        "data/results/<name>.json, or <name>.<variant>.json)")
    p.add_argument("--to", default=None, help="(collect) the merged JSON file to write")
    p.add_argument("--all-runs", action="store_true",
                   help="(collect) also take valid results outside the declared grid")
    p.add_argument("--force", action="store_true",
                   help="(collect) replace the merged file even when it holds more runs "
                        "than the new collection, or other results")
    return p


def _slurm_options(args) -> dict:
    """--partition, --timeout-min and --slurm KEY=VALUE, for --executor slurm."""
    extra = {}
    for item in args.slurm:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--slurm takes KEY=VALUE (e.g. account=myproj), got {item!r}")
        extra[key.strip()] = value.strip()
    return {k: v for k, v in (("partition", args.partition), ("timeout_min", args.timeout_min),
                              ("slurm", extra or None)) if v is not None}


def _parse_shard(text):
    if text is None:
        return None
    k, sep, n = text.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        shard = None
    if not sep or shard is None or shard[1] < 1 or not 0 <= shard[0] < shard[1]:
        print(f"error: --shard takes K/N with integers N >= 1 and 0 <= K < N (shards count "
              f"from 0), for example 0/4 ... 3/4; got {text!r}", file=sys.stderr)
        raise SystemExit(2)
    return shard


def _list() -> int:
    for name in names():
        exp = get(name)
        sizes = ", ".join(f"{v}: {len(plan(exp, v, '.'))} runs" for v in exp.variants)
        print(f"{name}  [{sizes}]\n    {exp.description}")
    return 0


def _collect(args, name, to) -> int:
    exp = get(name)
    variant = args.variant or "full"
    folder = args.out or default_out(exp.name, variant)
    target = to or default_collect_path(exp.name, variant)
    merged = collect(folder, exp.name, variant, seeds=args.seeds,
                     overrides=_parse_set(args.overrides), all_runs=args.all_runs)
    prov = merged["provenance"]
    for file, why in prov["invalid_file_reasons"].items():
        print(f"  skipped {folder}/{file}: {why}", file=sys.stderr)
    summary = (f"{exp.name}/{variant}: {prov['runs']} runs ({prov['runs_missing']} of "
               f"{prov['runs_declared']} declared missing, {prov['runs_outside_grid']} outside "
               f"the grid, {prov['invalid_files']} invalid files skipped), "
               f"{prov['total_seconds']:.0f} s on {', '.join(prov['devices'])}")
    try:
        write_collected(merged, target, force=args.force, source=folder)
    except CollectRefused as e:
        print(summary, flush=True)
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{summary} -> {target}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "collect":
        if not args.name:
            raise SystemExit("collect needs an experiment name: "
                             f"python -m nbkit.experiments collect <{'|'.join(names())}>")
        return _collect(args, args.name, args.to)
    if args.name:
        raise SystemExit(f"unexpected argument {args.name!r}")
    exp = get(args.command)
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    variant = args.variant or "full"
    out = args.out or default_out(exp.name, variant)
    overrides = _parse_set(args.overrides)
    shard = _parse_shard(args.shard)
    where = _parse_where(args.where)
    if args.dry_run:
        runs = plan(exp, variant, out, args.seeds, overrides, args.limit, shard, where)
        done = sum(1 for r in runs if store.read_record(r.path, r.config)[0] is not None)
        print(f"{exp.name}/{variant}: {len(runs)} runs, {done} already done, in {out}")
        for r in runs[:5]:
            print("  ", r.run_id)
        return 0
    report = sweep(exp, variant, out, device=args.device, seeds=args.seeds,
                   overrides=overrides, limit=args.limit, shard=shard, where=where,
                   progress=not args.no_progress,
                   on_error="continue" if args.keep_going else "raise",
                   time_budget=args.time_budget, compile=args.compile,
                   executor=args.executor, workers=args.workers, max_retries=args.max_retries,
                   gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                   address=args.address, checkpoint_every=args.checkpoint_every,
                   executor_options=_slurm_options(args))
    print(report)
    for run_id, error in report.failed.items():
        print(f"  failed {run_id}: {error}", file=sys.stderr)
    if args.collect is not None and (report.ran or report.already_done):
        if _collect(args, exp.name, args.collect or None):
            return 1
    return 0 if report.remaining == 0 and not report.failed else 3


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
