"""The resumable experiment runner: grids, atomic results, resume after a crash,
detection of corrupt files, collection, the declared experiments and their CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbkit import experiments as E
from nbkit import studies
from nbkit.experiments import runner, store, summary
from nbkit.experiments.runner import Experiment

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------- a toy run kind

class Toy:
    """A run kind that squares ``x``, logs every run it finishes, and can be told to
    raise once it has finished ``fail_after`` runs."""

    def __init__(self, log: Path, fail_after: int | None = None):
        self.log, self.fail_after, self.done = log, fail_after, 0

    def __call__(self, config, *, device):
        if self.fail_after is not None and self.done >= self.fail_after:
            raise RuntimeError("machine taken back")
        self.done += 1
        with open(self.log, "a") as f:
            f.write(store.canonical(config) + "\n")
        return {"y": config["x"] ** 2, "device": str(device)}


TOY_GRID = {"base": {"a": 1, "nested": {"b": 2}},
            "axes": {"seed": [0, 1], "x": [1, 2, 3, 4]},
            "include": [{"x": 0}],
            "per": {"x": {2: {"a": 5}}}}
TOY = Experiment("toy", "toy", {"full": TOY_GRID, "quick": {"axes": {"seed": [0], "x": [1]}}},
                 label=("seed", "x"), summarize=lambda recs: {"n": len(recs)})


@pytest.fixture
def toy(tmp_path):
    kind = Toy(tmp_path / "log.txt")
    runner.RUN_KINDS["toy"] = kind
    yield kind
    runner.RUN_KINDS.pop("toy", None)


def finished(log: Path) -> Counter:
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(lines)


def check_folder(out: Path, exp=TOY, variant="full"):
    """Every declared run has exactly one valid result file with the right result."""
    runs = runner.plan(exp, variant, out)
    records, bad = store.scan(out)
    assert bad == {}
    assert sorted(r["run_id"] for r in records) == sorted(r.run_id for r in runs)
    for run in runs:
        record, reason = store.read_record(run.path, expect_config=run.config)
        assert reason == ""
        assert record["result"]["y"] == run.config["x"] ** 2
        assert record["provenance"]["torch"]
        assert record["provenance"]["device"] == "cpu"
        assert record["provenance"]["seconds"] >= 0
    assert not list(out.glob(".*")), "temporary files left behind"


# ---------------------------------------------------------------------------- grids

def test_expand_crosses_axes_adds_includes_and_applies_per_and_overrides():
    configs = runner.expand(TOY_GRID)
    assert len(configs) == 2 * 4 + 2
    assert [c["seed"] for c in configs] == [0] * 5 + [1] * 5  # first axis outermost
    assert {(c["seed"], c["x"]) for c in configs} == {(s, x) for s in (0, 1) for x in range(5)}
    assert all(c["a"] == (5 if c["x"] == 2 else 1) for c in configs)
    over = runner.expand(TOY_GRID, seeds=[7], overrides={"a": 9, "nested.b": 3})
    assert len(over) == 5 and all(c["seed"] == 7 and c["a"] == 9 for c in over)
    assert all(c["nested"] == {"b": 3} for c in over)
    assert TOY_GRID["base"]["nested"] == {"b": 2}, "expand must not mutate the grid"


def test_expand_rejects_bad_grids():
    with pytest.raises(ValueError, match="unknown grid keys"):
        runner.expand({"axis": {}})
    with pytest.raises(ValueError, match="non-empty list"):
        runner.expand({"axes": {"x": []}})
    with pytest.raises(ValueError, match="no seed axis"):
        runner.expand({"axes": {"x": [1]}}, seeds=[0])
    with pytest.raises(ValueError, match="not a dict"):
        runner.expand({"base": {"a": 1}}, overrides={"a.b": 2})


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4))
def test_every_grid_point_gets_one_unique_run_id(shape):
    axes = {f"k{i}": list(range(n)) for i, n in enumerate(shape)}
    exp = Experiment("p", "toy", {"full": {"axes": axes}}, label=tuple(axes))
    runs = runner.plan(exp, "full", "out")
    assert len(runs) == math.prod(shape)
    assert len({r.run_id for r in runs}) == len(runs)
    assert len({r.path for r in runs}) == len(runs)
    again = runner.plan(exp, "full", "out")
    assert [r.run_id for r in again] == [r.run_id for r in runs]  # stable


# ------------------------------------------------------------------ store and resume

def test_jsonable_handles_tensors_numpy_and_non_finite():
    import numpy as np
    import torch

    value = {"t": torch.tensor([1.5, float("nan")]), "n": np.float32(2.0), "i": np.int64(3),
             "inf": float("inf"), "tup": (1, 2)}
    assert store.jsonable(value) == {"t": [1.5, None], "n": 2.0, "i": 3, "inf": None,
                                     "tup": [1, 2]}
    with pytest.raises(TypeError, match="run kind"):
        store.jsonable({"x": object()})


def test_provenance_names_commit_device_and_versions(monkeypatch):
    import torch

    prov = store.provenance(torch.device("cpu"))
    assert prov["torch"] == torch.__version__ and prov["device"] == "cpu"
    assert "cores" in prov["device_name"] and prov["date"].endswith("+00:00")
    monkeypatch.setattr(store, "_git", lambda *args: None)  # a copy without .git
    monkeypatch.setenv("NBKIT_GIT_COMMIT", "0123abcd")
    prov = store.provenance(torch.device("cpu"))
    assert prov["git_commit"] == "0123abcd" and prov["git_dirty"] is None
    # a copy whose git metadata is stale (older HEAD, "dirty" against it): the caller's
    # commit wins, and cleanliness is unknown rather than wrongly "dirty"
    stale = {"rev-parse": "fedcba98" * 5, "status": " M nbkit/train.py"}
    monkeypatch.setattr(store, "_git", lambda cmd, *args: stale[cmd])
    prov = store.provenance(torch.device("cpu"))
    assert prov["git_commit"] == "0123abcd" and prov["git_dirty"] is None
    monkeypatch.setenv("NBKIT_GIT_COMMIT", "fedcba98")  # the same commit: git knows more
    prov = store.provenance(torch.device("cpu"))
    assert prov["git_commit"] == "fedcba98" * 5 and prov["git_dirty"] is True


def test_sweep_runs_everything_once_and_a_rerun_skips(tmp_path, toy):
    out = tmp_path / "res"
    report = E.sweep(TOY, "full", out, device="cpu", progress=False)
    assert (report.total, report.ran, report.already_done, report.remaining) == (10, 10, 0, 0)
    check_folder(out)
    again = E.sweep(TOY, "full", out, device="cpu", progress=False)
    assert (again.ran, again.already_done) == (0, 10)
    assert set(finished(toy.log).values()) == {1} and len(finished(toy.log)) == 10


def test_a_sweep_killed_midway_resumes_without_losing_or_repeating_runs(tmp_path, toy):
    out = tmp_path / "res"
    toy.fail_after = 4
    with pytest.raises(RuntimeError, match="taken back"):
        E.sweep(TOY, "full", out, device="cpu", progress=False)
    records, bad = store.scan(out)
    assert len(records) == 4 and bad == {}
    toy.fail_after = None
    report = E.sweep(TOY, "full", out, device="cpu", progress=False)
    assert (report.already_done, report.ran, report.redone) == (4, 6, {})
    counts = finished(toy.log)
    assert len(counts) == 10 and set(counts.values()) == {1}
    check_folder(out)


def test_a_hard_kill_leaves_no_partial_result(tmp_path):
    """A process that dies without cleaning up (os._exit) mid-sweep: the rerun finishes
    the grid, and no run is done twice."""
    out, log = tmp_path / "res", tmp_path / "log.txt"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from test_experiments import TOY, Toy
        from nbkit.experiments import runner
        toy = Toy({str(log)!r})
        def dying(config, *, device):
            if toy.done == 3:
                os._exit(17)
            return toy(config, device=device)
        runner.RUN_KINDS["toy"] = dying
        runner.sweep(TOY, "full", {str(out)!r}, device="cpu", progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    assert len(store.scan(out)[0]) == 3
    runner.RUN_KINDS["toy"] = Toy(log)
    try:
        report = E.sweep(TOY, "full", out, device="cpu", progress=False)
    finally:
        runner.RUN_KINDS.pop("toy")
    assert (report.already_done, report.ran) == (3, 7)
    assert set(finished(log).values()) == {1} and len(finished(log)) == 10
    check_folder(out)


def test_where_selects_runs_in_grid_order_and_names_what_the_grid_holds(tmp_path, toy,
                                                                         capsys):
    runs = runner.plan(TOY, "full", tmp_path, where={"x": [3, 1], "seed": 1})
    assert [(r.config["seed"], r.config["x"]) for r in runs] == [(1, 1), (1, 3)]
    # the same runs, ids included, as the whole grid's
    whole = {r.run_id for r in runner.plan(TOY, "full", tmp_path)}
    assert {r.run_id for r in runs} <= whole
    assert [r.config["a"] for r in runner.plan(TOY, "full", tmp_path,
                                               where={"nested.b": 2, "x": 2})] == [5, 5]
    with pytest.raises(ValueError, match=r"its values there: 0, 1, 2, 3, 4"):
        runner.plan(TOY, "full", tmp_path, where={"x": 9})
    with pytest.raises(ValueError, match="no run of this grid has a config key 'y'"):
        runner.plan(TOY, "full", tmp_path, where={"y": 1})
    # a sweep makes only the selected runs
    out = tmp_path / "sel"
    runner.sweep(TOY, "full", out, device="cpu", progress=False, where={"x": [2, 4], "seed": 0})
    assert sorted(finished(toy.log).values()) == [1, 1]
    assert {r["config"]["x"] for r in store.scan(out)[0]} == {2, 4}
    # the command line: a repeated key keeps either value (JSON values)
    from nbkit.experiments.__main__ import _parse_where

    assert _parse_where(["x=2", "x=4", "method=synflow"]) == {"x": [2, 4],
                                                              "method": ["synflow"]}
    assert _main(["accuracy_vs_compression", "--dry-run", "--out", str(tmp_path / "avc"),
                  "--where", "method=synflow", "--where", "log10_rho=3"]) == 0
    printed = capsys.readouterr().out
    assert "3 runs" in printed and "seed=2_method=synflow_log10_rho=3" in printed


def test_shards_split_the_grid_and_share_one_folder_at_the_same_time(tmp_path):
    """Three processes run shards 0/3, 1/3 and 2/3 of one sweep concurrently into one
    folder: every run finishes exactly once, and a shard starting up leaves another
    shard's write in flight alone."""
    out, log = tmp_path / "res", tmp_path / "log.txt"
    runs = runner.plan(TOY, "full", out)
    parts = [runner.plan(TOY, "full", out, shard=(k, 3)) for k in range(3)]
    ids = [r.run_id for part in parts for r in part]
    assert sorted(ids) == sorted(r.run_id for r in runs) and len(set(ids)) == len(runs)
    out.mkdir()
    in_flight = out / f".{parts[0][0].run_id}.x{store._TMP_SUFFIX}"
    in_flight.write_text("{")  # shard 0 is writing this one
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from test_experiments import TOY, Toy
        from nbkit.experiments import runner
        runner.RUN_KINDS["toy"] = Toy({str(log)!r})
        runner.sweep(TOY, "full", {str(out)!r}, device="cpu", progress=False,
                     shard=(int(sys.argv[1]), 3))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(k)], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert in_flight.exists()
    assert len(store.scan(out)[0]) == len(parts[1]) + len(parts[2])
    in_flight.unlink()
    runner.RUN_KINDS["toy"] = Toy(log)
    try:
        report = E.sweep(TOY, "full", out, device="cpu", progress=False, shard=(0, 3))
        rest = E.sweep(TOY, "full", out, device="cpu", progress=False)
    finally:
        runner.RUN_KINDS.pop("toy")
    assert (report.total, report.ran) == (len(parts[0]), len(parts[0]))
    assert (rest.already_done, rest.ran) == (len(runs), 0)
    assert set(finished(log).values()) == {1} and len(finished(log)) == len(runs)
    check_folder(out)
    for bad in [(3, 3), (-1, 2), (0, 0), "0/2"]:
        with pytest.raises(ValueError, match="shard"):
            runner.plan(TOY, "full", out, shard=bad)


