"""How quick quick mode is: every notebook's run time, and every widget update's latency.

    python benchmarks/quick_mode.py [--quick] [--part notebooks|widgets|both]
                                    [--notebooks 01 02 ...] [--threads N] [--busy N]

The design targets, on a 2-core CPU: all notebooks in quick mode together in ≤ 6 min, and
a widget update with quick-mode defaults in ≤ 0.3 s. Each is printed as a ratio against
its target (≤ 1 meets it).

- ``notebooks``: executes each notebook in a fresh Jupyter kernel, as a reader's "Run
  all" does (widget state not stored), with an empty cache of decoded images as on a
  fresh machine, and prints the wall time per notebook and the total.
- ``widgets``: runs each notebook's code in this process, then moves every control of
  every app that redraws on a change (not the apps with a Train button, whose work is
  training with a progress bar) through its values, and reads the app's own update time:
  compute, figure build and the FigureWidget update, up to the moment the kernel would
  send the figure to the browser. The first visit of a value may compute (a new model's
  sweep, say); a revisit is served from the cache. Both are reported.

``--quick`` moves each control through at most 3 values. ``--busy N`` keeps N cores busy
(a pure-Python spin loop each, standing in for the browser a reader always has open)
while it measures: quick mode must stay quick on a machine that is not idle.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NOTEBOOKS_TARGET_S = 6 * 60
UPDATE_TARGET_S = 0.3


def notebook_paths(prefixes) -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if prefixes:
        paths = [p for p in paths if any(p.name.startswith(x) for x in prefixes)]
        if not paths:
            raise SystemExit(f"no notebook starts with {prefixes}; choose from "
                             f"{[p.name[:2] for p in sorted(NOTEBOOKS.glob('*.ipynb'))]}")
    return paths


# ------------------------------------------------------------------ notebooks


def time_notebooks(paths) -> dict:
    import nbformat
    from nbclient import NotebookClient

    times = {}
    cache = tempfile.TemporaryDirectory()  # a fresh machine: no decoded images cached yet
    os.environ["NBKIT_CACHE"] = cache.name
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=1800, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}},
                                store_widget_state=False,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"])
        t0 = time.perf_counter()
        client.execute()
        times[path.name] = time.perf_counter() - t0
        print(f"  {path.name:<34} {times[path.name]:7.1f} s", flush=True)
    cache.cleanup()
    total = sum(times.values())
    print(f"  {'all notebooks':<34} {total:7.1f} s   target ≤ {NOTEBOOKS_TARGET_S} s: "
          f"ratio {total / NOTEBOOKS_TARGET_S:.2f}")
    return {"seconds": times, "total_s": total, "ratio": total / NOTEBOOKS_TARGET_S}


# ------------------------------------------------------------------ widgets


def run_notebook_here(path: Path) -> None:
    """Execute the notebook's code cells in this process (their output is discarded)."""
    nb = json.loads(path.read_text())
    namespace = {"__name__": "__main__"}
    cwd = os.getcwd()
    os.chdir(NOTEBOOKS)
    try:
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                with contextlib.redirect_stdout(io.StringIO()), \
                        contextlib.redirect_stderr(io.StringIO()):
                    exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
    finally:
        os.chdir(cwd)


def control_moves(control, limit: int | None) -> list[tuple[str, dict]]:
    """The settings a reader can pick, spread over the control's range, as
    ``(label, {attribute: value})``; the control's own setting comes last."""
    if hasattr(control, "options"):  # dropdowns, toggle buttons, selection sliders
        start = control.index
        moves = [(str(label), {"index": i})
                 for i, label in enumerate(getattr(control, "_options_labels", control.options))]
        back = moves.pop(start)
    elif isinstance(control.value, bool):
        moves, back = [(str(not control.value), {"value": not control.value})], None
    elif hasattr(control, "min") and hasattr(control, "max"):
        lo, hi, n = control.min, control.max, 5
        values = [lo + i * (hi - lo) / (n - 1) for i in range(n)]
        if isinstance(control.value, int):
            values = sorted({int(round(v)) for v in values})
        moves = [(f"{v:g}", {"value": v}) for v in values if v != control.value]
        back = None
    else:
        return []
    if limit is not None and len(moves) > limit:
        moves = [moves[int(i * len(moves) / limit)] for i in range(limit)]
    return [*moves, back or (str(control.value), {"value": control.value})]


