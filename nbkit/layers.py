"""One definition of "a layer with a weight", shared by pruning, probes and rules.

Every module that holds a weight matrix or kernel is one of the kinds in :data:`KINDS`.
Each kind says which of its tensors are weights, and for each part of nbkit
(``"pruning"``, ``"rules"``, ``"probes"``) either ``None`` (supported) or why not and
what to do. The entry points ask
:func:`refuse` before they start, so no layer with a weight is ever skipped in silence:

>>> refuse(model, "rules")   # raises, naming e.g. "lstm (LSTM): recurrent weights ..."

A weight computed by a parametrization (``weight_norm``, ``spectral_norm``) or shared
between modules is reported here too (:func:`parametrized`, :func:`shared`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["Kind", "KINDS", "kind_of", "weight_layers", "why_not", "unsupported", "refuse",
           "parametrized", "shared", "read_by_parent", "UnsupportedLayerError", "logits"]

USES = ("pruning", "rules", "probes")

_RULES_ONLY = "feedback rules replace Linear and Conv2d (groups=1) layers only"
_PROBES_ONLY = ("the conservation probes trace Linear and Conv2d layers only; probe a model "
                "built from those")


class UnsupportedLayerError(ValueError):
    """A model holds a layer with a weight that this part of nbkit cannot handle."""


@dataclass(frozen=True)
class Kind:
    """What nbkit knows about one kind of module with weights.

    types: the module classes (subclasses count).
    weights: the names of its weight tensors on a module (a function of the module).
    float_input: False for a layer that reads integer indices (Embedding), which a
        made-up all-ones float input (SynFlow's) cannot feed.
    pruning, rules, probes: None when that part of nbkit supports the kind, else the
        reason and what to do.
    """

    name: str
    types: tuple
    weights: object = field(default=lambda m: ("weight",))
    pruning: str | None = None
    rules: str | None = _RULES_ONLY
    probes: str | None = _PROBES_ONLY
    float_input: bool = True

    def why_not(self, use: str) -> str | None:
        if use not in USES:
            raise ValueError(f"use must be one of {USES}, got {use!r}")
        return getattr(self, use)


def _attention_weights(m: nn.MultiheadAttention) -> tuple[str, ...]:
    names = ("in_proj_weight",) if m.in_proj_weight is not None else (
        "q_proj_weight", "k_proj_weight", "v_proj_weight")
    return names


def _recurrent_weights(m: nn.RNNBase) -> tuple[str, ...]:
    return tuple(n for n in m._flat_weights_names if n.startswith("weight_"))


KINDS: tuple[Kind, ...] = (
    Kind("linear", (nn.Linear,), rules=None, probes=None),
    Kind("conv2d", (nn.Conv2d,), rules=None, probes=None),
    Kind("conv", (nn.Conv1d, nn.Conv3d)),
    Kind("conv_transpose", (nn.modules.conv._ConvTransposeNd,)),
    Kind("bilinear", (nn.Bilinear,)),
    Kind("embedding", (nn.Embedding, nn.EmbeddingBag), float_input=False),
    Kind("attention", (nn.MultiheadAttention,), weights=_attention_weights, rules=(
        "multi-head attention applies its projections inside "
        "F.multi_head_attention_forward, out of reach of a feedback layer")),
    Kind("recurrent", (nn.RNNBase,), weights=_recurrent_weights, pruning=(
        "recurrent weights (RNN, LSTM, GRU) are read from a flattened copy that masks "
        "cannot reach; pass prunable= naming the other layers' weights to prune around "
        "them"), rules="recurrent layers unroll through time, which feedback rules do not "
                       "model"),
)


def kind_of(module: nn.Module) -> Kind | None:
    """The kind of a module with weights (the first of :data:`KINDS` it is an instance
    of), or None for a module without weights of its own."""
    for kind in KINDS:
        if isinstance(module, kind.types):
            return kind
    return None


def read_by_parent(model: nn.Module) -> dict[str, str]:
    """``{child name: parent name}`` for weight layers whose forward is never called
    because an enclosing module reads their weights directly (the ``out_proj`` Linear of
    ``nn.MultiheadAttention``)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            out[f"{name}.out_proj" if name else "out_proj"] = name
    return out


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module, Kind]]:
    """Every module of ``model`` with a weight of a known kind, in model order, as
    ``(name, module, kind)``; the out_proj of attention is reported as part of its
    attention module, under the attention kind."""
    inside = read_by_parent(model)
    out = []
    for name, m in model.named_modules():
        kind = kind_of(m)
        if kind is None:
            continue
        if name in inside:  # what holds for attention holds for its out_proj's weight
            kind = replace(kind_of(model.get_submodule(inside[name])),
                           weights=lambda m: ("weight",))
        out.append((name, m, kind))
    return out