def test_corrupt_partial_and_foreign_files_are_detected_and_redone(tmp_path, toy):
    out = tmp_path / "res"
    E.sweep(TOY, "full", out, device="cpu", progress=False)
    runs = runner.plan(TOY, "full", out)
    truncated, edited, garbage, foreign, emptied = (r.path for r in runs[:5])
    truncated.write_text(truncated.read_text()[:-40])
    rec = json.loads(edited.read_text())
    rec["result"]["y"] = -1  # content no longer matches its digest
    edited.write_text(json.dumps(rec))
    garbage.write_bytes(b"\x00\xff not json")
    other = json.loads(runs[5].path.read_text())  # a valid record under the wrong name
    foreign.write_text(json.dumps(other))
    emptied.write_text("")
    (out / f".{runs[6].run_id}.abc{store._TMP_SUFFIX}").write_text("{")  # killed mid-write

    records, bad = store.scan(out)
    assert set(bad) == {p.name for p in (truncated, edited, garbage, foreign, emptied)}
    assert "digest" in bad[edited.name] and "JSON" in bad[truncated.name]
    with pytest.warns(UserWarning, match="redoing"):
        report = E.sweep(TOY, "full", out, device="cpu", progress=False)
    assert set(report.redone) == {r.run_id for r in runs[:5]}
    assert (report.ran, report.already_done) == (5, 5)
    check_folder(out)
    assert sum(finished(toy.log).values()) == 15


