"""Every notebook, opened in JupyterLab in a real browser and run top to bottom in quick
mode: no error outputs, every expected plotly figure drawn with data, a screenshot of the
whole notebook in build/screenshots/. Notebooks 01 and 05 are then driven with the
keyboard and mouse, and their figures must change the way the science says."""

from __future__ import annotations

import pytest
from notebook_page import RUN_TIMEOUT_S, notebook_names

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("name", notebook_names())
def test_notebook_runs_and_draws(name, runs, screenshots):
    nb = runs.run(name)
    shot = nb.screenshot(screenshots / f"{name}.png")

    problems = nb.problems()
    if problems:
        pytest.fail(f"{name} in JupyterLab ({nb.run_s:.0f} s to run all cells):\n  "
                    + "\n  ".join(problems) + f"\nscreenshot: {shot}", pytrace=False)


def _largest_layer_density(traces) -> float:
    """The density the bar panel of Fig. 1 shows for the largest layer (its bars carry
    [density, kept, size] per layer as customdata)."""
    bars = [t for t in traces if t.get("type") == "bar" and t.get("customdata")]
    assert bars, f"no per-layer density bars in the figure: {[t.get('type') for t in traces]}"
    rows = bars[0]["customdata"]
    largest = max(range(len(rows)), key=lambda j: rows[j][2])
    return float(rows[largest][0])


@pytest.mark.notebook("01_layer_collapse")
def test_layer_collapse_slider_lowers_the_largest_layer(runs, screenshots):
    nb = runs.run("01_layer_collapse")
    cell = nb.find_cell("layer_collapse_app(")
    slider = nb.control(cell, ".widget-slider .noUi-handle")  # the compression slider
    readout = nb.control(cell, ".widget-slider .widget-readout")

    slider.focus()
    seen = []
    for keys in (["Home"], ["ArrowRight"] * 4, ["End"]):  # log10 ρ = 0, then 1, then the top
        for key in keys:
            slider.press(key)
        seen.append((readout.inner_text().strip(), _largest_layer_density(nb.settle(cell))))
    nb.screenshot(screenshots / "01_layer_collapse.after-slider.png")

    wrong = nb.problems(figures=False)  # errors shown after the interaction
    if [r for r, _ in seen] != ["0.00", "1.00", "6.00"]:
        wrong.append(f"the slider readouts were {[r for r, _ in seen]}, not 0.00, 1.00, 6.00")
    (_, d0), (_, d1), (_, d2) = seen
    if d0 != 1.0:
        wrong.append(f"at ρ = 1 nothing is pruned, but the largest layer shows density {d0}")
    if not (d1 < d0 and d2 <= d1):
        wrong.append("raising the compression must lower the largest layer's density, but it "
                     "went " + ", ".join(f"{d:.4g} at log10 ρ = {r}" for r, d in seen))
    if wrong:
        pytest.fail("01_layer_collapse, compression slider moved with Home, ArrowRight x4, End:"
                    "\n  " + "\n  ".join(wrong), pytrace=False)


def _weight_angles(traces, rule: str) -> list[float]:
    """Last weight-alignment angle (W against Bᵀ) of each layer for ``rule``."""
    return [float(t["y"][-1]) for t in traces
            if t.get("legendgroup") == rule and "W vs B" in t.get("hovertemplate", "")
            and t.get("y")]


@pytest.mark.notebook("05_feedback_alignment")
def test_feedback_alignment_rule_dropdown_changes_the_angles(runs, screenshots):
    nb = runs.run("05_feedback_alignment")
    cell = nb.find_cell("feedback_alignment_app(")
    before = nb.settle(cell)
    fa = _weight_angles(before, "feedback_alignment")
    assert fa, "no weight-angle traces of feedback alignment before switching the rule"

    rule = nb.control(cell, ".widget-dropdown select")  # the rule dropdown
    rule.focus()
    rule.press("End")  # the last rule of the list: symmetric alignment
    chosen = rule.evaluate("s => s.options[s.selectedIndex].text").replace("\xa0", " ")
    assert chosen == "Symmetric alignment", f"End on the rule dropdown chose {chosen!r}"
    nb.control(cell, "button.widget-button:has-text('Train')").click()
    after = nb.settle(cell, timeout_s=RUN_TIMEOUT_S)
    nb.screenshot(screenshots / "05_feedback_alignment.after-rule.png")

    sa = _weight_angles(after, "symmetric_alignment")
    wrong = nb.problems(figures=False)  # errors shown after the interaction
    if not sa:
        wrong.append("no weight-angle traces of symmetric alignment after switching the rule")
    elif not sum(sa) / len(sa) < sum(fa) / len(fa):
        wrong.append("symmetric alignment must end with lower weight angles than feedback "
                     f"alignment: SA {[round(a, 1) for a in sa]} vs FA "
                     f"{[round(a, 1) for a in fa]} degrees")
    if _weight_angles(after, "feedback_alignment"):
        wrong.append("feedback alignment is still drawn after switching the rule to symmetric "
                     "alignment")
    if wrong:
        pytest.fail("05_feedback_alignment, rule switched from feedback alignment to symmetric "
                    "alignment (End, then Train):\n  " + "\n  ".join(wrong), pytrace=False)


@pytest.mark.notebook("04_train_pruned_networks")
def test_04_run_all_three_times_every_figure_is_drawn_and_follows_its_control(runs, screenshots):
    """Run All of notebook 04, three times, each in a fresh kernel (a figure once came up
    blank on a first Run All): every figure has data and a title each time, and the
    full-scale figure follows its dropdown."""
    wrong = []
    for attempt in range(1, 4):
        if runs.last is not None:
            runs.last.reusable = False  # a fresh kernel and a fresh run
        nb = runs.run("04_train_pruned_networks")
        found = [f"run {attempt}: {p}" for p in nb.problems()]
        for cell, count in nb.expected.items():
            for nth in range(count):
                title = (nb.figure_layout(cell, nth).get("title") or {}).get("text")
                if not title:
                    found.append(f"run {attempt}, cell {cell}: figure {nth} has no title")
        cell = nb.find_cell("full_scale_app(")
        before = nb.figure_layout(cell)["title"]["text"]
        key = nb.control(cell, ".widget-dropdown select")  # the paper run shown
        key.focus()
        key.press("End")
        nb.settle(cell)
        if nb.figure_layout(cell)["title"]["text"] == before:
            found.append(f"run {attempt}: the full-scale figure did not follow its dropdown "
                         f"(title still {before!r})")
        if found:
            nb.screenshot(screenshots / f"04_train_pruned_networks.run{attempt}.png")
        wrong += found
    if wrong:
        pytest.fail("04_train_pruned_networks, Run All three times:\n  " + "\n  ".join(wrong),
                    pytrace=False)