def parametrized(model: nn.Module) -> list[str]:
    """Modules whose weight is computed rather than stored: ``torch.nn.utils.parametrize``
    (``parametrizations.weight_norm``, ``spectral_norm``) or the older hook-based
    ``weight_norm`` / ``spectral_norm``."""
    out = []
    for name, m in model.named_modules():
        kind = kind_of(m)
        if kind is None:
            continue
        attrs = kind.weights(m)
        computed = any(parametrize.is_parametrized(m, a) for a in attrs) or any(
            a in m._parameters and m._parameters[a] is None for a in attrs) or any(
            hasattr(m, f"{a}_g") or hasattr(m, f"{a}_orig") and not hasattr(m, f"{a}_mask")
            for a in attrs)
        if computed:
            out.append(name or "<model>")
    return out


def shared(model: nn.Module) -> list[list[str]]:
    """Groups of parameter names that are one and the same tensor (tied weights)."""
    seen: dict[int, list[str]] = {}
    for mod_name, m in model.named_modules():
        for attr, p in m._parameters.items():
            if p is not None:
                seen.setdefault(id(p), []).append(f"{mod_name}.{attr}" if mod_name else attr)
    return [names for names in seen.values() if len(names) > 1]


def why_not(module: nn.Module, kind: Kind, use: str) -> str | None:
    """Why ``use`` cannot handle this layer (None: it can): the kind's reason, or for
    the rules a grouped convolution's."""
    why = kind.why_not(use)
    if why is None and use == "rules" and isinstance(module, nn.Conv2d) and module.groups != 1:
        why = f"groups={module.groups}, but feedback rules handle groups=1 only"
    return why


def unsupported(model: nn.Module, use: str) -> list[str]:
    """``"name (Type): why and what to do"`` for each layer with a weight that ``use``
    (``"pruning"``, ``"rules"`` or ``"probes"``) cannot handle, in model order."""
    found = []
    for name, m, kind in weight_layers(model):
        why = why_not(m, kind, use)
        if why is not None:
            found.append(f"{name or '<model>'} ({type(m).__name__}): {why}")
    for group in shared(model) if use == "probes" else ():
        found.append(f"{' and '.join(group)} are one tensor (tied weights): its saliency "
                     "sums every use and cannot be split per layer; probe an untied copy")
    for name in parametrized(model) if use == "pruning" else ():
        # (the rules convert a parametrized layer and keep its parametrization)
        module = model.get_submodule("" if name == "<model>" else name)
        found.append(f"{name} ({type(module).__name__}): its weight is computed by a "
                     "parametrization (weight_norm, spectral_norm); remove it first "
                     "(torch.nn.utils.parametrize.remove_parametrizations)")
    return found


def refuse(model: nn.Module, use: str, *, strict: bool = True, what: str = "") -> list[str]:
    """Raise :class:`UnsupportedLayerError` naming every layer ``use`` cannot handle; with
    ``strict=False`` warn instead and return the list (empty when all is well)."""
    found = unsupported(model, use)
    if found:
        head = what or f"nbkit's {use} cannot handle these layers"
        text = f"{head}: " + "; ".join(found)
        if strict:
            raise UnsupportedLayerError(text)
        warnings.warn(text, stacklevel=3)
    return found


def logits(out, what: str = "nbkit"):
    """The model's output as a tensor, or a TypeError that says what to do: nbkit trains
    and prunes classifiers whose forward returns one tensor of logits, not a tuple or a
    dict (as some torchvision and Hugging Face models do)."""
    if isinstance(out, torch.Tensor):
        return out
    kind = type(out).__name__
    keys = f" with keys {sorted(out)[:5]}" if isinstance(out, dict) else ""
    raise TypeError(f"{what} needs a model whose forward returns one tensor of logits, but "
                    f"this one returns a {kind}{keys}; wrap it in a module whose forward "
                    "returns the logits (e.g. out[0] or out['logits'])")
