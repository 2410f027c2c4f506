"""The science behind each figure, in one place: pure functions ``settings -> plain dict``,
cached, with no ipywidgets and no plotly. The notebooks take their numbers from here, the
apps of :mod:`nbkit.widgets` draw them, and the experiment runner's kinds call the same
functions at paper scale.

=====================  ===============================================================
module                 what it computes
=====================  ===============================================================
:mod:`.collapse`       Fig. 1: every pruner at every compression, layer densities,
                       critical compression, connectivity (notebook 01)
:mod:`.conservation`   Fig. 3 and 4: the conservation laws and what breaks them (02)
:mod:`.iterations`     Fig. 7: SynFlow's flow ratio over iterations and schedules (03)
:mod:`.pruned_training`  Fig. 6 live: prune at init, train, shuffle check (04)
:mod:`.fig6`           Fig. 6 at full scale: published and nbkit's collected runs (04)
:mod:`.learning_rules` one rule trained while its angles are logged (05)
:mod:`.two_routes`     [TR]'s local rules against weight estimation over depth and noise
:mod:`.sensitivity`    [TR]'s fragility claim: WM and IA over β/α on two architectures
:mod:`.own_model`      a torchvision model pruned by every pruner, what is supported (07)
:mod:`.results`        every shipped and collected results file, one error policy
=====================  ===============================================================

Every study has a frozen ``Settings`` dataclass with ``QUICK`` and ``FULL`` instances
(``studies.collapse.settings("full")``). :func:`clear_cache` forgets every cached result.
"""

from . import (
    collapse,
    conservation,
    fig6,
    iterations,
    learning_rules,
    own_model,
    pruned_training,
    results,
    sensitivity,
    two_routes,
)
from .common import StudySettings, cached, clear_cache

__all__ = ["collapse", "conservation", "fig6", "iterations", "learning_rules", "own_model",
           "pruned_training", "results", "sensitivity", "two_routes", "StudySettings", "cached",
           "clear_cache"]
