"""collect never silently replaces a results file with a smaller collection, names every
result file it skipped, and writes atomically."""

from __future__ import annotations

import json
import shutil

import pytest

from nbkit import experiments as E
from nbkit.experiments import runner, spec, store
from nbkit.experiments.__main__ import main
from nbkit.experiments.runner import CollectRefused, Experiment

NAME = "robust_toy"
GRID = {"axes": {"seed": [0, 1], "x": [1, 2, 3, 4]}}
TOY = Experiment(NAME, NAME, {"full": GRID, "quick": {"axes": {"seed": [0], "x": [1, 2]}}},
                 label=("seed", "x"), summarize=lambda recs: {"n": len(recs)})


def _square(config, *, device):
    return {"y": config["x"] ** 2}


@pytest.fixture(autouse=True)
def toy():
    runner.RUN_KINDS[NAME] = _square
    spec.EXPERIMENTS[NAME] = TOY
    yield
    runner.RUN_KINDS.pop(NAME, None)
    spec.EXPERIMENTS.pop(NAME, None)


def _results(folder, n, variant="full"):
    E.sweep(NAME, variant, folder, device="cpu", progress=False, limit=n)
    return folder


def test_collect_refuses_to_replace_a_file_with_fewer_runs(tmp_path):
    target = tmp_path / "toy.json"
    E.collect(_results(tmp_path / "big", 6), NAME, "full", to=target)
    before = target.read_bytes()
    small = _results(tmp_path / "small", 2)
    with pytest.raises(CollectRefused) as info:
        E.collect(small, NAME, "full", to=target)
    msg = str(info.value)
    assert f"refusing to replace {target}, which holds 6 runs" in msg
    assert "only 2 runs" in msg and str(small) in msg and "4 runs would be lost" in msg
    assert "force=True" in msg and "--force" in msg
    assert (info.value.existing_runs, info.value.new_runs) == (6, 2)
    assert target.read_bytes() == before
    # asked to: replaced
    merged = E.collect(small, NAME, "full", to=target, force=True)
    assert json.loads(target.read_text()) == merged and merged["provenance"]["runs"] == 2
    # as many runs or more: replaced without asking
    E.collect(_results(tmp_path / "small", 2), NAME, "full", to=target)
    assert json.loads(target.read_text())["provenance"]["runs"] == 2
    E.collect(_results(tmp_path / "small", 5), NAME, "full", to=target)
    assert json.loads(target.read_text())["provenance"]["runs"] == 5


def test_collect_refuses_to_replace_other_results_or_a_file_it_cannot_read(tmp_path):
    folder = _results(tmp_path / "res", 3)
    quick = tmp_path / "quick.json"
    E.collect(_results(tmp_path / "q", 1, "quick"), NAME, "quick", to=quick)
    with pytest.raises(CollectRefused, match=f"holds 1 runs of {NAME}/quick, and this "
                                             f"collection is {NAME}/full"):
        E.collect(folder, NAME, "full", to=quick)
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n")
    with pytest.raises(CollectRefused, match="cannot be read as JSON"):
        E.collect(folder, NAME, "full", to=notes)
    assert notes.read_text() == "# my notes\n"
    E.collect(folder, NAME, "full", to=notes, force=True)
    assert json.loads(notes.read_text())["provenance"]["runs"] == 3


def test_the_shipped_layer_collapse_file_is_not_replaced_by_two_runs(tmp_path):
    shipped = E.DEFAULT_OUT / "layer_collapse.json"
    copy = tmp_path / "layer_collapse.json"
    shutil.copy(shipped, copy)
    two = {"experiment": "layer_collapse", "variant": "full", "runs": [{}, {}]}
    with pytest.raises(CollectRefused, match="which holds 450 runs, with a collection of "
                                             "only 2 runs"):
        runner.write_collected(two, copy)
    assert copy.read_bytes() == shipped.read_bytes()


