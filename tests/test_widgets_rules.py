"""The learning-rule apps, without a kernel: move each control, press Train, and check
that the figure changed as the science says."""

from __future__ import annotations

import json
import math

import pytest
import torch

import nbkit
from nbkit.viz import rules as V
from nbkit.viz.style import label_for
from nbkit.widgets import rules as WR

QUICK = dict(steps=45, every=15, batch_size=32, eval_samples=200, angle_batch=32)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: threads only add overhead
    yield
    torch.set_num_threads(threads)


def weight_angles(fig) -> dict:
    """{rule label: mean final weight angle over layers} from the figure's traces."""
    out: dict = {}
    for t in fig.data:
        if "W vs Bᵀ" in (t.hovertemplate or ""):
            out.setdefault(t.hovertemplate.split(" · ")[0], []).append(t.y[-1])
    return {k: sum(v) / len(v) for k, v in out.items()}


# ------------------------------------------------------------------- notebook 05

def test_small_images_keeps_labels_and_brightness(mini):
    small = WR.small_images(mini, 8)
    assert small.input_shape == (3, 8, 8)
    assert torch.equal(small.train.y, mini.train.y)
    assert small.train.x.dtype == torch.uint8
    assert abs(small.train.x.float().mean() - mini.train.x.float().mean()) < 1.0
    with pytest.raises(ValueError, match="divide"):
        WR.small_images(mini, 5)


def test_train_rule_logs_from_step_zero_and_repeats_exactly():
    settings = {**WR.SETTINGS["quick"], **QUICK, "steps": 20, "every": 10}
    runs = [list(WR.train_rule("feedback_alignment", **settings)) for _ in range(2)]
    first = runs[0]
    assert [r["steps"][-1] for r in first] == [0, 10, 20]
    assert [r["progress"] for r in first] == [0.0, 0.5, 1.0]
    final = first[-1]
    assert final["train_loss"][0] is None and final["train_loss"][1] > 0
    assert set(final["alignment"]) == set(final["gradient"])
    assert len(final["alignment"]) == 5  # 4 convs and the classifier
    start = V.mean_angle(final["alignment"], 0)
    assert 80 < start < 100  # a random B is unrelated to W
    assert runs[1][-1]["test_acc"] == final["test_acc"]
    assert runs[1][-1]["alignment"] == final["alignment"]


def test_switching_the_rule_from_fa_to_sa_lowers_the_angles():
    app = WR.feedback_alignment_app("quick", rule="feedback_alignment", compare=(), **QUICK)
    assert app.error is None, app.messages
    fa = weight_angles(app.figure)[label_for("feedback_alignment")]
    assert fa > 75
    assert "Feedback alignment" in app.figure.layout.title.text
    assert "quick-mode coefficients" in app.figure.layout.title.text
    app.controls["rule"].value = "symmetric_alignment"
    app.button.click()
    assert app.error is None, app.messages
    sa = weight_angles(app.figure)[label_for("symmetric_alignment")]
    assert sa < fa - 40
    assert "Symmetric alignment α=0.05, β=0.1" in app.figure.layout.title.text
    delta = [t.y[-1] for t in app.figure.data if "δ vs backprop" in (t.hovertemplate or "")]
    assert max(delta) < 60  # the error sent back now follows backprop's
    assert app.progress.value == 1.0
    assert "Symmetric alignment" in app.caption.value


def test_paper_coefficients_barely_move_b_in_a_short_demo():
    app = WR.feedback_alignment_app("quick", rule="symmetric_alignment", compare=(),
                                    auto_start=False, **QUICK)
    app.controls["coefficients"].value = "default"
    app.button.click()
    assert app.error is None, app.messages
    assert weight_angles(app.figure)[label_for("symmetric_alignment")] > 70
    assert "the paper's coefficients" in app.figure.layout.title.text


def test_compare_and_steps_controls():
    app = WR.feedback_alignment_app("quick", rule="backprop", compare=(), **QUICK)
    assert set(weight_angles(app.figure)) == {label_for("backprop")}
    assert weight_angles(app.figure)[label_for("backprop")] == pytest.approx(0, abs=1e-3)
    app.controls["compare"].value = ("backprop", "feedback_alignment")
    app.button.click()  # backprop appears once; feedback alignment is added
    assert set(weight_angles(app.figure)) == {label_for("backprop"),
                                              label_for("feedback_alignment")}
    app.controls["compare"].value = ()
    app.controls["steps"].value = 30
    app.button.click()
    steps = [t.x[-1] for t in app.figure.data if "W vs Bᵀ" in (t.hovertemplate or "")]
    assert set(steps) == {30}
    assert "30 SGD steps" in app.figure.layout.title.text


