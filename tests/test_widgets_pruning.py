"""The apps of notebook 01 (layer collapse), driven without a kernel: move a control,
then check that the figure changed as the science says.

Small stand-ins keep this fast: VGG-16-BN and VGG-11-BN at 1/16 width (same layer plans,
256x fewer weights), a grid step of 0.5 and 5 SynFlow iterations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nbkit.studies import collapse
from nbkit.viz import pruning as viz
from nbkit.widgets import pruning as pruning_app

S = collapse.Settings("test", max_iterations=5, prune_samples=20, step=0.5, critical_step=0.5,
                      cpu_threads=1)
VGG16, VGG11 = "vgg16_bn/16", "vgg11_bn/16"


def _bars(app):
    """(density, kept, size) per layer of the bar panel."""
    bars = [t for t in app.figure.data if t.type == "bar"][0]
    return np.asarray(bars.customdata)


@pytest.fixture(scope="module")
def collapse_app():
    return pruning_app.layer_collapse_app(S, models=(VGG16, VGG11, "vgg99_bn/4"),
                                          log10_rho=0.0, pruner="magnitude", results=[])


def test_build_model_narrow_vgg_keeps_the_plan():
    full = collapse.build_model("vgg16_bn")
    narrow = collapse.build_model(VGG16)
    shapes = [p.shape for n, p in full.named_parameters() if n.endswith("conv.weight")]
    small = [p.shape for n, p in narrow.named_parameters() if n.endswith("conv.weight")]
    assert len(shapes) == len(small) == 13
    assert [s[0] // 16 for s in shapes] == [s[0] for s in small]
    assert narrow.input_shape == (3, 32, 32)
    with pytest.raises(ValueError, match="vgg16_bn/8"):
        collapse.build_model("vgg16_bn/x")


def test_grid_stops_at_the_maximal_compression():
    assert collapse.log10_rho_grid([100] * 10, 0.25) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75,
                                                   2.0]
    assert collapse.log10_rho_grid([10**7] * 2, 0.5)[-1] == 6.0


def test_raising_compression_on_magnitude_empties_the_largest_layers_first(collapse_app):
    app = collapse_app
    assert app.error is None, app.messages
    assert "Magnitude" in app.figure.layout.title.text
    grid = collapse.sweep(VGG16, S)["log10_rho"]
    first_empty = None
    for x in grid:
        app.controls["log10_rho"].value = x
        bars = _bars(app)
        empty = bars[:, 0] == 0
        if empty.any():
            first_empty = x
            break
        assert "no layer collapse" in app.figure.layout.title.text
    assert first_empty is not None, "magnitude pruning never collapsed a layer"
    assert "ρ = 10" in app.figure.layout.title.text and "empty" in app.figure.layout.title.text
    sizes = bars[:, 2]
    assert (sizes[empty] == sizes.max()).all()       # only the largest layers are empty
    assert (bars[sizes < sizes.max(), 0] > 0).all()  # every smaller layer keeps weights
    app.controls["log10_rho"].value = 0.0


def test_switching_the_pruner_to_synflow_avoids_the_collapse(collapse_app):
    app = collapse_app
    crit = collapse.sweep(VGG16, S)["pruners"]["magnitude"]["critical"]
    app.controls["pruner"].value = "magnitude"
    app.controls["log10_rho"].value = crit + S.step
    assert (_bars(app)[:, 0] == 0).any()
    app.controls["pruner"].value = "synflow"
    assert "SynFlow" in app.figure.layout.title.text
    assert (_bars(app)[:, 0] > 0).all()
    assert "no layer collapse" in app.figure.layout.title.text
    assert "SynFlow" in app.caption.value
    app.controls["pruner"].value = "magnitude"


def test_published_curves_show_for_vgg16_only_and_the_model_dropdown_rebuilds(collapse_app):
    app = collapse_app
    app.controls["model"].value = VGG16
    assert any(t.name and t.name.startswith("published") for t in app.figure.data)
    app.controls["model"].value = VGG11
    assert app.error is None, app.messages
    assert "vgg11_bn at 1/16 width" in app.figure.layout.title.text
    assert len(_bars(app)) == 9                   # 8 convs and the classifier
    assert not any(t.name and t.name.startswith("published") for t in app.figure.data)
    app.controls["model"].value = VGG16
    assert len(_bars(app)) == 14


def test_a_compute_error_shows_in_the_output_and_the_app_stays_usable(collapse_app):
    app = collapse_app
    app.controls["model"].value = VGG16
    title = app.figure.layout.title.text
    app.controls["model"].value = "vgg99_bn/4"
    assert isinstance(app.error, ValueError)
    assert "unknown model" in app.messages
    assert app.figure.layout.title.text == title          # the last good figure stays
    app.controls["model"].value = VGG16
    assert app.error is None and app.messages == ""
    app.controls["log10_rho"].value = 1.0
    assert "ρ = 10¹" in app.figure.layout.title.text


def test_slider_beyond_the_models_maximal_compression_is_clamped(collapse_app):
    app = collapse_app
    app.controls["model"].value = VGG16
    app.controls["log10_rho"].value = 6.0
    s = collapse.sweep(VGG16, S)
    assert s["rho_max_log10"] < 6
    assert f"grid stops at 10^{s['log10_rho'][-1]:g}" in app.caption.value
    app.controls["log10_rho"].value = 0.0


def test_connectivity_app_moves_with_the_slider():
    app = pruning_app.connectivity_app(S, models=(VGG16,), log10_rho=0.0, results=[])
    assert app.error is None, app.messages
    s = collapse.sweep(VGG16, S)
    ps = s["pruners"]
    # SynFlow stays connected furthest; magnitude disconnects no later than it collapses
    x = ps["synflow"]["connected"]
    assert x == max(p["connected"] for p in ps.values())
    assert ps["magnitude"]["connected"] < x
    assert ps["magnitude"]["connected"] <= ps["magnitude"]["critical"]
    app.controls["log10_rho"].value = x
    marks = [sh.x0 for sh in app.figure.layout.shapes if sh.line.dash == "dot"]
    assert marks == [x, x]                        # both panels mark the compression
    i = s["log10_rho"].index(x)
    eff = {t.name: t.y for t in app.figure.data if t.xaxis == "x" and t.mode == "lines+markers"}
    assert eff["SynFlow"][i] > 0.5 and eff["Magnitude"][i] == 0
    assert "Magnitude: effective density 0 (disconnected)" in app.caption.value


def test_full_runs_from_data_results_are_drawn_with_provenance(tmp_path):
    s = collapse.sweep(VGG16, S)
    doc = {"experiment": "layer_collapse", "variant": "full", "config": {"model": "vgg16_bn"},
           "provenance": {"devices": ["NVIDIA H100"], "last_date": "2026-11-25T10:00:00"},
           "summary": {"critical": {"magnitude": 2.75},
                       "density": {"magnitude": {"0": [1.0] * 14, "1": [0.5] * 14}}}}
    (tmp_path / "layer_collapse.json").write_text(json.dumps(doc))
    (tmp_path / "layer_collapse.broken.json").write_text("{not json")
    results = collapse.full_runs(tmp_path)
    assert len(results) == 2
    broken = [r for r in results if "error" in r]
    assert len(broken) == 1 and "layer_collapse.broken.json could not be read" in \
        broken[0]["error"]                           # named, not skipped silently
    assert results[0]["label"] == "nbkit full run (2026-11-25)"
    assert "NVIDIA H100" in results[0]["hover"]
    view = pruning_app.collapse_view(s, "magnitude", 1.0, results=results)
    assert view["figure"]["reference"]["density"] == [[1.0] * 14, [0.5] * 14]
    assert "layer_collapse.broken.json could not be read" in view["caption"]
    figure = viz.layer_collapse_figure(**view["figure"])
    dotted = [t for t in figure.data if t.name == results[0]["label"]]
    assert len(dotted) == 14 and "NVIDIA H100" in dotted[0].hovertemplate
    conn = pruning_app.connectivity_view(s, 1.0, results=results)
    assert conn["figure"]["reference"] == {"magnitude": 2.75}
    assert collapse.full_runs(tmp_path / "missing") == []


def test_the_shipped_full_run_matches_the_paper_for_magnitude_synflow_and_grasp_t1():
    """data/results/layer_collapse.json: Fig. 1's grid on the full-width VGG-16-BN with 3
    seeds. Magnitude and SynFlow reach the paper's critical compressions (within one grid
    step), and SynFlow stays connected up to the largest compression. GraSP as the
    paper's code ran it (T = 1) lasts at least as long as the paper's GraSP curve (3.5),
    where GraSP at T = 200 collapses at 2.75."""
    (run,) = [r for r in collapse.full_runs() if r["file"] == "layer_collapse.json"]
    s = run["summary"]
    assert run["provenance"]["runs"] == 450 and run["provenance"]["runs_missing"] == 0
    assert abs(s["critical"]["magnitude"] - 2.75) <= 0.25
    assert abs(s["critical"]["synflow"] - 6.0) <= 0.25
    assert s["critical_disconnected"]["synflow"] == 6.0
    assert all(s["critical"][m] < 4.5 for m in ("random", "magnitude", "snip", "grasp"))
    assert s["critical"]["grasp_paper"] >= 3.5 > s["critical"]["grasp"]
    table = collapse.full_runs_table(run).splitlines()
    assert table[0].startswith("layer_collapse.json: vgg16_bn, 450 prunings on ")
    synflow = next(line for line in table if line.startswith("synflow")).split()
    assert synflow[1:5] == ["6.00", "6", "6", "6"] and synflow[-1] == "6.00"