def test_a_changed_config_is_a_new_run_not_a_reused_one(tmp_path, toy):
    out = tmp_path / "res"
    E.sweep(TOY, "full", out, device="cpu", progress=False, limit=3)
    report = E.sweep(TOY, "full", out, device="cpu", progress=False, limit=3,
                     overrides={"a": 2})
    assert (report.already_done, report.ran) == (0, 3)
    assert len(store.scan(out)[0]) == 6


def test_keep_going_records_failures_and_time_budget_stops_cleanly(tmp_path, toy):
    out = tmp_path / "res"
    toy.fail_after = 2
    report = E.sweep(TOY, "full", out, device="cpu", progress=False, on_error="continue")
    assert report.ran == 2 and len(report.failed) == 8 and report.remaining == 8
    assert all("taken back" in e for e in report.failed.values())
    assert len(store.scan(out)[0]) == 2
    toy.fail_after = None
    report = E.sweep(TOY, "full", out, device="cpu", progress=False, time_budget=0)
    assert report.ran == 1 and report.stopped_for_time and report.remaining == 7
    with pytest.raises(ValueError, match="on_error"):
        E.sweep(TOY, "full", out, on_error="ignore")
    with pytest.raises(ValueError, match="no variant"):
        E.sweep(TOY, "huge", out)