def test_finished_runs_are_cached():
    settings = {**WR.SETTINGS["quick"], **QUICK, "steps": 15}
    first = list(WR.compare_rules(["backprop"], **settings))[-1]["runs"][0]
    again = list(WR.compare_rules(["backprop"], **settings))
    assert len(again) == 1 and again[0]["runs"][0] is first


def test_a_compute_error_shows_and_the_app_keeps_working(monkeypatch):
    real = WR.train_rule

    def flaky(rule, **kw):
        if rule == "sign_symmetry":
            raise RuntimeError("sign symmetry is broken on purpose")
        return real(rule, **kw)

    monkeypatch.setattr(WR, "train_rule", flaky)
    app = WR.feedback_alignment_app("quick", rule="backprop", compare=(), **QUICK)
    before = list(app.figure.data[0].y)
    app.controls["rule"].value = "sign_symmetry"
    app.button.click()
    assert "sign symmetry is broken on purpose" in app.messages
    assert isinstance(app.error, RuntimeError)
    assert list(app.figure.data[0].y) == before  # the last good figure stays
    assert not app.button.disabled
    app.controls["rule"].value = "backprop"
    app.button.click()
    assert app.error is None and app.messages == ""


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="mode"):
        WR.feedback_alignment_app("medium")
    with pytest.raises(ValueError, match="unknown settings"):
        WR.feedback_alignment_app("quick", stepz=3, auto_start=False)
    with pytest.raises(ValueError, match="valid rules"):
        next(WR.compare_rules(["feedback_alignmnt"], **WR.SETTINGS["quick"]))


def test_load_rule_results(tmp_path):
    assert WR.load_rule_results(tmp_path) is None
    (tmp_path / "learning_rules.json").write_text("{ not json")
    assert WR.load_rule_results(tmp_path) is None
    record = {"experiment": "learning_rules", "variant": "quick",
              "runs": [{"config": {"rule": "backprop"}, "result": {"test_acc": 0.5}}]}
    (tmp_path / "learning_rules.quick.json").write_text(json.dumps(record))
    found = WR.load_rule_results(tmp_path)
    assert found["variant"] == "quick" and found["path"].endswith("learning_rules.quick.json")
    (tmp_path / "learning_rules.json").write_text(json.dumps({**record, "variant": "full"}))
    assert WR.load_rule_results(tmp_path)["variant"] == "full"  # full results first


def test_the_shipped_gpu_run_of_the_learning_rules():
    """data/results/learning_rules.short.json: every rule of nbkit.rules trained resnet20
    on CIFAR-10; the table and both angle series are there, and the run shows what the
    papers describe: Kolen-Pollack aligns and matches backprop, feedback alignment stays
    near 90° and learns far less, and every rule beats chance."""
    found = WR.load_rule_results()
    assert found is not None and found["variant"] in ("short", "full")
    assert found["provenance"]["runs_missing"] == 0
    assert found["provenance"]["devices"] and "cpu" not in found["provenance"]["devices"][0]
    final = V.final_by_rule(found)
    assert set(final) == set(nbkit.rules.names())
    assert all(f["test_acc"] > 0.3 for f in final.values())  # chance is 0.1
    bp, fa, kp = final["backprop"], final["feedback_alignment"], final["kolen_pollack"]
    assert bp["weight_angle"] == 0.0 and bp["delta_angle"] == 0.0
    assert fa["weight_angle"] > 75 and fa["test_acc"] < bp["test_acc"] - 0.2
    assert kp["weight_angle"] < 15 and kp["delta_angle"] < 15
    assert abs(kp["test_acc"] - bp["test_acc"]) < 0.05
    table = WR.full_routes_table(found).splitlines()
    assert len(table) == 1 + len(final) and "kolen_pollack  estimation" in "\n".join(table)


# ------------------------------------------------------------------- notebook 06

SMALL_GRID = dict(depths=(2, 4), sigmas=(0.0, 1.0), steps=80,
                  rules=("backprop", "information_alignment", "symmetric_alignment"))


@pytest.fixture(scope="module")
def grid():
    return WR.two_routes_grid("quick", progress=False, **SMALL_GRID)


