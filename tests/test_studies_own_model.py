"""Notebook 07's study: every pruner on torchvision models the paper never tried, and the
claims its text makes (its checked cells print the rest)."""

from __future__ import annotations

import pytest

from nbkit import studies
from nbkit.viz.own_model import own_model_figure
from nbkit.widgets.own_model import own_model_app

S = studies.own_model


def test_mobilenet_magnitude_is_cut_and_synflow_keeps_the_most_on_a_path():
    r = S.prune_all("mobilenet_v2", 2.0)
    runs = r["pruners"]
    assert runs["magnitude"]["effective"] == 0 and len(runs["magnitude"]["collapsed"]) == 26
    assert runs["random"]["effective"] == 0
    assert runs["synflow"]["linearized"]
    paths = {m: runs[m]["effective"] for m in ("snip", "grasp", "synflow")}
    assert min(paths.values()) > 0 and max(paths, key=paths.get) == "synflow"
    kept = S.protected(r)
    assert kept and all(p["worst"][1] < 0.1 * r["density"] for p in kept)
    assert "depthwise" in S.describe_layer("mobilenet_v2", kept[0]["name"])
    fig = own_model_figure(r)
    assert len(fig.data) == 6 and "MobileNetV2" in fig.layout.title.text


def test_things_to_try_vit_squeezenet_and_resnet18():
    vit = S.prune_all("vit", 2.0)["pruners"]
    for m in ("snip", "grasp", "synflow"):
        assert "heads.head.weight is all zeros" in vit[m]["error"]
    assert "density" in vit["magnitude"] and "density" in vit["random"]
    assert vit["magnitude"]["effective"] is None  # LayerNorm: no path count
    squeeze = S.prune_all("squeezenet1_1", 2.0)["pruners"]["synflow"]
    assert squeeze["collapsed"] and squeeze["effective"] > 0  # one branch empty, connected
    resnet = S.prune_all("resnet18", 2.0)["pruners"]
    assert resnet["magnitude"]["collapsed"] and resnet["magnitude"]["effective"] == 0
    assert all(resnet[m]["effective"] > 0 for m in ("random", "snip", "grasp", "synflow"))


def test_the_app_draws_and_names_refusals():
    app = own_model_app(model="vit", log10_rho=2.0)
    assert "SNIP</b> refused" in app.caption.value
    assert "ViT" in app.figure.layout.title.text
    app.controls["model"].value = "squeezenet1_1"
    assert app.result["model"] == "squeezenet1_1" and app.error is None
    with pytest.raises(ValueError, match="unknown model"):
        S.build("alexnet")


def test_the_support_table_says_what_each_part_takes():
    rows = {r["kind"]: r for r in S.support("mobilenet_v2")}
    assert rows["conv2d grouped"]["layers"] == 17
    assert rows["conv2d grouped"]["pruning"] == "yes" and rows["conv2d grouped"]["probes"] == "yes"
    assert rows["conv2d grouped"]["rules"].startswith("groups > 1")
    vit = {r["kind"]: r for r in S.support("vit")}
    assert vit["attention"]["pruning"] == "yes" and "attention" in vit["attention"]["rules"]
