"""ipywidgets apps: controls, a compute function and a figure builder around a plotly
``FigureWidget``. Apps hold no science: they call the core package to compute and
:mod:`nbkit.viz` to draw, so they can be tested without a kernel by setting a control's
value and reading ``app.figure`` and ``app.messages``."""

from .app import App

__all__ = ["App"]