def test_prepare_runs_once_per_sweep_and_only_when_work_remains(tmp_path):
    calls = []
    kind = Toy(tmp_path / "log.txt")
    runner.register_kind("toy", prepare=lambda config, *, device: calls.append(config["x"]))(
        kind)
    try:
        E.sweep(TOY, "full", tmp_path / "res", device="cpu", progress=False, limit=3)
        E.sweep(TOY, "full", tmp_path / "res", device="cpu", progress=False, limit=3)
        E.sweep(TOY, "full", tmp_path / "res", device="cpu", progress=False, limit=5)
    finally:
        runner.RUN_KINDS.pop("toy")
        runner.PREPARE.pop("toy")
    assert calls == [0, 3]  # the first pending run's config; none for the no-op sweep
    assert sum(finished(kind.log).values()) == 5


def test_compile_reaches_a_training_kind_but_not_the_run_identity(tmp_path, toy):
    seen = []

    def trainer(config, *, device, compile=False):
        seen.append(compile)
        return {"y": config["x"] ** 2}

    out = tmp_path / "res"
    with pytest.raises(ValueError, match="trains nothing"):  # the toy takes no compile
        E.sweep(TOY, "full", out, device="cpu", progress=False, compile=True)
    runner.RUN_KINDS["toy"] = trainer
    E.sweep(TOY, "full", out, device="cpu", progress=False, limit=2, compile=True)
    E.sweep(TOY, "full", out, device="cpu", progress=False, limit=3)
    assert seen == [True, True, False]  # the third run only: the first two are done
    records, _ = store.scan(out)
    assert sorted(r["provenance"]["compile"] for r in records) == [False, True, True]
    merged = E.collect(out, TOY, "full", to=tmp_path / "merged.json")
    assert merged["provenance"]["compiled"] == [False, True]


