"""The train-pruned-networks widgets, driven without a kernel, on a tiny MLP trained for a
few steps: move a control, press Train, and check the figure against the science."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nbkit.viz import style
from nbkit.widgets import fig6
from nbkit.widgets import training as wt

TINY = {"model_kwargs": {"depth": 3, "width": 16}, "synflow_iterations": 5,
        "log10_rho": (1.0, 3.0), "train": {"epochs": 1}}


def _live(fig, kind="solid"):
    return {t.name: t for t in fig.data if t.line.dash == kind and t.legendgroup}


@pytest.fixture(scope="module")
def app():
    return wt.training_app(config=TINY)


def test_default_run_draws_every_pruner_against_compression(app):
    assert not app.messages
    assert app.progress.value == 1.0
    assert app.figure.layout.xaxis.type == "log"
    live = _live(app.figure)
    assert sorted(live) == sorted(style.label_for(p) for p in wt.PRUNERS)
    for name, trace in live.items():
        np.testing.assert_allclose(trace.x, [10.0, 1000.0])
        assert trace.line.color == style.color_for(
            next(p for p in wt.PRUNERS if style.label_for(p) == name))
    names = [t.name for t in app.figure.data]
    assert "dense" in names and "chance (10%)" in names
    assert "11 runs" in app.caption.value
    assert "mlp (depth=3, width=16)" in app.figure.layout.annotations[0].text


def test_magnitude_empties_the_largest_layer_first(app):
    runs = {(r["method"], r["log10_rho"]): r for r in app.result["runs"]}
    sizes = {"layers.0.weight": 3072 * 16, "layers.2.weight": 16 * 16, "fc.weight": 16 * 10}
    mag = runs["magnitude", 3.0]
    largest = max(sizes, key=sizes.get)
    assert mag["layer_density"][largest] == 0.0
    assert all(mag["layer_density"][n] > 0 for n in sizes if n != largest)
    assert mag["collapsed"] and mag["top1"] == pytest.approx(10.0)   # a constant output
    syn = runs["synflow", 3.0]                       # iterative SynFlow keeps every layer
    assert not syn["collapsed"] and min(syn["layer_density"].values()) > 0
    for r in app.result["runs"]:                     # global top-k keeps exactly round(d N)
        assert r["kept"] == round(10.0 ** -r["log10_rho"] * r["total"])
    assert "Magnitude at 10^3" in app.caption.value


def test_runs_table_marks_magnitude_collapsed_and_synflow_alive(app):
    table = wt.runs_table(app.result["runs"], "collapse").splitlines()
    header = table[0].split()
    row = dict(zip(header[2:], table[2].split()[2:]))      # 10^3: rho, kept, pruners
    assert table[2].startswith("10^3") and table[2].split()[1] == f"{round(1e-3 * 49568):,}"
    assert row["Magnitude"] == "collapsed" and row["SynFlow"] == "ok"
    top1 = wt.runs_table(app.result["runs"], "top1").splitlines()
    assert top1[0].startswith("dense: top-1") and top1[3].split()[0] == "10^3"
    assert dict(zip(top1[1].split()[1:], top1[3].split()[1:]))["Magnitude"] == "10.0%"
    with pytest.raises(ValueError, match="show must be"):
        wt.runs_table(app.result["runs"], "accuracy")


def test_choosing_pruners_and_compressions_redraws(app):
    app.controls["pruners"].value = ("synflow", "magnitude")
    app.controls["log10_rhos"].value = (1.0, 2.0, 3.0)
    app.button.click()
    live = _live(app.figure)
    assert sorted(live) == ["Magnitude", "SynFlow"]
    np.testing.assert_allclose(live["SynFlow"].x, [10.0, 100.0, 1000.0])
    assert "7 runs" in app.caption.value
    assert not app.messages


def test_shuffle_adds_dotted_twins_with_the_same_layer_densities(app):
    app.controls["pruners"].value = ("snip",)
    app.controls["log10_rhos"].value = (1.0,)
    app.controls["shuffle"].value = True
    app.button.click()
    dotted = _live(app.figure, "dot")
    assert list(dotted) == ["SNIP (layer-wise shuffle)"]
    runs = app.result["runs"]
    mine, shuffled = [r for r in runs if r["method"] == "snip"]
    assert shuffled["shuffle"] and mine["layer_density"] == shuffled["layer_density"]


def test_more_epochs_train_further(app):
    app.controls["pruners"].value = ("synflow",)
    app.controls["log10_rhos"].value = (1.0,)
    app.controls["shuffle"].value = False
    app.button.click()
    one = {r["method"]: r["top1"] for r in app.result["runs"]}
    app.controls["epochs"].value = 3
    app.button.click()
    three = {r["method"]: r["top1"] for r in app.result["runs"]}
    assert "3 epochs" in app.figure.layout.annotations[0].text
    assert three["dense"] > one["dense"] and three["synflow"] > one["synflow"]
    app.controls["epochs"].value = 1


def test_compute_error_shows_and_the_app_keeps_working(app):
    before = len(app.figure.data)
    app.controls["pruners"].value = ()
    app.button.click()
    assert "choose at least one pruner" in app.messages
    assert len(app.figure.data) == before            # the last figure stays
    assert not app.button.disabled
    app.controls["pruners"].value = ("random",)
    app.controls["shuffle"].value = False
    app.button.click()
    assert not app.messages and list(_live(app.figure)) == ["Random"]


def test_shuffle_app_compares_bars_at_one_compression():
    app = wt.shuffle_app(config=TINY, log10_rho=1.0, pruners=("snip", "synflow"))
    assert not app.messages
    mine, shuffled = app.figure.data
    assert list(mine.x) == ["SNIP", "SynFlow"] and shuffled.marker.pattern.shape == "/"
    assert app.result["same_density"] == {"snip": True, "synflow": True}
    assert "exactly its pruner" in app.caption.value
    app.controls["log10_rho"].value = 3.0
    app.button.click()
    assert "10<sup>3</sup>" in app.figure.layout.title.text
    assert app.result["log10_rho"] == 3.0
    app.controls["pruners"].value = ("magnitude",)
    app.button.click()
    assert [list(t.x) for t in app.figure.data if t.type == "bar"] == [["Magnitude"]] * 2
    # magnitude has emptied the first layer at 10^3: both masks give chance
    assert app.result["original"]["magnitude"] == app.result["shuffled"]["magnitude"] == \
        pytest.approx(10.0)


def _collected(path, top1, variant="full"):
    merged = {"experiment": "accuracy_vs_compression", "variant": variant,
              "config": {"model": "vgg16_bn", "data": "cifar10", "num_classes": 10,
                         "train": {"epochs": 160}},
              "provenance": {"runs": 16, "devices": ["NVIDIA H100"], "last_date": "2026-01-02"},
              "summary": {"dense_top1": 93.0, "top1": top1,
                          "top1_std": {m: {k: 0.5 for k in v} for m, v in top1.items()}}}
    path.write_text(json.dumps(merged))


def test_full_scale_app_published_only_then_with_nbkit_results(tmp_path):
    app = fig6.full_scale_app(results_dir=tmp_path)
    assert "No full-scale nbkit results" in app.caption.value
    assert app.figure.layout.title.text == "Full scale: vgg16_bn on CIFAR-10"
    published = [t for t in app.figure.data if t.line.dash == style.PUBLISHED_DASH
                 and t.legendgroup]
    assert len(published) == 5
    syn = next(t for t in published if t.name == "SynFlow (published)")
    assert syn.y[-1] == pytest.approx(80.39, abs=0.01)     # Fig. 6 at rho = 10^3
    assert len(syn.x) == 13 and syn.error_y.visible and max(syn.error_y.array) > 0
    app.controls["error_bars"].value = False
    assert not any(t.error_y.visible for t in app.figure.data)
    app.controls["key"].value = "cifar100/vgg16_bn"
    assert "CIFAR-100" in app.figure.layout.title.text
    assert "chance (1%)" in [t.name for t in app.figure.data]

    top1 = {m: {"1": 90.0, "2": 85.0, "3": 70.0} for m in wt.PRUNERS}
    _collected(tmp_path / "accuracy_vs_compression.json", top1)
    app = fig6.full_scale_app(results_dir=tmp_path)
    ours = [t for t in app.figure.data if t.name and "nbkit, full scale" in t.name]
    assert len(ours) == 5 and ours[0].line.dash == "solid"
    np.testing.assert_allclose(ours[0].x, [10.0, 100.0, 1000.0])
    assert list(ours[0].y) == [90.0, 85.0, 70.0]
    assert "dense (nbkit)" in [t.name for t in app.figure.data]
    assert "NVIDIA H100" in app.caption.value and "JPEG" in app.caption.value
    app.controls["key"].value = "cifar10/resnet18"     # nbkit's runs are for vgg16_bn
    assert not any("nbkit" in (t.name or "") for t in app.figure.data)
    assert "cifar10/vgg16_bn" in app.caption.value
    (tmp_path / "accuracy_vs_compression.json").unlink()  # only a shortened run: say so
    _collected(tmp_path / "accuracy_vs_compression.short.json", top1, variant="short")
    app = fig6.full_scale_app(results_dir=tmp_path)
    names = [t.name or "" for t in app.figure.data]
    assert sum("nbkit, short recipe" in n for n in names) == 5
    assert not any("full scale" in n for n in names)


def test_comparison_table_puts_published_and_nbkit_numbers_side_by_side(tmp_path):
    published_only = fig6.comparison_table(results_dir=tmp_path).splitlines()
    assert "dense 93.5%" in published_only[1] and "nbkit" not in published_only[1]
    synflow = next(r for r in published_only if r.startswith("synflow"))
    assert synflow.split() == ["synflow", "93.3", "1.00", "90.1", "0.96", "80.4", "0.86"]
    top1 = {m: {"1": 90.0, "2": 85.0, "3": 10.0} for m in wt.PRUNERS}
    top1["synflow"] = {"1": 90.0, "2": 85.0}  # a missing point shows as "-"
    _collected(tmp_path / "accuracy_vs_compression.short.json", top1, variant="short")
    table = fig6.comparison_table(results_dir=tmp_path).splitlines()
    assert "nbkit, short recipe, 160 ep. (dense 93.0%)" in table[1]
    assert len(table) == 3 + len(wt.PRUNERS)
    snip = next(r for r in table if r.startswith("snip")).split()
    assert snip[-6:] == ["90.0", "0.97", "85.0", "0.91", "10.0", "0.11"]  # 90 / 93 = 0.97
    assert next(r for r in table if r.startswith("synflow")).split()[-1] == "-"


def test_the_shipped_gpu_run_of_fig6():
    """data/results/: the accuracy_vs_compression run made on a GPU. SynFlow stays well
    above chance at rho = 10^3, where magnitude and random pruning are at chance."""
    found = fig6.load_full_results()
    assert found is not None and "error" not in found and found["key"] == "cifar10/vgg16_bn"
    merged = json.loads(Path(found["path"]).read_text())
    assert merged["provenance"]["runs_missing"] == 0
    assert "cpu" not in merged["provenance"]["devices"][0]
    top1, chance = merged["summary"]["top1"], merged["summary"]["chance_top1"]
    assert top1["synflow"]["3"] > chance + 40
    assert top1["magnitude"]["3"] <= chance + 1 and top1["random"]["3"] <= chance + 1
    assert merged["summary"]["dense_top1"] > 85
    for method in wt.PRUNERS:  # at rho = 10 every pruner trains
        assert top1[method]["1"] > 75


def test_the_shipped_paper_recipe_dense_run():
    """data/results/: dense vgg16_bn trained with the paper's 160-epoch recipe on a GPU.
    It trains well past the shortened recipe's dense run, and the Fig. 6 view draws it
    as a third dense line and names it in its table."""
    merged = json.loads((fig6.RESULTS_DIR / fig6.DENSE_FILE).read_text())
    assert merged["config"]["train"]["epochs"] == 160 and merged["variant"] == "full"
    assert "cpu" not in merged["provenance"]["devices"][0]
    found = fig6.load_paper_recipe_dense()
    assert found["key"] == "cifar10/vgg16_bn" and found["top1"] > 88
    assert fig6.full_scale()["dense"]["dense (nbkit, 160 ep.)"] == found["top1"]
    assert fig6.comparison_table().splitlines()[-1].startswith("nbkit dense 9")
    assert "dense (nbkit, 160 ep.)" not in fig6.full_scale("cifar100/vgg16_bn")["dense"]


def test_a_corrupt_paper_recipe_dense_file_is_named_not_raised(tmp_path):
    (tmp_path / fig6.DENSE_FILE).write_text("{not json")
    found = fig6.load_paper_recipe_dense(tmp_path)
    assert "could not be read" in found["error"]
    app = fig6.full_scale_app(results_dir=tmp_path)
    assert not app.messages and "could not be read" in app.caption.value
    assert fig6.load_paper_recipe_dense(tmp_path / "absent") is None


def test_full_scale_app_survives_a_corrupt_results_file(tmp_path):
    (tmp_path / "accuracy_vs_compression.json").write_text("{not json")
    app = fig6.full_scale_app(results_dir=tmp_path)
    assert not app.messages
    assert "could not be read" in app.caption.value
    assert len([t for t in app.figure.data if t.legendgroup]) == 5    # published still drawn


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="unknown pruner"):
        wt.train_pruned("optimal", 1.0, config=wt.config_for("quick", **TINY))
    with pytest.raises(ValueError, match="mode must be"):
        wt.config_for("medium")
    with pytest.raises(ValueError, match="no published Fig. 6 numbers"):
        fig6.published_curves("mnist/lenet")
    with pytest.raises(FileNotFoundError, match="data/reference"):
        fig6.load_published("/nonexistent/fig6.json")
