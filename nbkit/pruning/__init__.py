"""Pruning at initialization: five pruners, iterative schedules, collapse metrics.

>>> import nbkit
>>> model = nbkit.models.build("vgg16_bn", num_classes=100)
>>> masks = nbkit.pruning.prune(model, "synflow", density=1e-3, iterations=100)
>>> nbkit.pruning.collapsed(model), nbkit.pruning.effective_density(model)

Masks follow ``torch.nn.utils.prune`` (``weight_orig``, ``weight_mask``, a forward
pre-hook); every dict here is keyed by the parameter names of the unpruned model.

Modules: :mod:`.masks` (storage, prunable parameters), :mod:`.scores` (the scorer
registry), :mod:`.select` (exact top-k), :mod:`.prune` (the loop), :mod:`.metrics`
(densities, collapse, connectivity, critical compression), :mod:`.functional`
(substituted passes, SynFlow's objective, input shapes), :mod:`.batches` (pruning
data for SNIP and GraSP).
"""

from .functional import (
    absolute_values,
    eval_mode,
    linearized,
    ones_input,
    resolve_input_shape,
    substitute,
    synflow_objective,
)
from .masks import (
    aliases,
    apply_masks,
    is_pruned,
    kept_pruned_attributes,
    load_state_dict,
    locate,
    masks,
    prunable_parameters,
    pruned_attributes,
    remove,
)
from .metrics import (
    collapsed,
    critical_compression,
    disconnected,
    effective_density,
    effective_masks,
    layer_density,
)
from .prune import SCHEDULES, SCOPES, prune, schedule_counts, score
from .scores import SCORERS, ScoreContext, Scorer, iterations_for, needs_data, register
from .scores import names as methods

__all__ = [
    "prune", "score", "methods", "needs_data", "iterations_for", "SCHEDULES", "SCOPES",
    "schedule_counts",
    "masks", "apply_masks", "remove", "load_state_dict", "is_pruned", "prunable_parameters",
    "locate", "pruned_attributes", "kept_pruned_attributes", "aliases", "linearized",
    "layer_density", "collapsed", "effective_masks", "effective_density", "disconnected",
    "critical_compression",
    "synflow_objective", "absolute_values", "resolve_input_shape", "ones_input", "eval_mode",
    "substitute",
    "SCORERS", "Scorer", "ScoreContext", "register",
]