def test_collect_merges_one_small_json_with_provenance(tmp_path, toy):
    out = tmp_path / "res"
    E.sweep(TOY, "full", out, device="cpu", progress=False, limit=7)
    merged = E.collect(out, TOY, to=tmp_path / "toy.json")
    assert json.loads((tmp_path / "toy.json").read_text()) == merged
    prov = merged["provenance"]
    assert (prov["runs"], prov["runs_declared"], prov["runs_missing"]) == (7, 10, 3)
    assert prov["torch"] and prov["git_commits"] and prov["devices"]
    assert merged["config"]["nested"] == {"b": 2} and merged["summary"] == {"n": 7}
    assert all("nested" not in r["config"] and r["result"]["y"] == r["config"]["x"] ** 2
               for r in merged["runs"])
    E.sweep(TOY, "quick", out, device="cpu", progress=False)
    with pytest.raises(ValueError, match="mixes variants"):
        E.collect(out, TOY)
    assert E.collect(out, TOY, "quick")["provenance"]["runs"] == 1
    with pytest.raises(FileNotFoundError, match="no valid"):
        E.collect(tmp_path / "empty", TOY)


# ------------------------------------------------------------------------- summaries

def _rec(config, result):
    return {"config": config, "result": result}


def test_layer_collapse_summary_finds_the_critical_compression():
    recs = []
    for seed, first_collapse in ((0, 2.5), (1, 3.0), (2, 2.5)):
        for rho in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0):
            dead = rho >= first_collapse
            recs.append(_rec({"method": "magnitude", "seed": seed, "log10_rho": rho},
                             {"collapsed": dead, "effective_density": 0.0 if rho >= 2 else 0.1,
                              "layer_density": [1.0, 0.0 if dead else 0.5],
                              "layers": ["a", "b"], "sizes": [10, 990]}))
    s = summary.layer_collapse(recs)
    assert s["critical_per_seed"]["magnitude"] == {"0": 2.0, "1": 2.5, "2": 2.0}
    assert s["critical"]["magnitude"] == 2.0
    assert s["critical_disconnected"]["magnitude"] == 1.5
    assert s["difference_from_paper"]["magnitude"] == pytest.approx(2.0 - 2.75)
    assert s["maximal_log10_rho"] == pytest.approx(math.log10(500))
    assert s["density"]["magnitude"]["3"] == [1.0, 0.0]
    assert s["density"]["magnitude"]["2.5"] == pytest.approx([1.0, 0.5 / 3])


