"""The quick-mode benchmark moves every control of every redrawing app through its
settings; on notebook 02 (its apps are fast) every setting must redraw without an error,
each control is visited, and every update reports its own time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("quick_mode", REPO / "benchmarks" /
                                                  "quick_mode.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_control_of_notebook_02_redraws_without_error(monkeypatch):
    monkeypatch.setenv("NBKIT_MODE", "quick")
    bench = _benchmark()
    report = bench.time_widgets(bench.notebook_paths(["02"]), limit=None)
    assert len(report) == 2  # the conservation app and Fig. 4
    for title, records in report.items():
        assert records, title
        assert not [r for r in records if r["error"]], title
        assert all(r["seconds"] > 0 for r in records)
    controls = {r["control"] for records in report.values() for r in records}
    assert {"objective", "arch", "activation", "bias", "residual", "batchnorm",
            "model"} <= controls
    # the objective control went through every objective
    conservation = next(rs for t, rs in report.items() if "conv" in t)
    objectives = {r["value"] for r in conservation if r["control"] == "objective"}
    assert len(objectives) >= 3


def test_control_moves_cover_the_options_and_come_back():
    import ipywidgets as W

    bench = _benchmark()
    drop = W.Dropdown(options=[("a", 1), ("b", 2), ("c", 3)], value=2)
    moves = bench.control_moves(drop, None)
    assert [m[0] for m in moves] == ["a", "c", "b"]  # the starting option last
    slider = W.FloatSlider(min=0.0, max=4.0, value=1.0)
    values = [m[1]["value"] for m in bench.control_moves(slider, None)]
    assert values == [0.0, 2.0, 3.0, 4.0, 1.0]
    assert len(bench.control_moves(slider, 2)) == 3
    box = W.Checkbox(value=False)
    assert [m[1]["value"] for m in bench.control_moves(box, None)] == [True, False]


def test_busy_cores_spin_for_the_block_and_stop_after_it():
    import multiprocessing

    bench = _benchmark()
    before = set(multiprocessing.active_children())
    with bench.busy_cores(1):
        spinning = [p for p in multiprocessing.active_children() if p not in before]
        assert len(spinning) == 1 and spinning[0].is_alive()
    assert not spinning[0].is_alive()
