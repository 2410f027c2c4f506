"""Execute every notebook headless and write a static HTML gallery that renders offline.

    python -m nbkit.gallery --out build/gallery [--figures docs/figures] [--mode quick]

Each notebook runs in a fresh kernel with ``NBKIT_STATIC=1``, so every widget app shows
its figure as static plotly HTML; pages load one local copy of plotly.js, so the
gallery needs no network. With ``--figures`` the main (first) figure of each notebook
is also written as a PNG (kaleido, which drives a local Chromium).
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


def build(out: Path, figures: Path | None = None, mode: str = "quick", names=None,
          timeout: int = 1200) -> list[Path]:
    """Execute the notebooks and write ``out/<notebook>.html`` plus ``out/index.html``."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import ExecutePreprocessor

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(_plotly_js(), out / "plotly.min.js")
    os.environ["NBKIT_STATIC"] = "1"
    os.environ["NBKIT_MODE"] = mode
    pages = []
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if names:
        paths = [p for p in paths if any(n in p.stem for n in names)]
    for path in paths:
        t0 = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        if figures is not None:
            cell = _EXPORT_CELL.format(out=str((figures / f"{path.stem}.png").resolve()))
            nb.cells.append(nbformat.v4.new_code_cell(cell, metadata={"tags": ["export"]}))
        ep = ExecutePreprocessor(timeout=timeout, kernel_name="python3",
                                 store_widget_state=False)
        ep.preprocess(nb, {"metadata": {"path": str(NOTEBOOKS)}})
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
    parser.add_argument("notebooks", nargs="*", help="only notebooks whose name contains these")
    args = parser.parse_args(argv)
    build(args.out, args.figures, args.mode, args.notebooks)


if __name__ == "__main__":
    main()