def test_accuracy_summary_reports_dense_and_relative_accuracy():
    recs = [_rec({"method": "dense", "seed": s, "log10_rho": 0.0, "num_classes": 10},
                 {"test_acc": a}) for s, a in ((0, 0.90), (1, 0.92))]
    recs += [_rec({"method": "synflow", "seed": 0, "log10_rho": 2.0, "num_classes": 10},
                  {"test_acc": 0.82})]
    s = summary.accuracy_vs_compression(recs)
    assert s["dense_top1"] == pytest.approx(91.0) and s["dense_seeds"] == 2
    assert s["top1"]["synflow"]["2"] == pytest.approx(82.0)
    assert s["relative_to_dense"]["synflow"]["2"] == pytest.approx(82 / 91)
    assert s["chance_top1"] == pytest.approx(10.0)
    assert s["paper_relative_to_dense"]["synflow"]["3"] == pytest.approx(80.39 / 93.5)


# ------------------------------------------------------------- declared experiments

def test_declared_full_grids_are_the_papers():
    lc = runner.plan(E.get("layer_collapse"), "full", "out")
    assert len(lc) == 3 * 6 * 25  # the five pruners and the paper's own GraSP
    assert sorted({r.config["log10_rho"] for r in lc}) == [i * 0.25 for i in range(25)]
    assert all(r.config["model"] == "vgg16_bn" and r.config["data"] == "cifar10" for r in lc)
    # every pruner iterates as often as its registry entry says (the paper: SynFlow 100)
    import nbkit
    from nbkit.studies import collapse

    its = {r.config["method"]: collapse.Settings.from_config(r.config).iterations_for(
        r.config["method"]) for r in lc}
    assert its == {"random": 1, "magnitude": 1, "snip": 1, "grasp": 1, "grasp_paper": 1,
                   "synflow": 100}
    assert {r.config["method"] for r in lc} == set(nbkit.pruning.methods(variants=True))

    avc = runner.plan(E.get("accuracy_vs_compression"), "full", "out")
    assert len(avc) == 3 * (6 * 3 + 1)  # the five pruners and the paper's own GraSP
    dense = [r.config for r in avc if r.config["method"] == "dense"]
    assert sorted(c["seed"] for c in dense) == [0, 1, 2]
    recipe = avc[0].config["train"]
    assert (recipe["epochs"], recipe["lr"], recipe["milestones"], recipe["weight_decay"],
            recipe["batch_size"], recipe["nesterov"]) == (160, 0.1, [60, 120], 1e-4, 128, True)
    short = runner.plan(E.get("accuracy_vs_compression"), "short", "out")
    assert len(short) == 16 and short[0].config["train"]["schedule"] == "cosine"

    lr = runner.plan(E.get("learning_rules"), "full", "out")
    assert {r.config["rule"] for r in lr} == set(nbkit.rules.names())
    assert all(r.config["model"] == "resnet20" for r in lr)


def _main(args):
    from nbkit.experiments.__main__ import main

    return main([*args, "--no-progress", "--device", "cpu"])