def sweep_controls(app, limit) -> list[dict]:
    """Move each control through its settings and back, twice; one record per update."""
    records = []
    for name, control in app.controls.items():
        moves = control_moves(control, limit)
        for visit in ("first", "revisit"):
            for label, setting in moves:
                for attribute, value in setting.items():
                    setattr(control, attribute, value)
                records.append({"control": name, "value": label, "visit": visit,
                                "seconds": app.last_update_s,
                                "error": None if app.error is None else str(app.error)})
    return records


def time_widgets(paths, limit) -> dict:
    from nbkit.widgets.app import App

    report = {}
    for path in paths:
        before = len(App.instances)
        t0 = time.perf_counter()
        run_notebook_here(path)
        setup = time.perf_counter() - t0
        apps = [a for a in App.instances[before:] if a.button is None]
        print(f"  {path.name}: ran in {setup:.1f} s; {len(apps)} app(s) redraw on a change")
        for i, app in enumerate(apps):
            title = re.sub(r"<[^>]+>", " ", app.figure.layout.title.text or f"app {i}")
            records = sweep_controls(app, limit)
            errors = [r for r in records if r["error"]]
            for visit in ("first", "revisit"):
                s = [r["seconds"] for r in records if r["visit"] == visit]
                if s:
                    print(f"    {title[:60]:<60} {visit:>7}: {len(s):3d} updates, median "
                          f"{statistics.median(s):.3f} s, max {max(s):.3f} s")
            slow = sorted((r for r in records if r["seconds"] > UPDATE_TARGET_S),
                          key=lambda r: -r["seconds"])[:3]
            for r in slow:
                print(f"      slow: {r['control']} = {r['value']} ({r['visit']}): "
                      f"{r['seconds']:.2f} s")
            for r in errors:
                print(f"      ERROR at {r['control']} = {r['value']}: {r['error']}")
            report[f"{path.name}/{title}"] = records
    every = [r["seconds"] for rs in report.values() for r in rs]
    revisits = [r["seconds"] for rs in report.values() for r in rs if r["visit"] == "revisit"]
    if every:
        med, p90 = statistics.median(every), sorted(every)[int(0.9 * (len(every) - 1))]
        print(f"  all {len(every)} updates: median {med:.3f} s, 90th percentile {p90:.3f} s, "
              f"max {max(every):.3f} s; revisits: median {statistics.median(revisits):.3f} s")
        print(f"  median update against the {UPDATE_TARGET_S} s target: ratio "
              f"{med / UPDATE_TARGET_S:.2f}; 90th percentile: {p90 / UPDATE_TARGET_S:.2f}")
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="at most 3 values per control")
    ap.add_argument("--part", choices=["notebooks", "widgets", "both"], default="both")
    ap.add_argument("--notebooks", nargs="*", default=None,
                    help="notebook number prefixes, e.g. 01 04 (default: all)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of this process, i.e. of the widgets part (notebook "
                         "kernels use nbkit's own settings)")
    ap.add_argument("--busy", type=int, default=0, metavar="N",
                    help="keep N cores busy with a spin loop while measuring")
    args = ap.parse_args(argv)
    os.environ["NBKIT_MODE"] = "quick"
    paths = notebook_paths(args.notebooks)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"quick mode on {os.cpu_count()} CPU core(s), torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)"
          + (f", {args.busy} core(s) kept busy" if args.busy else ", idle"))
    with busy_cores(args.busy):
        if args.part in ("notebooks", "both"):
            print("notebooks, each in a fresh kernel:")
            time_notebooks(paths)
        if args.part in ("widgets", "both"):
            print(f"widget updates (target ≤ {UPDATE_TARGET_S} s):")
            time_widgets(paths, 3 if args.quick else None)
    return 0


def _spin():
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, if it had one
    while True:
        pass


@contextlib.contextmanager
def busy_cores(n: int):
    """Keep ``n`` cores busy (one spinning process each) for the duration of the block."""
    import multiprocessing

    procs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.join()


if __name__ == "__main__":
    sys.exit(main())