def test_two_routes_grid_is_complete_and_cached(grid):
    assert grid["depths"] == [2, 4] and grid["sigmas"] == [0.0, 1.0]
    for r in SMALL_GRID["rules"]:
        assert all(math.isfinite(a) for row in grid["test_acc"][r] for a in row)
    assert grid["test_acc"]["backprop"][0][0] > 0.25  # well above chance
    assert WR.two_routes_grid("quick", progress=False, **SMALL_GRID) is grid
    with pytest.raises(ValueError, match="unknown settings"):
        WR.two_routes_grid("quick", depth=3)
    with pytest.raises(ValueError, match="valid rules"):
        WR.two_routes_grid("quick", rules=("backprop", "nope"))


def test_weight_estimation_aligns_b_and_local_ia_does_not(grid):
    sa, ia = grid["alignment"]["symmetric_alignment"], grid["alignment"]["information_alignment"]
    assert all(row[0] < 15 for row in sa)
    assert all(s[0] < i[0] - 20 for s, i in zip(sa, ia))
    assert all(row[0] == pytest.approx(0, abs=1e-3) for row in grid["alignment"]["backprop"])


def test_noise_slider_lowers_accuracy_and_raises_sa_angle(grid):
    app = WR.two_routes_app(grid, depth=2, sigma=0.0)
    assert app.error is None, app.messages

    def depth_curve(rule):
        return next(t for t in app.figure.data if t.type == "scatter" and t.showlegend
                    is not False and t.name == label_for(rule)).y

    def sa_bar():
        bar = next(t for t in app.figure.data if t.type == "bar")
        return dict(zip(bar.y, bar.x))["SA"]

    clean_bp, clean_angle = depth_curve("backprop"), sa_bar()
    app.controls["sigma"].value = 1.0
    assert "σ = 1" in app.figure.layout.annotations[0].text
    noisy_bp = depth_curve("backprop")
    assert all(n < c for n, c in zip(noisy_bp, clean_bp))  # noise hurts, at every depth
    assert sa_bar() > clean_angle  # noise knocks B off Wᵀ
    assert "σ = 1" in app.caption.value


def test_depth_slider_moves_the_noise_panel(grid):
    app = WR.two_routes_app(grid, depth=2, sigma=0.0)
    assert "depth 2" in app.figure.layout.annotations[1].text
    app.controls["depth"].value = 4
    assert "depth 4" in app.figure.layout.annotations[1].text
    ia = next(t for t in app.figure.data if t.type == "scatter" and t.showlegend is False
              and t.name == label_for("information_alignment"))
    assert list(ia.y) == pytest.approx([100 * a for a in
                                        grid["test_acc"]["information_alignment"][1]])
    assert "depth 4" in app.caption.value


def test_two_routes_app_shows_errors_and_recovers(grid):
    ia = grid["test_acc"]["information_alignment"]
    broken = {**grid, "test_acc": {**grid["test_acc"],
                                   "information_alignment": [ia[0], ia[1][:1]]}}
    app = WR.two_routes_app(broken, depth=2, sigma=0.0)
    assert app.error is None, app.messages
    app.controls["sigma"].value = 1.0  # depth 4 has no result at this noise
    assert "IndexError" in app.messages
    assert "σ = 0" in app.figure.layout.annotations[0].text  # the last good figure stays
    app.controls["sigma"].value = 0.0
    assert app.error is None and app.messages == ""


def test_full_mode_settings_train_resnet20_on_full_cifar10(full_cifar_dir, monkeypatch):
    """Notebook 05's full mode (resnet20 on all of CIFAR-10) runs end to end; only the
    number of steps and the evaluation sizes are cut for a CPU."""
    monkeypatch.setenv("NBKIT_DATA", str(full_cifar_dir))
    settings = {**WR.SETTINGS["full"], "steps": 4, "every": 2, "batch_size": 32,
                "eval_samples": 200, "angle_batch": 32}
    assert settings["model"] == "resnet20" and settings["data"] == "cifar10"
    *_, result = WR.compare_rules(["feedback_alignment"], **settings)
    (run,) = result["runs"]
    assert run["steps"] == [0, 2, 4]
    # resnet20: a stem conv, 18 convs in the blocks, and the classifier (shortcuts are
    # parameter-free in the CIFAR ResNets), each with a weight and a δ angle per log.
    assert len(run["alignment"]) >= 20 and set(run["gradient"]) == set(run["alignment"])
    assert all(len(v) == 3 and all(math.isfinite(a) for a in v)
               for v in run["alignment"].values())
    assert all(math.isfinite(x) for x in run["train_loss"][1:])
