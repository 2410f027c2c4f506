"""The Ray executor, on Ray instances bound to 127.0.0.1 with logical GPUs: the same files
as the local loop, a killed worker's run retried, every run exactly once across two
simulated nodes, a rerun that submits nothing, and no socket off loopback."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbkit.experiments.ray_executor import LOOPBACK_ENV

for _k, _v in LOOPBACK_ENV.items():  # before ray is imported, as nbkit itself does
    os.environ.setdefault(_k, _v)
ray = pytest.importorskip("ray", reason="the Ray executor needs pip install 'nbkit[cluster]'")
psutil = pytest.importorskip("psutil")

import exec_kinds  # noqa: E402

from nbkit import experiments as E  # noqa: E402
from nbkit.experiments import ray_executor  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
TESTS = str(Path(__file__).parent)


def _off_loopback() -> list:
    """Sockets of this process and its children (Ray's servers and workers) that are
    bound to, or talk to, an address other than loopback."""
    pids = {os.getpid()} | {p.pid for p in psutil.Process().children(recursive=True)}
    mine = [c for c in psutil.net_connections(kind="inet") if c.pid in pids]
    assert sum(c.status == psutil.CONN_LISTEN for c in mine) >= 3  # Ray's servers are seen
    return [(c.pid, c.status, addr) for c in mine for addr in (c.laddr, c.raddr)
            if addr and not ipaddress.ip_address(addr.ip.removeprefix("::ffff:")).is_loopback]


@pytest.fixture(scope="class")
def local_ray():
    """A Ray instance as nbkit starts one, with two logical GPUs."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, old]))  # exec_kinds
    try:
        yield ray_executor.start_local(num_cpus=2, num_gpus=2)
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.mark.usefixtures("local_ray")
class TestOneMachine:
    def test_ray_writes_the_local_loops_files_and_packs_runs_onto_gpus(self, tmp_path):
        exp = exec_kinds.experiment("seeded_noise")
        done = exec_kinds.assert_same_as_local(tmp_path, exp, executor="ray", gpus_per_run=0.5)
        assert all(r["provenance"]["ray_node"] for r in done.values())
        again = E.sweep(exp, "full", tmp_path / "other", device="cpu", progress=False,
                        executor="ray", gpus_per_run=0.5)
        assert again.ran == 0 and again.already_done == 6  # a rerun submits nothing

    def test_a_quick_grid_matches_the_local_runner(self, tmp_path):
        exec_kinds.assert_same_as_local(tmp_path, "layer_collapse", "quick", limit=3,
                                        executor="ray")

    def test_a_killed_worker_has_its_run_retried_once_and_written_once(self, tmp_path):
        markers = tmp_path / "markers"
        markers.mkdir()
        exp = exec_kinds.experiment("dies_once", markers, n=3)
        report = E.sweep(exp, "full", tmp_path / "out", device="cpu", progress=False,
                         executor="ray", max_retries=2)
        assert report.ran == 3 and not report.failed
        assert sorted(p.name for p in markers.iterdir()) == [f"{x}.tried" for x in range(3)]
        records = exec_kinds.records(tmp_path / "out")
        assert sorted(r["result"]["value"] for r in records.values()) == [0, 2, 4]

    def test_a_run_that_always_dies_is_reported_after_its_retries(self, tmp_path):
        exp = exec_kinds.experiment("always_dies", n=1)
        report = E.sweep(exp, "full", tmp_path / "out", device="cpu", progress=False,
                         executor="ray", max_retries=1, on_error="continue")
        assert report.ran == 0 and len(report.failed) == 1
        assert "after 1 retries" in next(iter(report.failed.values()))
        assert not list((tmp_path / "out").glob("*.json"))

    def test_more_gpu_than_the_cluster_has_is_refused_before_anything_runs(self, tmp_path):
        with pytest.raises(ValueError, match="the Ray cluster has 2"):
            E.sweep(exec_kinds.experiment("seeded_noise"), "full", tmp_path, device="cpu",
                    progress=False, executor="ray", gpus_per_run=3)

    def test_every_ray_socket_is_on_loopback(self):
        assert ray.is_initialized()
        assert _off_loopback() == []


def test_two_simulated_nodes_run_every_planned_run_exactly_once(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [TESTS, os.environ.get(
        "PYTHONPATH")])))
    node = {"num_cpus": 1, "num_gpus": 1, "node_ip_address": "127.0.0.1",
            "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=node)
    try:
        cluster.add_node(**{k: v for k, v in node.items() if k != "include_dashboard"})
        cluster.wait_for_nodes()
        markers = tmp_path / "markers"
        markers.mkdir()
        exp = exec_kinds.experiment("slow_count", markers, n=8)
        report = E.sweep(exp, "full", tmp_path / "out", device="cpu", progress=False,
                         executor="ray", gpus_per_run=0.5, address="auto")  # joins it
        assert report.ran == 8
        executions = (markers / "executions.log").read_text().split()
        assert sorted(map(int, executions)) == list(range(8))  # each run exactly once
        records = exec_kinds.records(tmp_path / "out")
        assert len(records) == 8
        nodes = {r["provenance"]["ray_node"] for r in records.values()}
        assert len(nodes) == 2  # both simulated nodes took runs
        assert _off_loopback() == []
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_the_cli_runs_a_quick_grid_on_ray_as_the_local_runner_does(tmp_path):
    env = {**os.environ, **LOOPBACK_ENV}
    base = [sys.executable, "-m", "nbkit.experiments", "layer_collapse", "--quick",
            "--limit", "2", "--device", "cpu", "--no-progress"]
    for name, extra in (("local", []), ("ray", ["--executor", "ray"])):
        done = subprocess.run([*base, "--out", str(tmp_path / name), *extra], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    a, b = exec_kinds.records(tmp_path / "local"), exec_kinds.records(tmp_path / "ray")
    assert len(a) == 2 and a.keys() == b.keys()
    assert all(a[n]["result"] == b[n]["result"] for n in a)