def test_skipped_files_are_named_in_the_provenance(tmp_path):
    folder = _results(tmp_path / "res", 4)
    files = sorted(folder.glob("*.json"))
    files[0].write_text(files[0].read_text()[:50])          # truncated
    edited = json.loads(files[1].read_text())
    edited["result"]["y"] = 999
    files[1].write_text(json.dumps(edited))
    (folder / f".{files[2].stem}.abc123.partial").write_text("{")  # unfinished write
    prov = E.collect(folder, NAME, "full")["provenance"]
    partial = f".{files[2].stem}.abc123.partial"
    assert prov["runs"] == 2 and prov["invalid_files"] == 3
    assert prov["invalid_file_names"] == sorted([files[0].name, files[1].name, partial])
    reasons = prov["invalid_file_reasons"]
    assert reasons[files[0].name].startswith("not valid JSON")
    assert "digest does not match" in reasons[files[1].name]
    assert "unfinished write" in reasons[partial]


def test_no_valid_results_still_names_the_skipped_files(tmp_path):
    folder = _results(tmp_path / "res", 1)
    (f,) = folder.glob("*.json")
    f.write_text(f.read_text()[:10])
    with pytest.raises(FileNotFoundError, match=f"skipped {f.name}: not valid JSON"):
        E.collect(folder, NAME, "full")


@pytest.mark.parametrize("breaks", ["dump", "write"])
def test_an_interrupted_write_leaves_the_old_file_whole(tmp_path, monkeypatch, breaks):
    target = tmp_path / "out" / "toy.json"
    E.collect(_results(tmp_path / "res", 3), NAME, "full", to=target)
    before = target.read_bytes()
    folder = _results(tmp_path / "res", 5)
    if breaks == "dump":
        def fail(*args, **kwargs):
            raise TypeError("cannot encode")
        monkeypatch.setattr(runner.json, "dumps", fail)
        error = TypeError
    else:  # the disk fills up halfway: the text is written, flushing it fails
        def fail(fd):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(store.os, "fsync", fail)
        error = OSError
    with pytest.raises(error):
        E.collect(folder, NAME, "full", to=target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["toy.json"]  # no temporaries


# ------------------------------------------------------------------------- the CLI

def test_cli_collect_refuses_exits_non_zero_and_names_skipped_files(tmp_path, capsys):
    target = tmp_path / "toy.json"
    E.collect(_results(tmp_path / "big", 6), NAME, "full", to=target)
    before = target.read_bytes()
    small = _results(tmp_path / "small", 3)
    torn = sorted(small.glob("*.json"))[0]
    torn.write_text(torn.read_text()[:30])
    rc = main(["collect", NAME, "--out", str(small), "--to", str(target)])
    out = capsys.readouterr()
    assert rc == 1
    assert "holds 6 runs, with a collection of only 2 runs" in out.err and "--force" in out.err
    assert f"skipped {small}/{torn.name}: not valid JSON" in out.err
    assert "1 invalid files skipped" in out.out
    assert target.read_bytes() == before
    rc = main(["collect", NAME, "--out", str(small), "--to", str(target), "--force"])
    out = capsys.readouterr()
    assert rc == 0 and f"-> {target}" in out.out
    assert json.loads(target.read_text())["provenance"]["invalid_file_names"] == [torn.name]


def test_cli_sweep_with_collect_exits_non_zero_when_the_collection_is_refused(tmp_path,
                                                                              capsys):
    target = tmp_path / "toy.json"
    E.collect(_results(tmp_path / "big", 6), NAME, "full", to=target)
    before = target.read_bytes()
    rc = main([NAME, "--out", str(tmp_path / "new"), "--limit", "2", "--no-progress",
               "--device", "cpu", "--collect", str(target)])
    assert rc == 1 and "holds 6 runs" in capsys.readouterr().err
    assert target.read_bytes() == before
    assert len(list((tmp_path / "new").glob("*.json"))) == 2  # the sweep's runs are kept
