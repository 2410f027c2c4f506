"""Projector-ready: at 1280×800, the size of a lecture-hall projector, each app's controls
and its whole figure fit the notebook's visible area at once, and no text in an app is
smaller than 12 px. A screenshot of each app at that size goes to build/screenshots/fit/."""

from __future__ import annotations

import pytest
from notebook_page import PANEL, notebook_names

pytestmark = pytest.mark.browser

PROJECTOR = {"width": 1280, "height": 800}
MIN_TEXT_PX = 12.0

# Each app's box, the notebook's visible area, and the smallest text inside the app (the
# figure's SVG text, and the labels and readouts of its controls), with an example of it.
MEASURE_JS = r"""
([panel, minPx]) => {
  const root = document.querySelector(panel);
  const view = root.querySelector('.jp-WindowedPanel-outer');
  const v = view.getBoundingClientRect();
  return [...root.querySelectorAll('.nbkit-app')].map((app, k) => {
    app.scrollIntoView({block: 'start'});
    view.scrollTop -= 8;  // a little air above the app, as a person scrolls
    const a = app.getBoundingClientRect();
    const small = [];
    const texts = app.querySelectorAll(
      'svg text, .widget-label, .widget-readout, label, select, option, button, .widget-html');
    for (const t of texts) {
      const r = t.getBoundingClientRect();
      const content = (t.textContent || '').trim();
      if (!content || r.width === 0 || r.height === 0) continue;
      const size = parseFloat(getComputedStyle(t).fontSize);
      if (size < minPx) small.push(`${size}px "${content.slice(0, 40)}"`);
    }
    const cell = app.closest('.jp-Cell');
    const cells = [...root.querySelectorAll('.jp-Notebook .jp-Cell')];
    return {k, cell: cells.indexOf(cell), top: a.top - v.top, bottom: a.bottom - v.top,
            height: a.height, width: a.width, left: a.left - v.left, right: a.right - v.left,
            viewHeight: v.height, viewWidth: v.width, small: [...new Set(small)].slice(0, 8)};
  });
}
"""


@pytest.mark.parametrize("name", notebook_names())
def test_every_app_fits_a_projector(name, runs, screenshots):
    nb = runs.run(name)
    page = nb.page
    size = dict(page.viewport_size)
    wrong, shots = [], []
    try:
        page.set_viewport_size(PROJECTOR)
        page.wait_for_timeout(1500)  # plotly and the lab re-lay out on resize
        apps = page.evaluate(MEASURE_JS, [PANEL, MIN_TEXT_PX])
        for app in apps:
            page.evaluate("""([panel, k]) => {
                const root = document.querySelector(panel);
                const view = root.querySelector('.jp-WindowedPanel-outer');
                root.querySelectorAll('.nbkit-app')[k].scrollIntoView({block: 'start'});
                view.scrollTop -= 8; }""", [PANEL, app["k"]])
            page.wait_for_timeout(400)
            shot = screenshots / "fit" / f"{name}.app{app['k']}.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot))
            shots.append(shot)
            where = f"{name}, cell {app['cell']} (app {app['k']})"
            if app["height"] > app["viewHeight"] - 8:
                wrong.append(f"{where} is {app['height']:.0f} px tall, but the notebook shows "
                             f"{app['viewHeight']:.0f} px at 1280×800 (screenshot: {shot})")
            if app["right"] > app["viewWidth"] or app["left"] < 0:
                wrong.append(f"{where} spans {app['left']:.0f}–{app['right']:.0f} px, wider "
                             f"than the {app['viewWidth']:.0f} px notebook at 1280×800")
            if app["small"]:
                wrong.append(f"{where} has text under {MIN_TEXT_PX:g} px: "
                             + "; ".join(app["small"]))
        if not apps and any(nb.expected.values()) and "app(" in "".join(
                c.source for c in nb.cells()):
            wrong.append(f"{name}: no app found on screen")
    finally:
        page.set_viewport_size(size)
    if wrong:
        pytest.fail(f"{name} at 1280×800:\n  " + "\n  ".join(wrong), pytrace=False)
