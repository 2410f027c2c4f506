"""Drive one notebook in JupyterLab the way a person does, and read back what they see.

``NotebookPage`` opens a notebook, clears it, runs every cell from the Run menu, waits for
the kernel, and reports per cell what is on screen: the prompt, the outputs (errors
included) and each rendered plotly figure with its traces. ``expected_figures`` reads
the committed ``.ipynb`` to learn which cells draw a figure.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The notebooks under test; another folder can be named to try the harness on other copies.
NOTEBOOKS = Path(os.environ.get("NBKIT_BROWSER_NOTEBOOKS", REPO / "notebooks")).resolve()
RUN_TIMEOUT_S = float(os.environ.get("NBKIT_BROWSER_TIMEOUT", "300"))
RENDER_TIMEOUT_S = 60.0
MAX_SCREENSHOT_PX = 16000

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STDERR_MIME = "application/vnd.jupyter.stderr"
APP_TEXT = "[nbkit app:"  # how an App's output starts in text (App.placeholder_text)
# A Python error as JupyterLab shows it (a traceback, or "ValueError: ..." as an App
# prints it in its output area), and a widget that failed to display.
ERROR_TEXT = re.compile(r"Traceback|^\s*[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b",
                        re.MULTILINE)
# A warning printed under a cell (a reader sees it in red; it often means lost data, such
# as a figure with inf that could not be sent to the browser).
WARNING_TEXT = re.compile(r"\b[A-Z]\w*Warning:")
WIDGET_FAILURE = re.compile(r"Error displaying widget|Failed to (load|create) (model|view)"
                            r"|model not found")

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

# Plain JSON out of plotly's trace objects (typed arrays and nested arrays included).
JS_HELPERS = r"""
const plain = (v, depth = 0) => {
  if (v == null || depth > 4) return v;
  if (ArrayBuffer.isView(v)) return Array.from(v);
  if (Array.isArray(v)) return v.map(x => plain(x, depth + 1));
  if (typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v)) if (!k.startsWith('_')) o[k] = plain(v[k], depth + 1);
    return o;
  }
  return v;
};
const nPoints = tr => {
  let n = 0;
  for (const k of ['x', 'y', 'z', 'values', 'r', 'theta', 'labels', 'lat', 'lon', 'a', 'b',
                   'source']) {
    const v = tr[k];
    if (v == null) continue;
    if (typeof v === 'string') n = Math.max(n, 1);
    else if (Array.isArray(v) || ArrayBuffer.isView(v)) n = Math.max(n, v.length);
    else if (typeof v === 'object' && (v.bdata || v.dtype)) n = Math.max(n, 1);
  }
  return n;
};
const describePlot = el => {
  const r = el.getBoundingClientRect();
  const data = Array.isArray(el.data) ? el.data : [];
  const title = (el.layout && el.layout.title && (el.layout.title.text ?? el.layout.title))
    || '';
  const full = el._fullLayout || {};
  return {traces: data.length, points: data.map(nPoints), width: r.width, height: r.height,
          drawn: !!el.querySelector('svg.main-svg'), drawnWidth: full.width || 0,
          fixedWidth: (el.layout && el.layout.width) || 0,
          title: typeof title === 'string' ? title : ''};
};
"""

TRACES_JS = r"""
const keys = ['type', 'name', 'legendgroup', 'xaxis', 'yaxis', 'x', 'y', 'customdata', 'text',
              'hovertemplate'];
