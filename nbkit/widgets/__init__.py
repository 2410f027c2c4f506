"""ipywidgets apps: controls, a study and a figure builder around a plotly
``FigureWidget``, nothing else. Apps hold no science: they take their numbers from
:mod:`nbkit.studies` and draw them with :mod:`nbkit.viz`, so they can be tested without
a kernel by setting a control's value and reading ``app.figure`` and ``app.messages``.

One app module per notebook: :mod:`.pruning` (01), :mod:`.probes` (02),
:mod:`.iterations` (03), :mod:`.training` and :mod:`.fig6` (04), :mod:`.rules` (05, 06).
Notebooks import them as ``from nbkit.widgets import pruning as pruning_app``.
"""

from .app import App

__all__ = ["App"]
