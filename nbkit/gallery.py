"""Execute every notebook headless and write a static HTML gallery that renders offline,
or refresh the notebooks themselves with static snapshots of their figures.

    python -m nbkit.gallery --out build/gallery [--figures docs/figures] [--mode quick]
    python -m nbkit.gallery --refresh [names]    # re-execute notebooks/ in place

Each notebook runs in a fresh kernel with ``NBKIT_STATIC=1``, so every widget app shows
its figure as static plotly HTML; pages load one local copy of plotly.js, so the
gallery needs no network. With ``--figures`` the main (first) figure of each notebook
is also written as a PNG (kaleido, which drives a local Chromium).

``--refresh`` executes each notebook in quick mode and saves it in place, widget state
not stored (it would add megabytes), with a PNG beside every widget app and every plotly
figure, so that a notebook opened without running it (in JupyterLab, on GitHub, in
nbviewer) shows its figures instead of the text of a widget. This is how the committed
notebooks are made.
"""

from __future__ import annotations

import argparse
import html
import os
import shutil
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

_EXPORT_CELL = """\
from pathlib import Path as _P
from nbkit.widgets.app import App as _App
_figs = [a.static_figure() for a in _App.instances] or [o for o in list(globals().values())
         if type(o).__name__ in ("Figure", "FigureWidget")]
if _figs:
    _P({out!r}).parent.mkdir(parents=True, exist_ok=True)
    _figs[0].write_image({out!r}, width=_figs[0].layout.width or 1100,
                         height=_figs[0].layout.height or 600, scale=1)
"""


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _add_static_html(nb) -> None:
    """Give every plotly JSON output an HTML rendering that uses the page's plotly.js."""
    import plotly.io as pio

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            spec = data.get("application/vnd.plotly.v1+json")
            if spec is not None and "text/html" not in data:
                data["text/html"] = pio.to_html(spec, include_plotlyjs=False, full_html=False)


_SNAPSHOT_CELL = """\
import base64 as _b64, json as _json
from nbkit.widgets.app import App as _App
print(_json.dumps({"png": {_a.widget.model_id: _b64.b64encode(_a.static_figure().to_image(
    format="png", width=_a.figure.layout.width or 1000, height=_a.figure.layout.height or 600
)).decode() for _a in _App.instances}, "text": {_a.widget.model_id: _a.placeholder_text()
                                                for _a in _App.instances}}))
"""
WIDGET = "application/vnd.jupyter.widget-view+json"
PLOTLY = "application/vnd.plotly.v1+json"


def add_snapshots(nb, apps: dict) -> int:
    """Put a PNG beside each output that needs JavaScript to be seen: widget apps (from
    ``apps``, model id -> base64 PNG taken in the kernel) and plotly figures (rendered
    here from their JSON). Returns how many outputs got one."""
    import base64

    import plotly.io as pio

    added = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                continue
            png = None
            if WIDGET in data:
                png = apps.get(data[WIDGET].get("model_id"))
            elif PLOTLY in data:
                fig = data[PLOTLY]
                layout = fig.get("layout", {})
                png = base64.b64encode(pio.to_image(
                    fig, format="png", width=layout.get("width") or 1000,
                    height=layout.get("height") or 600)).decode()
            if png:
                data["image/png"] = png
                added += 1
    return added


def _notebooks(names=None) -> list[Path]:
    """notebooks/NN_*.ipynb, in order; only those whose name contains one of ``names``."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in paths if any(n in p.stem for n in names)] if names else paths


def _execute(nb, timeout: int) -> None:
    """Run every cell of ``nb`` in a fresh kernel, in notebooks/, widget state not stored."""
    from nbconvert.preprocessors import ExecutePreprocessor

    ep = ExecutePreprocessor(timeout=timeout, kernel_name="python3", store_widget_state=False)
    ep.preprocess(nb, {"metadata": {"path": str(NOTEBOOKS)}})


def _finish_widget_outputs(nb, texts: dict) -> None:
    """Widget outputs as a saved notebook should keep them: an app's text names its final
    figure (it was displayed before its work ran), and widgets that are not apps (progress
    bars) are dropped, since without their state they show only a bar frozen at 0 %."""
    for cell in nb.cells:
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET in data:
                model = data[WIDGET].get("model_id")
                if model not in texts:
                    continue
                data["text/plain"] = texts[model]
            kept.append(output)
        if "outputs" in cell:
            cell.outputs = kept


def refresh(names=None, timeout: int = 1200) -> list[Path]:
    """Execute notebooks/ in quick mode and save each in place with snapshots (see the
    module docstring)."""
    import json

    import nbformat

    os.environ["NBKIT_MODE"] = "quick"
    os.environ.pop("NBKIT_STATIC", None)
    paths = _notebooks(names)
    for path in paths:
        t0 = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(_SNAPSHOT_CELL))
        _execute(nb, timeout)
        last = nb.cells.pop()
        text = "".join(o.get("text", "") for o in last.outputs if o.get("name") == "stdout")
        apps = json.loads(text or "{}")
        added = add_snapshots(nb, apps.get("png", {}))
        _finish_widget_outputs(nb, apps.get("text", {}))
        nbformat.write(nb, path)
        print(f"{path.name}: {time.perf_counter() - t0:.1f} s, {added} snapshots, "
              f"{path.stat().st_size / 1e6:.2f} MB")
    return paths


def build(out: Path, figures: Path | None = None, mode: str = "quick", names=None,
          timeout: int = 1200) -> list[Path]:
    """Execute the notebooks and write ``out/<notebook>.html`` plus ``out/index.html``."""
    import nbformat
    from nbconvert import HTMLExporter

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(_plotly_js(), out / "plotly.min.js")
    os.environ["NBKIT_STATIC"] = "1"
    os.environ["NBKIT_MODE"] = mode
    pages = []
    for path in _notebooks(names):
        t0 = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        if figures is not None:
            cell = _EXPORT_CELL.format(out=str((figures / f"{path.stem}.png").resolve()))
            nb.cells.append(nbformat.v4.new_code_cell(cell, metadata={"tags": ["export"]}))
        _execute(nb, timeout)
        if figures is not None:
            nb.cells.pop()
        _add_static_html(nb)
        body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
        body = body.replace("<head>", '<head>\n<script src="plotly.min.js"></script>', 1)
        page = out / f"{path.stem}.html"
        page.write_text(body, encoding="utf-8")
        pages.append(page)
        print(f"{path.name}: {time.perf_counter() - t0:.1f} s -> {page}")
    items = "\n".join(f'<li><a href="{p.name}">{html.escape(p.stem)}</a></li>' for p in pages)
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>nbkit gallery</title></head>"
        f"<body style='font-family:sans-serif'><h1>nbkit notebooks</h1><ul>{items}</ul>"
        "</body></html>", encoding="utf-8")
    return pages


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/gallery"))
    parser.add_argument("--figures", type=Path, default=None,
                        help="also write each notebook's main figure as PNG here")
    parser.add_argument("--mode", choices=["quick", "full"], default="quick")
    parser.add_argument("--refresh", action="store_true",
                        help="re-execute notebooks/ in place, with PNG snapshots")
    parser.add_argument("notebooks", nargs="*", help="only notebooks whose name contains these")
    args = parser.parse_args(argv)
    if args.refresh:
        refresh(args.notebooks)
    else:
        build(args.out, args.figures, args.mode, args.notebooks)


if __name__ == "__main__":
    main()
