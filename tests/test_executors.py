"""The executor seam: the same runs, run elsewhere, give the same files; a worker that dies
has its run retried; every planned run ends up exactly once; a rerun submits nothing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import exec_kinds
import pytest

from nbkit import experiments as E
from nbkit.experiments import executors


def test_process_workers_write_the_same_results_as_the_local_loop(tmp_path):
    exec_kinds.assert_same_as_local(tmp_path, exec_kinds.experiment("seeded_noise"),
                                    executor="process", workers=2)


def test_a_quick_grid_matches_the_local_runner(tmp_path):
    exec_kinds.assert_same_as_local(tmp_path, "layer_collapse", "quick", limit=4,
                                    executor="process", workers=2)


def test_a_killed_worker_has_its_run_retried_and_nothing_is_duplicated(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    exp = exec_kinds.experiment("dies_once", markers, n=4)
    report = E.sweep(exp, "full", tmp_path / "out", device="cpu", progress=False,
                     executor="process", workers=2, max_retries=2)
    assert report.ran == 4 and not report.failed
    assert sorted(p.name for p in markers.iterdir()) == [f"{x}.tried" for x in range(4)]
    assert sum(report.retried.values()) >= 4  # every run lost its first worker
    records = exec_kinds.records(tmp_path / "out")
    assert len(records) == 4
    assert sorted(r["result"]["value"] for r in records.values()) == [0, 2, 4, 6]
    again = E.sweep(exp, "full", tmp_path / "out", device="cpu", progress=False,
                    executor="process", workers=2)
    assert again.ran == 0 and again.already_done == 4  # a rerun submits nothing


def test_a_run_that_keeps_dying_is_reported_not_retried_forever(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    exp = exec_kinds.experiment("always_dies", markers, n=2)
    with pytest.raises(RuntimeError, match="worker died 2 times when it ran alone"):
        E.sweep(exp, "full", tmp_path / "out", device="cpu", progress=False,
                executor="process", workers=2, max_retries=1)
    assert not list((tmp_path / "out").glob("*.json"))


@pytest.mark.parametrize("executor", ["local", "process"])
def test_two_drivers_on_one_folder_run_every_run_exactly_once(tmp_path, executor):
    """Two drivers (two nodes sharing a results folder) started together: claims split the
    runs, so each run executes once, and the folder ends with every run once."""
    markers = tmp_path / "markers"
    markers.mkdir()
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "import exec_kinds; from nbkit import experiments as E; "
            f"r = E.sweep(exec_kinds.experiment('slow_count', {str(markers)!r}, n=10), 'full', "
            f"{str(tmp_path / 'out')!r}, device='cpu', progress=False, executor={executor!r}); "
            "print(r.ran, r.elsewhere)")
    drivers = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                text=True) for _ in range(2)]
    outputs = [d.communicate(timeout=300)[0].split() for d in drivers]
    assert all(d.returncode == 0 for d in drivers)
    ran = [int(o[0]) for o in outputs]
    assert sum(ran) == 10, outputs  # split between the two drivers
    executions = (markers / "executions.log").read_text().split()
    assert sorted(map(int, executions)) == list(range(10))  # each run executed once
    assert len(exec_kinds.records(tmp_path / "out")) == 10
    claimed = tmp_path / "out" / ".claims"
    assert not claimed.exists() or not list(claimed.iterdir())  # every claim given back


def test_a_claim_left_by_a_dead_driver_is_taken_over(tmp_path):
    from nbkit.experiments import claims

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    folder = tmp_path / "out"
    (folder / claims.CLAIM_DIR).mkdir(parents=True)
    (folder / claims.CLAIM_DIR / "r1").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": int(dead), "time": 0}))
    assert claims.claim(folder, "r1")  # its process is gone: taken over
    assert not claims.claim(folder, "r1")  # now this process holds it
    claims.release(folder, "r1")
    assert claims.claim(folder, "r1")


def test_executor_choices_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown executor 'kubernetes'"):
        executors.make("kubernetes")
    with pytest.raises(ValueError, match="workers"):
        executors.make("process", workers=0)
    with pytest.raises(ValueError, match="gpus_per_run, address do not apply to "
                                         "executor='process'; it takes workers, max_retries"):
        executors.make("process", gpus_per_run=0.5, address="auto")
    for bad in ({"gpus_per_run": -1}, {"gpus_per_run": 1.5}, {"cpus_per_run": float("nan")},
                {"gpus_per_run": 0, "cpus_per_run": 0}, {"max_retries": -1}, {"address": ""}):
        with pytest.raises(ValueError):
            executors.make("ray", **bad)  # checked before Ray is imported
    import importlib.util

    real = importlib.util.find_spec
    with pytest.MonkeyPatch.context() as mp:  # a machine without Ray
        mp.delitem(sys.modules, "ray", raising=False)
        mp.setattr(importlib.util, "find_spec",
                   lambda name, *a: None if name == "ray" else real(name, *a))
        with pytest.raises(ValueError, match=r"pip install 'nbkit\[cluster\]'"):
            executors.make("ray")
    with pytest.raises(ValueError, match="checkpoint_every"):
        E.sweep(exec_kinds.experiment("seeded_noise"), "full", tmp_path, checkpoint_every=-1)
