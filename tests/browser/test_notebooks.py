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
    shot = nb.screenshot(screenshots / f"{name}.png")

    problems = nb.problems()
    assert not problems, (f"{name} in JupyterLab ({nb.run_s:.0f} s to run all cells):\n  "
                          + "\n  ".join(problems) + f"\nscreenshot: {shot}")