CHECKS = {
    "layer_collapse": lambda r: (len(r["layer_density"]) == len(r["sizes"]) == 5
                                 and isinstance(r["collapsed"], bool)),
    "accuracy_vs_compression": lambda r: 0.0 <= r["test_acc"] <= 1.0 and r["history"]["step"],
    "learning_rules": lambda r: (r["finite"] and r["weight_angles"]["steps"][0] == 0
                                 and len(r["delta_angles"]["layers"]) == 5),
    "two_routes_depth": lambda r: (r["finite"] and r["local_delta_angles"]["layers"]
                                   and r["weight_angles"]["steps"] == [0, 3, 6]),
    "two_routes_noise": lambda r: r["finite"] and 0.0 <= r["test_acc"] <= 1.0,
    "wm_sensitivity": lambda r: r["finite"] and r["settings"]["beta"] > 0,
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_each_quick_experiment_runs_resumes_and_collects(tmp_path, name, one_thread):
    out, merged = tmp_path / name, tmp_path / f"{name}.json"
    assert _main([name, "--quick", "--out", str(out), "--limit", "1"]) == 0
    (first,) = out.glob("*.json")
    before = first.read_bytes()
    assert _main([name, "--quick", "--out", str(out), "--limit", "2",
                  "--collect", str(merged)]) == 0
    assert first.read_bytes() == before, "a finished run was redone"
    records, bad = store.scan(out)
    assert len(records) == 2 and bad == {}
    assert all(CHECKS[name](r["result"]) for r in records)
    data = json.loads(merged.read_text())
    assert data["provenance"]["runs"] == 2 and data["variant"] == "quick"
    for run in data["runs"]:
        assert set(run["result"].get("history", {})) <= set(summary.HISTORY_KEPT)
    assert data["provenance"]["runs_missing"] == len(runner.plan(E.get(name), "quick", out)) - 2
    assert data["summary"]


def test_cli_from_a_shell(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "nbkit.experiments", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=300)

    listed = cli("list")
    assert listed.returncode == 0
    assert all(n in listed.stdout for n in E.names())
    with pytest.raises(ValueError, match="choose one of"):
        _main(["no_such_experiment"])
    out = tmp_path / "lc"
    run = cli("layer_collapse", "--quick", "--out", str(out), "--limit", "1", "--seeds", "3",
              "--set", "scope=local", "--no-progress", "--threads", "1")
    assert run.returncode == 0, run.stderr
    (record,), _ = store.scan(out)
    assert record["config"]["seed"] == 3 and record["config"]["scope"] == "local"
    dry = cli("learning_rules", "--quick", "--out", str(out), "--shard", "1/4", "--dry-run")
    assert dry.returncode == 0 and "learning_rules/quick: 2 runs" in dry.stdout, dry.stderr
    bad = cli("learning_rules", "--quick", "--shard", "4/4", "--dry-run")
    assert bad.returncode == 2 and "0 <= K < N" in bad.stderr


@pytest.mark.slow
def test_quick_layer_collapse_keeps_exact_counts_and_synflow_outlasts_magnitude(tmp_path,
                                                                              one_thread):
    report = E.sweep("layer_collapse", "quick", tmp_path, device="cpu", progress=False)
    assert report.ran == report.total == 42  # 7 compressions x 6 pruners
    records, _ = store.scan(tmp_path)
    for r in records:
        res = r["result"]
        kept = sum(d * n for d, n in zip(res["layer_density"], res["sizes"]))
        assert kept == pytest.approx(round(res["density"] * sum(res["sizes"])), abs=1e-3)
        assert res["collapsed"] == (min(res["layer_density"]) == 0)
        assert 0.0 <= res["effective_density"] <= round(kept) / sum(res["sizes"]) + 1e-9
    crit = E.collect(tmp_path, "layer_collapse", "quick")["summary"]["critical"]
    assert crit["synflow"] > crit["magnitude"]
    assert crit["synflow"] >= max(crit.values())


@pytest.mark.parametrize("name", ["two_routes_depth", "two_routes_noise", "wm_sensitivity"])
def test_the_two_routes_studies_run_whole_in_quick_mode(tmp_path, name, one_thread):
    """Each of [TR]'s CIFAR studies runs its whole quick grid on the CPU and collects one
    summary row per run, with the rule's settings as the grid declared them."""
    report = E.sweep(name, "quick", tmp_path, device="cpu", progress=False)
    assert report.remaining == 0 and not report.failed
    shelf = tmp_path / "results"
    merged = E.collect(tmp_path, name, "quick", to=E.path_for(name, "quick", shelf))
    rows_back, found = studies.two_routes.shipped(name, "quick", shelf)
    assert found.ok and rows_back == merged["summary"]["rows"]
    rows = merged["summary"]["rows"]
    plan = runner.plan(E.get(name), "quick", tmp_path)
    assert len(rows) == len(plan) == merged["provenance"]["runs"]
    assert all(row["finite"] and 0 <= row["top1"] <= 100 for row in rows)
    assert {row["rule"] for row in rows} == {p.config["rule"] for p in plan}
    if name == "wm_sensitivity":  # β/α is what the grid varies
        ratios = {row["rule"]: row["coefficients"]["beta"] / row["coefficients"]["alpha"]
                  for row in rows}
        assert ratios == {"weight_mirror": 0.001, "information_alignment": 0.001}