return (el.data || []).map((tr, i) => {
  const full = (el._fullData || []).find(f => f.index === i) || {};
  const out = {};
  for (const k of keys) {
    const v = full[k] !== undefined ? full[k] : tr[k];
    if (v !== undefined) out[k] = plain(v);
  }
  return out;
});
"""

CELLS_JS = JS_HELPERS + r"""
(panel) => {
  const root = document.querySelector(panel);
  if (!root) return [];
  return [...root.querySelectorAll('.jp-Notebook .jp-Cell')].map((cell, index) => {
    const code = cell.classList.contains('jp-CodeCell');
    const prompt = code ? (cell.querySelector('.jp-InputArea-prompt')?.textContent || '')
      .trim() : '';
    const lines = [...cell.querySelectorAll('.jp-InputArea-editor .cm-line')]
      .map(l => l.textContent);
    const outputs = [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => ({
      mime: o.dataset.mimeType || '',
      text: (o.innerText || o.textContent || '').slice(0, 4000),
      inWidget: !!o.parentElement?.closest('.jupyter-widgets, .widget-output'),
    }));
    const plots = [...cell.querySelectorAll('.jp-Cell-outputWrapper .js-plotly-plot')]
      .map(describePlot);
    return {index, code, prompt, source: lines.join('\n'), outputs, plots};
  });
}
"""

DONE_JS = r"""
(panel) => {
  const root = document.querySelector(panel);
  if (!root) return false;
  const prompts = [...root.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
    .map(e => e.textContent.trim());
  return prompts.length > 0 && !prompts.some(t => t.includes('*'))
    && prompts.some(t => /^\[\d+\]:$/.test(t));
}
"""


def notebook_names() -> list[str]:
    """The notebooks of the suite, in order (``00_welcome``, ``01_...``)."""
    return sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def expected_figures(nb_path: Path) -> dict[int, int]:
    """Cell index -> how many plotly figures the committed notebook shows in that cell.

    A notebook may declare ``{"nbkit": {"browser_figures": {"<cell index>": n}}}`` in its
    metadata; otherwise the saved outputs are counted: each static plotly figure, each
    ``FigureWidget``, and each displayed ``App`` (a ``VBox`` holding one figure)."""
    nb = json.loads(nb_path.read_text())
    declared = nb.get("metadata", {}).get("nbkit", {}).get("browser_figures")
    if declared is not None:
        return {int(k): int(v) for k, v in declared.items() if int(v) > 0}
    counts = {}
    for i, cell in enumerate(nb["cells"]):
        n = 0
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PLOTLY_MIME in data:
                n += 1
            elif WIDGET_MIME in data:
                text = data.get("text/plain", "")
                text = "".join(text) if isinstance(text, list) else text
                # an nbkit App says so in its text (a VBox around one FigureWidget)
                n += max(text.count("FigureWidget("), int(text.startswith(APP_TEXT)))
        if n:
            counts[i] = n
    return counts


def _first_line(source: str, width: int = 90) -> str:
    lines = [ln for ln in source.splitlines() if ln.strip() and not ln.startswith("#")]
    line = (lines or [source.strip() or "(empty)"])[0].strip()
    return line if len(line) <= width else line[:width - 3] + "..."


@dataclass
class Cell:
    """What one cell shows on screen."""
    index: int
    code: bool
    prompt: str
    source: str
    outputs: list = field(default_factory=list)
    plots: list = field(default_factory=list)

    def label(self, notebook: str) -> str:
        p = self.prompt.replace(":", "").strip() or "[ ]"
        return f"{notebook}, cell {self.index} (In {p}) `{_first_line(self.source)}`"

    def errors(self) -> list[str]:
        found = []
        for o in self.outputs:
            text = o["text"].strip()
            if o["mime"] == STDERR_MIME and ERROR_TEXT.search(text):
                found.append(text)
            elif WIDGET_FAILURE.search(text):
                found.append(text)
        return found

    def warnings(self) -> list[str]:
        return [o["text"].strip() for o in self.outputs
                if o["mime"] == STDERR_MIME and WARNING_TEXT.search(o["text"])
                and not ERROR_TEXT.search(o["text"])]

    def executed(self) -> bool:
        return bool(re.fullmatch(r"\[\d+\]:?", self.prompt))

    def good_plots(self) -> list[dict]:
        return [p for p in self.plots
                if p["traces"] > 0 and max(p["points"], default=0) > 0 and p["drawn"]
                and p["width"] > 0 and p["height"] > 0]


class NotebookPage:
    """One notebook open in a JupyterLab tab of ``page``."""

    def __init__(self, page, lab, name: str, path: Path):
        self.page, self.lab, self.name, self.path = page, lab, name, path
        self.expected = expected_figures(path)
        self.reusable = False
        self.browser_errors: list[str] = []
        self.run_s = 0.0
        self._on_error = lambda e: self.browser_errors.append(f"page error: {e}")
        page.on("pageerror", self._on_error)

    def close(self):
        """Stop listening to the page (the next notebook opens in the same tab)."""
        self.reusable = False
        self.page.remove_listener("pageerror", self._on_error)

    # ------------------------------------------------------------------ driving
    def open(self):
        """Load JupyterLab on this notebook with a fresh workspace, and wait until its
        kernel is connected and idle."""
        page = self.page
        page.goto(f"{self.lab.url}/lab/tree/{self.path.name}?reset")
        page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", timeout=90_000)
        self._wait_kernel(lambda k: k["connections"] > 0, 120, "connect to the page")
        # hide the file browser, so the notebook takes the width of the window
        if page.locator(".jp-FileBrowser:visible").count():
            page.keyboard.press("Control+b")
        return self

    def _wait_kernel(self, ok, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        kernels = []
        while time.monotonic() < deadline:
            kernels = self.lab.kernels()
            if kernels and all(k["execution_state"] == "idle" and ok(k) for k in kernels):
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: the kernel did not {what} and go idle within "
                             f"{timeout_s:.0f} s (kernels: {kernels})\nserver log:\n"
                             f"{self.lab.log_tail()}")

    def menu(self, menu: str, command: str):
        """Click ``menu`` in the menu bar, then the item that runs ``command``."""
        self.page.get_by_role("menuitem", name=menu, exact=True).click()
        self.page.click(f".lm-Menu li[data-command='{command}']")

    def run_all(self, timeout_s: float = RUN_TIMEOUT_S):
        """Clear every output, run all cells from the Run menu, and wait until no cell is
        queued or running and the kernel is idle, then for the expected figures."""
        t0 = time.monotonic()
        self.menu("Edit", "editmenu:clear-all")
        self.menu("Run", "runmenu:run-all")
        deadline = t0 + timeout_s
        stable = 0
        while stable < 2:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: cells still running after {timeout_s:.0f} s:\n"
                    + self.summary(errors_only=False))
            done = self.page.evaluate(DONE_JS, PANEL)
            idle = done and all(k["execution_state"] == "idle" for k in self.lab.kernels())
            stable = stable + 1 if idle else 0
            time.sleep(0.25)
        self.run_s = time.monotonic() - t0
        self.reusable = True
        self.wait_for_figures()
        return self

    def wait_for_figures(self, timeout_s: float = RENDER_TIMEOUT_S):
        """Scroll each expected figure into view until it has drawn its traces."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            cells = self.cells()
            missing = [c for c in cells if c.executed()
                       and len(c.good_plots()) < self.expected.get(c.index, 0)]
            if not missing:
                return
            for c in missing:
                self.page.locator(f"{PANEL} .jp-Notebook .jp-Cell").nth(c.index) \
                    .scroll_into_view_if_needed()
            time.sleep(0.5)

    # ------------------------------------------------------------------ reading
    def cells(self) -> list[Cell]:
        return [Cell(**c) for c in self.page.evaluate(CELLS_JS, PANEL)]

    def summary(self, errors_only: bool = True) -> str:
        lines = []
        for c in self.cells():
            if not c.code:
                continue
            errs = c.errors()
            if errs or not errors_only:
                lines.append(f"  {c.label(self.name)}: {len(c.plots)} figure(s)"
                             + "".join(f"\n      {e[-1500:]}".replace("\n", "\n      ")
                                       for e in errs))
        if self.browser_errors:
            lines.append("  in the browser: " + "; ".join(self.browser_errors[-5:]))
        return "\n".join(lines) or "  (none)"

    def cell_locator(self, index: int):
        return self.page.locator(f"{PANEL} .jp-Notebook .jp-Cell").nth(index)

    def find_cell(self, needle: str) -> int:
        """The index of the first code cell whose source contains ``needle``."""
        for c in self.cells():
            if c.code and needle in c.source:
                return c.index
        raise AssertionError(f"{self.name}: no code cell contains {needle!r}")

    def figure_data(self, index: int, nth: int = 0) -> list[dict]:
        """The traces of the ``nth`` figure in cell ``index`` as plotly.js drew them (arrays
        sent in binary form decoded): type, name, legendgroup, axes, x, y, customdata,
        text and hovertemplate."""
        return self.cell_locator(index).locator(".jp-Cell-outputWrapper .js-plotly-plot") \
            .nth(nth).evaluate("(el) => {" + JS_HELPERS + TRACES_JS + "}")

    def figure_layout(self, index: int, nth: int = 0) -> dict:
        return self.cell_locator(index).locator(".jp-Cell-outputWrapper .js-plotly-plot") \
            .nth(nth).evaluate("(el) => {" + JS_HELPERS + "return plain(el.layout || {}); }")

    def problems(self, figures: bool = True) -> list[str]:
        """Everything wrong on screen, one readable line (or block) each: error and warning
        outputs, cells that did not run, and (with ``figures``) expected figures that are
        missing, empty, untitled or not sized to their cell."""
        cells, name, found = self.cells(), self.name, []
        for c in cells:
            for err in c.errors():
                found.append(f"{c.label(name)} shows an error:\n      "
                             + err[-1500:].replace("\n", "\n      "))
            for warning in c.warnings():
                found.append(f"{c.label(name)} shows a warning:\n      "
                             + warning[-800:].replace("\n", "\n      "))
        not_run = [c for c in cells if c.code and c.source.strip() and not c.executed()]
        if not_run:
            found.append("cells that did not run: " + "; ".join(c.label(name) for c in not_run))
        for index, n in sorted(self.expected.items() if figures else ()):
            if index >= len(cells):
                found.append(f"{name}, cell {index}: expected {n} figure(s), but the notebook "
                             f"on screen has only {len(cells)} cells")
                continue
            c = cells[index]
            good = c.good_plots()
            if len(good) < n:
                found.append(f"{c.label(name)}: expected {n} plotly figure(s) drawn with trace "
                             f"data, found {len(good)} (on screen: {c.plots or 'no figure'})")
            for p in good:
                if not p["title"].strip():
                    found.append(f"{c.label(name)}: a figure has no title")
                if not p["fixedWidth"] and p["drawnWidth"] < 0.9 * p["width"]:
                    found.append(f"{c.label(name)}: a figure is drawn {p['drawnWidth']:.0f} px "
                                 f"wide in a {p['width']:.0f} px output (it did not size "
                                 "itself to the notebook; squeezed labels overlap)")
        if figures and not self.expected:
            found.append(f"{name}: the committed notebook shows no plotly figure (run it and "
                         "save its outputs, or declare metadata nbkit.browser_figures)")
        if found and self.browser_errors:
            found.append("errors in the browser: " + "; ".join(self.browser_errors[-5:]))
        return found

    # ------------------------------------------------------------------ interacting
    def control(self, index: int, selector: str, nth: int = 0):
        """The ``nth`` element matching ``selector`` in the outputs of cell ``index``."""
        return self.cell_locator(index).locator(f".jp-Cell-outputWrapper {selector}").nth(nth)

    def settle(self, index: int, nth: int = 0, timeout_s: float = 60.0) -> list[dict]:
        """Wait until the kernel is idle and the figure has stopped changing; its traces."""
        deadline = time.monotonic() + timeout_s
        last, stable = None, 0
        while time.monotonic() < deadline:
            time.sleep(0.3)
            idle = all(k["execution_state"] == "idle" for k in self.lab.kernels())
            now = self.figure_data(index, nth)
            stable = stable + 1 if (idle and now == last) else 0
            if stable >= 2:
                return now
            last = now
        raise AssertionError(f"{self.name}, cell {index}: the figure kept changing or the "
                             f"kernel stayed busy for {timeout_s:.0f} s")

    # ------------------------------------------------------------------ artifacts
    def screenshot(self, path: Path):
        """The whole notebook in one image: the window is made as tall as the notebook,
        so every figure is in view and drawn, then restored."""
        page = self.page
        size = dict(page.viewport_size)
        scroller = page.locator(f"{PANEL} .jp-WindowedPanel-outer").first
        full = scroller.evaluate("""e => { e.scrollTop = 0;
            const cells = e.querySelectorAll('.jp-Cell');
            const last = cells.length ? cells[cells.length - 1] : e;
            return last.getBoundingClientRect().bottom + 60; }""")
        try:
            page.set_viewport_size({"width": size["width"],
                                    "height": int(min(MAX_SCREENSHOT_PX, max(full, 400)))})
            page.wait_for_timeout(1500)  # plotly re-lays out on resize
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)
        finally:
            page.set_viewport_size(size)
        return path
