"""The Fig. 6 studies (notebook 04) without any widget: prune at initialization, train a
tiny MLP for one epoch of cifar10-mini, sweep pruners and compressions, the layer-wise
shuffle check, and the published and collected full-scale results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY_PRUNED, write_fig6_results

from nbkit import studies
from nbkit.studies import fig6, results
from nbkit.studies import pruned_training as P
from nbkit.studies.pruned_training import PRUNERS

CPU = torch.device("cpu")
TINY = TINY_PRUNED
SIZES = {"layers.0.weight": 3072 * 16, "layers.2.weight": 16 * 16, "fc.weight": 16 * 10}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def swept():
    """Every partial result of the default sweep of TINY, trained from an empty cache."""
    studies.clear_cache()
    assert not P._train_pruned.is_cached("dense", 0.0, TINY, False, 0, CPU)
    return list(P.sweep(PRUNERS, None, TINY))


@pytest.fixture(scope="module")
def runs(swept):
    return swept[-1]["runs"]


def by_key(runs):
    return {(r["method"], r["log10_rho"], r["shuffle"]): r for r in runs}


# ------------------------------------------------------------------- settings

def test_settings_merge_train_and_describe_themselves():
    assert TINY.train == {**P.QUICK.train, "epochs": 1}
    assert TINY.log10_rhos == (1.0, 3.0) and P.QUICK.model_kwargs["width"] == 128
    assert TINY.iterations_for("synflow") == 5 and TINY.iterations_for("snip") == 1
    text = TINY.describe()
    assert text.startswith("mlp (depth=3, width=16) on cifar10-mini, 1 epoch, lr 0.05 cosine")
    assert "SynFlow 5 iterations" in text and "on 100 samples" in text
    assert "3 epochs" in TINY.replace(train={**TINY.train, "epochs": 3}).describe()
    assert "30 steps" in TINY.replace(train={**TINY.train, "steps": 30}).describe()
    with pytest.raises(ValueError, match="mode must be"):
        P.settings("medium")
    with pytest.raises(ValueError, match="no 'synflow_iterations'"):  # now max_iterations
        P.settings("quick", synflow_iterations=5)


# ------------------------------------------------------------------- one run, a sweep

def test_sweep_trains_dense_then_every_pruner_lowest_compression_first(swept, runs):
    assert len(runs) == 11                      # dense + 5 pruners × 2 compressions
    assert [len(s["runs"]) for s in swept] == list(range(1, 12))
    assert [s["todo"] for s in swept] == list(range(10, -1, -1))
    assert swept[-1]["progress"] == 1.0 and swept[-1]["settings"] is TINY
    assert runs[0]["method"] == "dense" and runs[0]["log10_rho"] == 0.0
    assert [r["log10_rho"] for r in runs[1:]] == [1.0] * 5 + [3.0] * 5
    assert [r["method"] for r in runs[1:6]] == list(PRUNERS)
    again = list(P.sweep(PRUNERS, None, TINY))  # all cached: one result, no redraws
    assert len(again) == 1 and again[0]["progress"] == 1.0 and again[0]["todo"] == 0
    assert all(a is b for a, b in zip(again[0]["runs"], runs))


def test_a_run_holds_what_it_says(runs):
    dense = by_key(runs)["dense", 0.0, False]
    assert dense["layers"] == list(SIZES) and dense["sizes"] == list(SIZES.values())
    assert dense["layer_density"] == [1.0, 1.0, 1.0] and dense["kept"] == dense["total"]
    assert dense["total"] == sum(SIZES.values()) == 49568
    assert dense["effective_density"] == 1.0 and not dense["collapsed"]
    assert dense["chance"] == 10.0 and dense["iterations"] is None
    assert dense["top1"] == pytest.approx(100 * dense["test_acc"])
    assert dense["test_acc"] == dense["history"]["test_acc"][-1]
    assert dense["best_test_acc"] >= dense["test_acc"]
    syn = by_key(runs)["synflow", 3.0, False]
    assert syn["iterations"] == 5 and by_key(runs)["snip", 3.0, False]["iterations"] == 1
    assert 0 < syn["effective_density"] <= syn["kept"] / syn["total"] + 1e-9


def test_train_pruned_is_cached_and_dense_ignores_the_compression(runs):
    syn = by_key(runs)["synflow", 1.0, False]
    assert P.train_pruned("synflow", 1.0, TINY) is syn
    assert P.train_pruned("synflow", 1, TINY, device="cpu") is syn
    assert P._train_pruned.is_cached("synflow", 1.0, TINY, False, 0, CPU)
    assert P.train_pruned("dense", 2.5, TINY) is by_key(runs)["dense", 0.0, False]
    assert not P._train_pruned.is_cached("synflow", 1.0, TINY, False, 1, CPU)


def test_magnitude_empties_the_largest_layer_first(runs):
    mag = by_key(runs)["magnitude", 3.0, False]
    density = dict(zip(mag["layers"], mag["layer_density"]))
    largest = max(SIZES, key=SIZES.get)
    assert density[largest] == 0.0
    assert all(density[n] > 0 for n in SIZES if n != largest)
    assert mag["collapsed"] and mag["top1"] == pytest.approx(10.0)   # a constant output
    assert mag["effective_density"] == 0.0
    syn = by_key(runs)["synflow", 3.0, False]       # iterative SynFlow keeps every layer
    assert not syn["collapsed"] and min(syn["layer_density"]) > 0
    for r in runs:                                  # global top-k keeps exactly round(d N)
        assert r["kept"] == round(10.0 ** -r["log10_rho"] * r["total"])
    text = P.describe(runs)
    assert text.startswith("11 runs (") and "Magnitude at 10^3" in text
    assert "SynFlow" not in text
    assert "3 to go" in P.describe(runs, todo=3)


def test_runs_table_marks_magnitude_collapsed_and_synflow_alive(runs):
    table = P.runs_table(runs, "collapse").splitlines()
    header = table[0].split()
    row = dict(zip(header[2:], table[2].split()[2:]))      # 10^3: rho, kept, pruners
    assert table[2].startswith("10^3") and table[2].split()[1] == f"{round(1e-3 * 49568):,}"
    assert row["Magnitude"] == "collapsed" and row["SynFlow"] == "ok"
    assert table[-1].startswith("(kept weights of 49,568")
    top1 = P.runs_table(runs, "top1").splitlines()
    assert top1[0].startswith("dense: top-1") and top1[3].split()[0] == "10^3"
    assert dict(zip(top1[1].split()[1:], top1[3].split()[1:]))["Magnitude"] == "10.0%"
    with pytest.raises(ValueError, match="show must be"):
        P.runs_table(runs, "accuracy")


def test_accuracy_curves_one_per_pruner_in_registry_order(runs):
    curves, dense, chance = P.accuracy_curves(runs)
    assert [c["method"] for c in curves] == list(PRUNERS)
    assert all(c["kind"] == "live" and c["log10_rho"] == [1.0, 3.0] for c in curves)
    assert dense == by_key(runs)["dense", 0.0, False]["top1"] and chance == 10.0
    syn = next(c for c in curves if c["method"] == "synflow")
    assert syn["top1"] == [by_key(runs)["synflow", x, False]["top1"] for x in (1.0, 3.0)]


def test_more_epochs_train_further():
    one = TINY
    three = TINY.replace(train={**TINY.train, "epochs": 3})
    for method in ("dense", "synflow"):
        a, b = P.train_pruned(method, 1.0, one), P.train_pruned(method, 1.0, three)
        assert len(b["history"]["epoch"]) == 3 and len(a["history"]["epoch"]) == 1
        assert b["top1"] > a["top1"]


# ------------------------------------------------------------------- shuffle check

def test_a_shuffled_twin_keeps_every_layer_density_exactly():
    *_, last = P.shuffle_check(1.0, ("snip", "synflow"), TINY)
    assert last["progress"] == 1.0 and last["log10_rho"] == 1.0
    assert last["same_density"] == {"snip": True, "synflow": True}
    twins = by_key(last["runs"])
    for m in ("snip", "synflow"):
        mine, shuffled = twins[m, 1.0, False], twins[m, 1.0, True]
        assert shuffled["shuffle"] and not mine["shuffle"]
        assert mine["layer_density"] == shuffled["layer_density"]
        assert mine["kept"] == shuffled["kept"]
    assert set(last["original"]) == set(last["shuffled"]) == {"snip", "synflow"}
    assert last["original"]["snip"] == twins["snip", 1.0, False]["top1"]
    assert last["dense"] == twins["dense", 0.0, False]["top1"] and last["chance"] == 10.0
    dense = twins["dense", 0.0, False]
    assert dense["collapsed"] is False and not dense["shuffle"]
    paired = P.pair_up(last["runs"], 1.0)
    assert paired["same_density"] == last["same_density"]
    assert paired["effective_shuffled"]["synflow"] <= 1.0


def test_pair_up_notices_a_layer_density_that_differs():
    base = {"method": "snip", "log10_rho": 1.0, "top1": 50.0, "chance": 10.0,
            "effective_density": 0.1, "layer_density": [0.1, 0.5]}
    runs = [{**base, "method": "dense", "shuffle": False, "top1": 60.0},
            {**base, "shuffle": False}, {**base, "shuffle": True, "layer_density": [0.1, 0.4]}]
    paired = P.pair_up(runs, 1.0)
    assert paired["same_density"] == {"snip": False} and paired["dense"] == 60.0
    assert P.pair_up(runs[:2], 1.0)["same_density"] == {}   # no twin, no pair


def test_magnitude_at_1000_gives_chance_with_both_masks():
    *_, last = P.shuffle_check(3.0, ("magnitude",), TINY)
    # magnitude has emptied the first layer at 10^3: both masks give chance
    assert last["original"]["magnitude"] == last["shuffled"]["magnitude"] == \
        pytest.approx(10.0)
    assert last["same_density"] == {"magnitude": True}


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="unknown pruner"):
        P.train_pruned("optimal", 1.0, TINY)
    with pytest.raises(ValueError, match="choose at least one pruner"):
        next(P.sweep([], None, TINY))
    with pytest.raises(ValueError, match="choose at least one compression"):
        next(P.sweep(["snip"], [], TINY))
    with pytest.raises(ValueError, match=r"unknown pruner\(s\) \['optimal'\]"):
        next(P.sweep(["optimal"], None, TINY))
    with pytest.raises(ValueError, match="choose at least one pruner"):
        next(P.shuffle_check(2.0, (), TINY))
    with pytest.raises(ValueError, match="no published Fig. 6 numbers"):
        fig6.published_curves("mnist/lenet")
    with pytest.raises(FileNotFoundError, match="data/reference"):
        fig6.published("/nonexistent")


# ------------------------------------------------------------------- Fig. 6 at full scale



def test_published_curves_of_fig6():
    curves, dense = fig6.published_curves("cifar10/vgg16_bn")
    assert dense == pytest.approx(93.5, abs=0.05)
    assert [c["method"] for c in curves] == list(PRUNERS)
    syn = next(c for c in curves if c["method"] == "synflow")
    assert syn["kind"] == "published" and len(syn["log10_rho"]) == 13
    assert syn["top1"][-1] == pytest.approx(80.39, abs=0.01)     # Fig. 6 at rho = 10^3
    assert max(syn["std"]) > 0
    assert "cifar100/vgg16_bn" in fig6.published()["results"]


def test_full_scale_published_only_then_with_nbkit_results(tmp_path):
    assert fig6.full_results(tmp_path) is None
    alone = fig6.full_scale(results_dir=tmp_path)
    assert alone["found"] is None and alone["ours"] is None and alone["paper_dense"] is None
    assert len(alone["curves"]) == 5 and alone["chance"] == 10.0
    assert list(alone["dense"]) == ["dense (published)"]
    assert all("std" not in c for c in fig6.full_scale(error_bars=False,
                                                       results_dir=tmp_path)["curves"])
    assert fig6.full_scale("cifar100/vgg16_bn", results_dir=tmp_path)["chance"] == 1.0

    top1 = {m: {"1": 90.0, "2": 85.0, "3": 70.0} for m in PRUNERS}
    write_fig6_results(tmp_path / "accuracy_vs_compression.json", top1)
    found = fig6.full_results(tmp_path)
    assert found["key"] == "cifar10/vgg16_bn" and found["dense"] == 93.0
    assert found["path"].endswith("accuracy_vs_compression.json")
    assert "NVIDIA H100" in found["caption"] and found["label"] == "nbkit, full scale, 160 ep."
    ours = found["curves"]
    assert [c["method"] for c in ours] == list(PRUNERS)
    assert ours[0]["log10_rho"] == [1.0, 2.0, 3.0] and ours[0]["top1"] == [90.0, 85.0, 70.0]
    assert ours[0]["std"] == [0.5] * 3 and "nbkit, full scale" in ours[0]["label"]
    result = fig6.full_scale(results_dir=tmp_path)
    assert result["ours"] == found
    assert [c["kind"] for c in result["curves"]] == ["full"] * 5 + ["published"] * 5
    assert result["dense"]["dense (nbkit)"] == 93.0
    other = fig6.full_scale("cifar10/resnet18", results_dir=tmp_path)  # ours are vgg16_bn
    assert other["ours"] is None and other["found"]["key"] == "cifar10/vgg16_bn"
    assert all(c["kind"] == "published" for c in other["curves"])

    (tmp_path / "accuracy_vs_compression.json").unlink()  # only a shortened run: say so
    write_fig6_results(tmp_path / "accuracy_vs_compression.short.json", top1, variant="short")
    short = fig6.full_scale(results_dir=tmp_path)
    labels = [c.get("label", "") for c in short["curves"]]
    assert sum("nbkit, short recipe" in n for n in labels) == 5
    assert not any("full scale" in n for n in labels)


def test_comparison_table_puts_published_and_nbkit_numbers_side_by_side(tmp_path):
    published_only = fig6.comparison_table(results_dir=tmp_path).splitlines()
    assert "dense 93.5%" in published_only[1] and "nbkit" not in published_only[1]
    synflow = next(r for r in published_only if r.startswith("synflow"))
    assert synflow.split() == ["synflow", "93.3", "1.00", "90.1", "0.96", "80.4", "0.86"]
    top1 = {m: {"1": 90.0, "2": 85.0, "3": 10.0} for m in PRUNERS}
    top1["synflow"] = {"1": 90.0, "2": 85.0}  # a missing point shows as "-"
    write_fig6_results(tmp_path / "accuracy_vs_compression.short.json", top1, variant="short")
    table = fig6.comparison_table(results_dir=tmp_path).splitlines()
    assert "nbkit, short recipe, 160 ep. (dense 93.0%)" in table[1]
    assert len(table) == 3 + len(PRUNERS)
    snip = next(r for r in table if r.startswith("snip")).split()
    assert snip[-6:] == ["90.0", "0.97", "85.0", "0.91", "10.0", "0.11"]  # 90 / 93 = 0.97
    assert next(r for r in table if r.startswith("synflow")).split()[-1] == "-"


def test_graSP_as_the_paper_ran_it_joins_the_fig6_grid_and_table(tmp_path):
    """The paper-recipe grid trains GraSP both ways (T = 200 and the paper's own T = 1);
    nbkit's grasp_paper curve shows after grasp, and in the table the paper's GraSP
    numbers stand beside both, since the paper's code ran T = 1."""
    from nbkit.experiments import grids, runner

    full = runner.plan(grids.ACCURACY_VS_COMPRESSION, "full", tmp_path)
    assert len(full) == 3 * 3 * 6 + 3  # seeds x rhos x (5 pruners + grasp_paper), dense
    assert sum(r.config["method"] == "grasp_paper" for r in full) == 9
    short = runner.plan(grids.ACCURACY_VS_COMPRESSION, "short", tmp_path)
    assert "grasp_paper" not in {r.config["method"] for r in short}  # as shipped
    with pytest.raises(ValueError, match="grasp_paper"):
        P.train_pruned("grasp_papr", 3.0, TINY_PRUNED)

    top1 = {m: {"1": 90.0, "2": 85.0, "3": 10.0} for m in PRUNERS}
    top1["grasp_paper"] = {"3": 71.0}
    write_fig6_results(tmp_path / "accuracy_vs_compression.json", top1)
    ours = fig6.full_results(tmp_path)["curves"]
    assert [c["method"] for c in ours] == ["random", "magnitude", "snip", "grasp",
                                          "grasp_paper", "synflow"]
    table = fig6.comparison_table(results_dir=tmp_path).splitlines()
    rows = {r.split()[0]: r.split()[1:] for r in table[3:]}
    assert rows["grasp_paper"][:6] == rows["grasp"][:6]  # the paper's GraSP, both rows
    assert rows["grasp_paper"][6:] == ["-", "-", "71.0", "0.76"]  # 71 / 93
    lines = {r.split()[0]: r for r in table[3:]}  # the wider name keeps columns aligned
    assert len(lines["grasp_paper"]) == len(lines["grasp"]) == len(lines["snip"])
    assert len(table[2]) == len(lines["snip"])  # the ρ headers end where the numbers do


def test_a_corrupt_or_foreign_results_file_is_named_not_raised(tmp_path):
    path = tmp_path / "accuracy_vs_compression.json"
    path.write_text("{not json")
    found = fig6.full_results(tmp_path)
    assert "could not be read" in found["error"] and found["path"] == str(path)
    result = fig6.full_scale(results_dir=tmp_path)   # the published curves still come
    assert result["ours"] is None and len(result["curves"]) == 5
    assert fig6.comparison_table(results_dir=tmp_path).splitlines()[-1] == found["error"]
    path.write_text(json.dumps({"experiment": "learning_rules", "summary": {}}))
    assert "holds results of 'learning_rules'" in fig6.full_results(tmp_path)["error"]
    path.write_text(json.dumps({"experiment": "accuracy_vs_compression", "summary": {}}))
    broken = fig6.full_results(tmp_path)         # no "top1" in the summary
    assert "could not be read (KeyError" in broken["error"]


def test_a_corrupt_paper_recipe_dense_file_is_named_not_raised(tmp_path):
    (tmp_path / fig6.DENSE_FILE).write_text("{not json")
    found = fig6.paper_recipe_dense(tmp_path)
    assert "could not be read" in found["error"]
    assert fig6.full_scale(results_dir=tmp_path)["paper_dense"] == found
    assert "dense (nbkit" not in "".join(fig6.full_scale(results_dir=tmp_path)["dense"])
    assert fig6.paper_recipe_dense(tmp_path / "absent") is None
    (tmp_path / fig6.DENSE_FILE).write_text(json.dumps({"summary": {"dense_top1": None}}))
    assert fig6.paper_recipe_dense(tmp_path) is None  # holds no dense run
    assert fig6.full_results(tmp_path) is None  # the dense file is not the grid


def test_the_shipped_gpu_run_of_fig6():
    """data/results/: the accuracy_vs_compression run made on a GPU. SynFlow stays well
    above chance at rho = 10^3, where magnitude and random pruning are at chance."""
    found = fig6.full_results()
    assert found is not None and "error" not in found and found["key"] == "cifar10/vgg16_bn"
    merged = json.loads(Path(found["path"]).read_text())
    assert merged["provenance"]["runs_missing"] == 0
    assert "cpu" not in merged["provenance"]["devices"][0]
    top1, chance = merged["summary"]["top1"], merged["summary"]["chance_top1"]
    assert top1["synflow"]["3"] > chance + 40
    assert top1["magnitude"]["3"] <= chance + 1 and top1["random"]["3"] <= chance + 1
    assert merged["summary"]["dense_top1"] > 85
    for method in PRUNERS:  # at rho = 10 every pruner trains
        assert top1[method]["1"] > 75


def test_the_shipped_paper_recipe_dense_run():
    """data/results/: dense vgg16_bn trained with the paper's 160-epoch recipe on a GPU.
    It trains well past the shortened recipe's dense run, and the Fig. 6 view draws it
    as a third dense line and names it in its table."""
    merged = json.loads((results.RESULTS_DIR / fig6.DENSE_FILE).read_text())
    assert merged["config"]["train"]["epochs"] == 160 and merged["variant"] == "full"
    assert "cpu" not in merged["provenance"]["devices"][0]
    found = fig6.paper_recipe_dense()
    assert found["key"] == "cifar10/vgg16_bn" and found["top1"] > 88
    assert fig6.full_scale()["dense"]["dense (nbkit, 160 ep.)"] == found["top1"]
    assert fig6.comparison_table().splitlines()[-1].startswith("nbkit dense 9")
    assert "dense (nbkit, 160 ep.)" not in fig6.full_scale("cifar100/vgg16_bn")["dense"]
