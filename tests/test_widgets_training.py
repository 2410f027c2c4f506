"""The train-pruned-networks apps, driven without a kernel, on a tiny MLP trained for one
epoch: move a control, press Train, and check the figure against the science. The
science itself (runs, sweeps, tables, result files) is tested in
test_studies_pruned_training.py."""

from __future__ import annotations

import html

import numpy as np
import pytest
from helpers import TINY_PRUNED, write_fig6_results

from nbkit.studies import pruned_training as P
from nbkit.studies.pruned_training import PRUNERS
from nbkit.viz import style
from nbkit.widgets import fig6
from nbkit.widgets import training as wt

TINY = TINY_PRUNED


pytestmark = pytest.mark.usefixtures("one_thread")


def _live(fig, kind="solid"):
    return {t.name: t for t in fig.data if t.line.dash == kind and t.legendgroup}


@pytest.fixture(scope="module")
def app():
    return wt.training_app(TINY)


def test_default_run_draws_every_pruner_against_compression(app):
    assert not app.messages
    assert app.progress.value == 1.0
    assert app.figure.layout.xaxis.type == "log"
    live = _live(app.figure)
    assert sorted(live) == sorted(style.label_for(p) for p in PRUNERS)
    for name, trace in live.items():
        np.testing.assert_allclose(trace.x, [10.0, 1000.0])
        assert trace.line.color == style.color_for(
            next(p for p in PRUNERS if style.label_for(p) == name))
    names = [t.name for t in app.figure.data]
    assert "dense" in names and "chance (10%)" in names
    assert "11 runs" in app.caption.value
    assert "mlp (depth=3, width=16)" in app.figure.layout.annotations[0].text
    assert app.values() == {"pruners": PRUNERS, "log10_rhos": (1.0, 3.0), "epochs": 1,
                            "shuffle": False}
    # the figure draws the study's cached runs
    syn = next(r for r in app.result["runs"] if r["method"] == "synflow"
               and r["log10_rho"] == 3.0)
    assert syn is P.train_pruned("synflow", 3.0, TINY)
    np.testing.assert_allclose(live["SynFlow"].y[-1], syn["top1"])


def test_caption_names_the_collapsed_runs(app):
    assert "Magnitude at 10^3" in app.caption.value
    assert P.describe(app.result["runs"]) in html.unescape(app.caption.value)


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
    assert app.result["settings"].train["epochs"] == 3 and TINY.train["epochs"] == 1
    app.controls["epochs"].value = 1


def test_compute_error_shows_and_the_app_keeps_working(app):
    before = len(app.figure.data)
    app.controls["pruners"].value = ()
    app.button.click()
    assert "choose at least one pruner" in app.messages
    assert isinstance(app.error, ValueError) and "ValueError" in app.caption.value
    assert len(app.figure.data) == before            # the last figure stays
    assert not app.button.disabled
    app.controls["pruners"].value = ("random",)
    app.controls["shuffle"].value = False
    app.button.click()
    assert not app.messages and list(_live(app.figure)) == ["Random"]
    assert app.error is None


def test_shuffle_app_compares_bars_at_one_compression():
    app = wt.shuffle_app(TINY, log10_rho=1.0, pruners=("snip", "synflow"))
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
    bars = [t for t in app.figure.data if t.type == "bar"]
    assert [list(t.y) for t in bars] == [[pytest.approx(10.0)]] * 2
    app.controls["pruners"].value = ()
    app.button.click()
    assert "choose at least one pruner" in app.messages and not app.button.disabled




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

    top1 = {m: {"1": 90.0, "2": 85.0, "3": 70.0} for m in PRUNERS}
    write_fig6_results(tmp_path / "accuracy_vs_compression.json", top1)
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
    write_fig6_results(tmp_path / "accuracy_vs_compression.short.json", top1, variant="short")
    app = fig6.full_scale_app(results_dir=tmp_path)
    names = [t.name or "" for t in app.figure.data]
    assert sum("nbkit, short recipe" in n for n in names) == 5
    assert not any("full scale" in n for n in names)


def test_full_scale_app_draws_the_paper_recipe_dense_line():
    app = fig6.full_scale_app()  # the shipped data/results/
    assert not app.messages
    assert "dense (nbkit, 160 ep.)" in [t.name for t in app.figure.data]
    assert "The line 'dense (nbkit, 160 ep.)': dense 9" in html.unescape(app.caption.value)
    app.controls["key"].value = "cifar100/vgg16_bn"  # the dense run is for CIFAR-10
    assert "dense (nbkit, 160 ep.)" not in [t.name for t in app.figure.data]
    assert "160 ep." not in app.caption.value


def test_a_corrupt_paper_recipe_dense_file_is_named_not_raised(tmp_path):
    (tmp_path / fig6.study.DENSE_FILE).write_text("{not json")
    app = fig6.full_scale_app(results_dir=tmp_path)
    assert not app.messages and "could not be read" in app.caption.value
    assert len([t for t in app.figure.data if t.legendgroup]) == 5    # published still drawn


def test_full_scale_app_survives_a_corrupt_results_file(tmp_path):
    (tmp_path / "accuracy_vs_compression.json").write_text("{not json")
    app = fig6.full_scale_app(results_dir=tmp_path)
    assert not app.messages
    assert "could not be read" in app.caption.value
    assert len([t for t in app.figure.data if t.legendgroup]) == 5    # published still drawn
