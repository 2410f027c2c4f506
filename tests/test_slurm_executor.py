"""The Slurm executor, through submitit's local cluster (the same submit, poll and result
path as on Slurm, with jobs as processes of this machine): the same files as the local
loop, a killed job submitted again and its run written once, a rerun that submits
nothing, and clear errors before anything is submitted."""

from __future__ import annotations

import os
from pathlib import Path

import exec_kinds
import pytest

from nbkit import experiments as E
from nbkit.experiments import executors

pytest.importorskip("submitit", reason="the Slurm executor needs pip install 'nbkit[cluster]'")
pytestmark = [pytest.mark.cluster, pytest.mark.slow]
LOCAL = {"cluster": "local", "poll_seconds": 0.2}


@pytest.fixture(autouse=True)
def kinds_importable(monkeypatch):
    """Jobs are fresh processes: they find the tests' run kinds on PYTHONPATH."""
    tests = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [tests, os.environ.get(
        "PYTHONPATH")])))


def test_jobs_write_the_local_loops_files(tmp_path):
    done = exec_kinds.assert_same_as_local(tmp_path, exec_kinds.experiment("seeded_noise", n=4),
                                           executor="slurm", executor_options=LOCAL)
    assert all(r["provenance"]["host"] for r in done.values())
    assert (tmp_path / "other" / ".submitit").is_dir()  # job files beside the results


def test_a_killed_job_is_submitted_again_and_its_run_written_once(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    exp = exec_kinds.experiment("dies_once", markers, n=3)
    report = E.sweep(exp, "full", tmp_path / "out", device="cpu", progress=False,
                     executor="slurm", executor_options=LOCAL)
    assert report.ran == 3 and not report.failed
    assert sorted(report.retried.values()) == [1, 1, 1]  # each job killed once
    records = exec_kinds.records(tmp_path / "out")
    assert sorted(r["result"]["value"] for r in records.values()) == [0, 2, 4]
    again = E.sweep(exp, "full", tmp_path / "out", device="cpu", progress=False,
                    executor="slurm", executor_options=LOCAL)
    assert again.ran == 0 and again.already_done == 3


def test_a_job_that_always_dies_is_reported_after_its_retries(tmp_path):
    report = E.sweep(exec_kinds.experiment("always_dies", n=1), "full", tmp_path,
                     device="cpu", progress=False, on_error="continue", max_retries=1,
                     executor="slurm", executor_options=LOCAL)
    assert report.ran == 0
    (error,) = report.failed.values()
    assert "ended without a result 2 times" in error


def test_slurm_settings_are_checked_before_anything_is_submitted(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="gpus_per_run must be an int >= 0"):
        executors.make("slurm", gpus_per_run=0.5, cluster="local")
    with pytest.raises(ValueError, match="address do not apply to executor='slurm'"):
        executors.make("slurm", address="auto", cluster="local")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(ValueError, match="does not have: run the sweep on the cluster's"):
        executors.make("slurm")
