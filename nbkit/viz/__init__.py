"""Plotly figure builders. Pure: plain arrays, lists and dicts in, ``go.Figure`` out.

Nothing here knows about torch modules; the widgets and notebooks compute with the core
package and hand the numbers over. Colours are fixed per pruner and per rule across every
notebook (see :mod:`nbkit.viz.style`). Figures of several panels are laid out by
:mod:`nbkit.viz.panels` (plain dicts, validated once: fast enough for every slider move).
"""

from .style import (
    OBJECTIVE_LABELS,
    PRUNER_COLORS,
    PRUNER_LABELS,
    RULE_COLORS,
    RULE_LABELS,
    color_for,
    label_for,
    layer_colors,
    new_figure,
)

__all__ = [
    "OBJECTIVE_LABELS",
    "PRUNER_COLORS",
    "PRUNER_LABELS",
    "RULE_COLORS",
    "RULE_LABELS",
    "color_for",
    "label_for",
    "layer_colors",
    "new_figure",
]
