"""A notebook opened without running it, as a reader first sees it (and as GitHub and
nbviewer show it): every app and every plotly figure is an image, never the text of a
widget box, and the file stays small."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from notebook_page import (
    APP_TEXT,
    NOTEBOOKS,
    PANEL,
    PLOTLY_MIME,
    WIDGET_MIME,
    notebook_names,
)

pytestmark = pytest.mark.browser


def _figure_outputs(path) -> tuple[int, int]:
    """(apps, plotly figures) among the committed outputs."""
    apps = figures = 0
    for cell in json.loads(path.read_text())["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            apps += WIDGET_MIME in data and "".join(data.get("text/plain", "")).startswith(
                APP_TEXT)
            figures += PLOTLY_MIME in data
    return apps, figures


def _end_session(lab, path: str) -> None:
    """Shut down the kernel this page started, and only it: the interaction test that
    follows a notebook's run still uses that run's kernel."""
    for session in lab.api("GET", "/api/sessions"):
        if session.get("path", "").endswith(path):
            lab.api("DELETE", f"/api/sessions/{session['id']}", timeout=30)


@pytest.mark.parametrize("name", notebook_names())
def test_a_notebook_opened_without_running_shows_images(name, jupyterlab, browser):
    path = NOTEBOOKS / f"{name}.ipynb"
    assert path.stat().st_size < 1_000_000, f"{name}.ipynb is {path.stat().st_size:,} bytes"
    apps, figures = _figure_outputs(path)
    copy = f"unrun-{name}.ipynb"  # a copy no other test runs or saves
    shutil.copy2(path, jupyterlab.root / copy)
    page = browser.new_page()
    try:
        page.goto(f"{jupyterlab.url}/lab/workspaces/unrun/tree/{copy}?reset")
        page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", timeout=90_000)
        images = page.locator(f"{PANEL} .jp-OutputArea-output img")
        deadline = time.monotonic() + 30
        while images.count() < apps + figures and time.monotonic() < deadline:
            time.sleep(0.25)
        loaded = images.evaluate_all("els => els.filter(e => e.naturalWidth > 300).length")
        text = page.locator(PANEL).inner_text()
    finally:
        page.close()
        _end_session(jupyterlab, copy)
    assert "VBox(" not in text and "FloatSlider(" not in text
    assert apps >= 1 or name == "00_welcome", f"{name}: no app output was saved"
    assert loaded >= apps + figures, (f"{name}: {loaded} images drawn for {apps} apps and "
                                      f"{figures} plotly figures")
