"""Every notebook, opened in JupyterLab in a real browser and run top to bottom in quick
mode: no error outputs, every expected plotly figure drawn with data, a screenshot of the
whole notebook in build/screenshots/. Notebooks 01 and 05 are then driven with the
keyboard and mouse, and their figures must change the way the science says."""

from __future__ import annotations

import pytest
from notebook_page import notebook_names

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("name", notebook_names())
def test_notebook_runs_and_draws(name, runs, screenshots):
    nb = runs.run(name)
    cells = nb.cells()
    shot = nb.screenshot(screenshots / f"{name}.png")

    problems = []
    for c in cells:
        for err in c.errors():
            problems.append(f"{c.label(name)} shows an error:\n      "
                            + err[-1500:].replace("\n", "\n      "))
    not_run = [c for c in cells if c.code and c.source.strip() and not c.executed()]
    if not_run:
        problems.append("cells that did not run: " + "; ".join(c.label(name) for c in not_run))
    for index, n in sorted(nb.expected.items()):
        if index >= len(cells):
            problems.append(f"{name}, cell {index}: expected {n} figure(s), but the notebook on "
                            f"screen has only {len(cells)} cells")
            continue
        c = cells[index]
        good = c.good_plots()
        if len(good) < n:
            problems.append(f"{c.label(name)}: expected {n} plotly figure(s) drawn with trace "
                            f"data, found {len(good)} (on screen: {c.plots or 'no figure'})")
        for p in good:
            if not p["title"].strip():
                problems.append(f"{c.label(name)}: a figure has no title")
    if not nb.expected:
        problems.append(f"{name}: the committed notebook shows no plotly figure (run it and "
                        "save its outputs, or declare metadata nbkit.browser_figures)")
    assert not problems, (f"{name} in JupyterLab ({nb.run_s:.0f} s to run all cells):\n  "
                          + "\n  ".join(problems) + f"\nscreenshot: {shot}")
