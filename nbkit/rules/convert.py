"""Turn a model's Linear and Conv2d layers into feedback layers, and back.

>>> convert(model, "feedback_alignment", seed=0)      # in place; returns model
>>> convert(model, "symmetric_alignment", preset="quick")
>>> convert(model, "symmetric_alignment", feedback_lr=0.5)   # B in its own lr group
>>> convert(model, "direct_feedback_alignment", input_shape=(3, 32, 32))
>>> unconvert(model)                                  # exact backprop again

B (``layer.feedback``) is an ``nn.Parameter`` whose ``.grad`` the rule fills, so any
torch optimizer trains W and B together. Parameters that need settings of their own
carry an ``optim`` dict (``{"weight_decay": 0.0}`` on B: the task's weight decay applies
to W only); :func:`param_groups` turns those into optimizer groups.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from .. import layers
from . import direct, registry
from .layers import (
    FEEDBACK_CLASSES,
    PLAIN_CLASSES,
    FeedbackConv2d,
    FeedbackLayer,
    override,
    param_of,
    plain_class,
    set_class,
)
from .primitives import ConvOps, LinearOps, kaiming_std, make_plan

__all__ = ["convert", "unconvert", "converted_layers", "feedback_parameters", "param_groups",
           "rule_of"]

_LAYER_ATTRS = ("rule", "coefficients", "_plan", "_override", "_param_optim", "_pre_pad",
                "_pad_mode", "_saved_weight_optim", "_tap")


def _unsupported_reason(module: nn.Module) -> str | None:
    """Why a weight layer cannot be converted, or None when it can."""
    base = plain_class(module)
    if base in PLAIN_CLASSES:
        base = PLAIN_CLASSES[base]
    if base is nn.Conv2d:
        if module.groups != 1:
            return f"Conv2d with groups={module.groups} (only groups=1 is supported)"
        return None
    if base is nn.Linear:
        return None
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        parent = "nn.Linear" if isinstance(module, nn.Linear) else "nn.Conv2d"
        return f"{type(module).__name__}, a subclass of {parent} with a forward of its own"
    if isinstance(module, (nn.modules.conv._ConvNd, nn.Bilinear)):
        return f"{type(module).__name__} (only Linear and Conv2d layers are supported)"
    return None


def _scan(model: nn.Module, strict: bool) -> list[tuple[str, nn.Module]]:
    """The layers to convert; every other layer with a weight (:mod:`nbkit.layers`) is an
    error naming it, or with ``strict=False`` a warning naming it."""
    targets, bad = [], layers.unsupported(model, "rules")
    for name, m, kind in layers.weight_layers(model):
        if layers.why_not(m, kind, "rules") is not None:  # named in bad already
            continue
        reason = _unsupported_reason(m)
        if reason is None:
            targets.append((name, m))
        else:
            bad.append(f"{name or '<model>'}: {reason}")
    if bad and strict:
        raise layers.UnsupportedLayerError(
            "cannot convert these layers to a feedback rule: " + "; ".join(bad)
            + ". Pass strict=False to leave them on backprop.")
    if bad:
        warnings.warn("left on backprop (not supported by feedback rules): " + "; ".join(bad),
                      stacklevel=3)
    if not targets:
        raise ValueError("the model has no Linear or Conv2d layer to convert")
    return targets


def _conv_geometry(m: nn.Conv2d):
    """(ConvOps, explicit pre-padding or None, pad mode) reproducing ``m``'s padding."""
    pre, mode, padding = None, "constant", m.padding
    if m.padding_mode != "zeros":
        pre, mode, padding = tuple(m._reversed_padding_repeated_twice), m.padding_mode, (0, 0)
    elif padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        totals = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
        if all(t % 2 == 0 for t in totals):
            padding = tuple(t // 2 for t in totals)
        else:
            pre, padding = tuple(m._reversed_padding_repeated_twice), (0, 0)
    ops = ConvOps(tuple(m.stride), tuple(padding), tuple(m.dilation))
    return ops, pre, mode


def _strip(m: nn.Module) -> None:
    """Undo one layer's conversion (restoring the weight's own ``optim``)."""
    w = param_of(m, "weight")
    saved = m.__dict__.get("_saved_weight_optim", "unset")
    if w is not None and saved != "unset":
        if saved is None:
            w.__dict__.pop("optim", None)
        else:
            w.optim = dict(saved)
    m._parameters.pop("feedback", None)
    m._buffers.pop("direct_feedback", None)
    for attr in _LAYER_ATTRS:
        m.__dict__.pop(attr, None)
    set_class(m, PLAIN_CLASSES[plain_class(m)])


def _convert_layer(m, rule: registry.Rule, settings: dict, gen: torch.Generator,
                   feedback: dict, sizes: tuple | None) -> None:
    """Convert one layer; ``sizes`` is ``(n_out, one example's input shape, tap)`` for a
    rule with direct feedback."""
    if isinstance(m, FeedbackLayer):
        _strip(m)
    base = plain_class(m)
    w = param_of(m, "weight")
    cur = m.weight.detach()
    n, nnz = cur.numel(), int(torch.count_nonzero(cur))
    norm = float(cur.float().norm())
    if isinstance(m, nn.Conv2d):
        ops, pre, mode = _conv_geometry(m)
    else:
        ops, pre, mode = LinearOps(), None, "constant"

    # B's scale matches W's (so the backward signal keeps backprop's magnitude): a random
    # B with ‖B‖ = ‖W‖, or sign(W) times W's RMS over its nonzero entries.
    fallback = kaiming_std(cur)
    sign_scale = norm / math.sqrt(nnz) if nnz else fallback
    set_class(m, FEEDBACK_CLASSES[base])
    m._saved_weight_optim = dict(w.optim) if hasattr(w, "optim") else None
    param_optim = {}
    if rule.feedback in ("fixed", "learned"):
        std = norm / math.sqrt(n) if norm > 0 else fallback
        draw = torch.randn(tuple(cur.shape), generator=gen, dtype=torch.float64) * std
        fb = torch.empty_like(w.detach())
        fb.copy_(draw)
        m.feedback = nn.Parameter(fb, requires_grad=rule.learned)
        param_optim["feedback"] = {"weight_decay": 0.0, **feedback}
    else:
        m.register_parameter("feedback", None)
    if rule.direct:
        n_out, shape, m._tap = sizes
        m.register_buffer("direct_feedback", direct.draw(n_out, shape, gen, w))
    if rule.shares_decay:
        decay = 2.0 * sum(settings[k] for k, (p, _) in rule.terms.items() if p == "decay")
        param_optim["weight"] = {**(m._saved_weight_optim or {}), "weight_decay": decay}
    m.rule = rule.name
    m.coefficients = dict(settings)
    m._plan = make_plan(ops, rule, settings, sign_scale)
    m._override = None
    m._param_optim = param_optim
    if isinstance(m, FeedbackConv2d):
        m._pre_pad, m._pad_mode = pre, mode
    m.attach_optim()


def convert(model: nn.Module, rule, *, strict: bool = True, seed: int | None = None,
            preset: str | None = None, feedback_lr: float | None = None,
            feedback_optimizer: str | None = None, input_shape=None,
            **coefficients) -> nn.Module:
    """Make every Linear and Conv2d layer of ``model`` learn with ``rule``, in place.

    Args:
        model: any module (a single layer too). BatchNorm, pooling, activations and
            residual adds keep ordinary backprop.
        rule: a name from :func:`names` (or a registered :class:`Rule`). ``"backprop"``
            is :func:`unconvert`.
        strict: raise on a layer the rules cannot handle (grouped convs, Conv1d, custom
            Linear subclasses); with ``strict=False`` such layers stay on backprop, with
            a warning.
        seed: seeds the draw of the random B's (default: drawn from torch's global RNG,
            so ``nbkit.seed`` makes it repeat).
        preset: ``"quick"`` for short demos (see :data:`QUICK` and
            :data:`QUICK_FEEDBACK`: larger coefficients for SA and KP, an Adam of B's own
            for WM, IA and AA); ``None``/``"default"`` uses [TR]'s coefficients with B on
            the task's optimizer.
        feedback_lr: a learning rate of B's own (put in B's ``optim`` dict).
        feedback_optimizer: ``"sgd"`` (the task's optimizer, the default) or ``"adam"``
            (an Adam over the B's, built by :func:`nbkit.train.make_optimizer`; the
            reference code's separate alignment optimizer). Neither applies to a rule
            that transports W's update into B (Kolen-Pollack): B must get exactly W's
            update.
        input_shape: one example's input shape (no batch dimension), for rules with
            direct feedback only (ignored by the others): each layer's D is sized by one
            forward pass of a batch of one (in eval mode, every layer on backprop).
            Default: ``model.input_shape`` (which :func:`nbkit.models.build` records),
            else ``(in_features,)`` when the model's first weight layer is a Linear.
        **coefficients: override the rule's coefficients (``alpha=...``) and options
            (``samples=...``); a name the rule does not have is an error.

    Converting an already converted model replaces its rule (and draws new B's); it does
    not stack wrappers.

    Direct feedback alignment: every converted layer sends δx = D e, e being the error at
    the output of ``model`` (forward hooks on ``model`` capture it; see :mod:`.direct`)
    and D a fixed random persistent buffer of the layer's own (``direct_feedback``, in the
    state dict), N(0, 1/m) for an input of m numbers per example, so that ‖D e‖ ≈ ‖e‖.
    Converting to another rule, or :func:`unconvert`, removes the hooks and the D's.

    Kolen-Pollack: B gets W's update plus a decay of its own, 2α B (from α(‖W‖² + ‖B‖²));
    W keeps the task's weight decay λ (set by the optimizer, as for backprop). So the gap
    D = B − Wᵀ follows D ← D − η(2α D + (2α − λ) Wᵀ) under plain SGD: with 2α = λ it
    shrinks by (1 − 2αη) per step whatever the data; otherwise B tends to (λ / 2α) Wᵀ,
    aligned with W but shorter (longer when 2α < λ).
    """
    r = registry.get(rule)
    settings = registry.resolve(r, preset, **coefficients)
    asked = {k: v for k, v in (("feedback_lr", feedback_lr),
                               ("feedback_optimizer", feedback_optimizer)) if v is not None}
    if r.feedback == "transpose":
        if asked:
            raise ValueError(f"{', '.join(asked)} has no effect with backprop, which has no B")
        return unconvert(model)
    if asked and not r.learned:
        raise ValueError(f"{', '.join(asked)} applies to learned rules only; {r.name!r} "
                         "does not learn its B")
    if asked and r.transport:
        raise ValueError(f"{', '.join(asked)} cannot be used with {r.name!r}: its B gets "
                         "exactly W's update (that is the rule), so it must share W's "
                         "optimizer and learning rate. Set the task's learning rate instead, "
                         f"or B's decay with alpha=...")
    feedback = _feedback_update(r, preset, feedback_lr, feedback_optimizer)
    targets = _scan(model, strict)
    if r.direct:
        n_out, shapes = _direct_sizes(model, targets, input_shape)
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    gen = torch.Generator().manual_seed(int(seed))
    snapshot = _snapshot(model)
    try:  # all or nothing: on any error the model is exactly as it was
        direct.detach(model)
        tap = direct.attach(model) if r.direct else None
        for _, m in targets:
            _convert_layer(m, r, settings, gen, feedback,
                           (n_out, shapes[m], tap) if r.direct else None)
    except BaseException:
        _restore(snapshot)
        raise
    return model


def _snapshot(model: nn.Module):
    """Everything conversion changes: each module's class, attributes, parameters,
    buffers and hooks, and each parameter's attributes (its ``optim`` dict)."""
    mods = [(m, m.__class__, dict(m.__dict__), dict(m._parameters), dict(m._buffers),
             dict(m._forward_pre_hooks), dict(m._forward_hooks)) for m in model.modules()]
    params = [(p, dict(p.__dict__)) for m in model.modules() for p in m._parameters.values()
              if p is not None]
    return mods, params


def _restore(snapshot) -> None:
    mods, params = snapshot
    for m, cls, attrs, ps, bs, pre, post in mods:
        m.__class__ = cls
        m.__dict__.clear()
        m.__dict__.update(attrs)
        for store, saved in ((m._parameters, ps), (m._buffers, bs),
                             (m._forward_pre_hooks, pre), (m._forward_hooks, post)):
            store.clear()
            store.update(saved)
    for p, attrs in params:
        p.__dict__.clear()
        p.__dict__.update(attrs)


def _example_shape(model: nn.Module, input_shape) -> tuple[int, ...]:
    """One example's input shape: ``input_shape``, ``model.input_shape``, or the first
    weight layer's ``in_features`` when that layer is a Linear."""
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
    if input_shape is None:
        first = next((m for m in model.modules()
                      if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))), None)
        if isinstance(first, nn.Linear):
            input_shape = (first.in_features,)
    if input_shape is None:
        raise ValueError("direct feedback alignment sizes each layer's D by one forward "
                         "pass of a batch of one, but this model's input shape is unknown: "
                         "pass input_shape=(channels, height, width) (one example, no batch "
                         "dimension) to rules.convert, or set model.input_shape (as "
                         "nbkit.models.build does)")
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else ()
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                            for s in shape):
        raise ValueError(f"input_shape must be a tuple of positive ints (one example, no "
                         f"batch dimension), got {input_shape!r}")
    return shape


def _direct_sizes(model: nn.Module, targets, input_shape) -> tuple[int, dict]:
    """``(n_out, {layer: one example's input shape})`` for direct feedback, from one
    forward pass of a batch of one (eval mode, every layer on backprop, no gradient)."""
    shape = _example_shape(model, input_shape)
    like = next(p for p in model.parameters() if p.is_floating_point())
    seen = {}

    def record(module, args):
        seen.setdefault(module, tuple(args[0].shape[1:]))

    handles = [m.register_forward_pre_hook(record) for _, m in targets]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), override(model, "exact"):
            out = model(torch.zeros((1, *shape), device=like.device, dtype=like.dtype))
    except Exception as e:
        raise ValueError(f"direct feedback alignment sizes each layer's D by one forward pass "
                         f"of a batch of one input of shape {shape}, and it failed "
                         f"({type(e).__name__}: {e}); pass an input_shape=... that the model "
                         "accepts (one example, no batch dimension)") from e
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    if not isinstance(out, torch.Tensor):
        raise ValueError("direct feedback alignment sends every layer the error at the "
                         "model's output, so the model must return one tensor; it returned "
                         f"a {type(out).__name__}")
    missing = [name or "<model>" for name, m in targets if m not in seen]
    if missing:
        raise ValueError(f"direct feedback alignment: {', '.join(missing)} did not run in a "
                         "forward pass of the model, so their D cannot be sized; convert "
                         "the part of the model that runs")
    return out[0].numel(), seen


def _feedback_update(rule, preset, lr, optimizer) -> dict:
    """B's ``optim`` overrides: the preset's, then the caller's."""
    update = registry.feedback_update(rule, preset) if rule.learned else {}
    if optimizer is not None:
        if optimizer not in registry.FEEDBACK_OPTIMIZERS:
            raise ValueError(f"feedback_optimizer must be one of "
                             f"{list(registry.FEEDBACK_OPTIMIZERS)}, got {optimizer!r}")
        update["optimizer"] = optimizer
    if lr is not None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) \
                or lr <= 0:
            raise ValueError(f"feedback_lr must be a finite number > 0, got {lr!r}")
        update["lr"] = float(lr)
    if update.get("optimizer") == "sgd":
        update.pop("optimizer")
    return update


def unconvert(model: nn.Module) -> nn.Module:
    """Restore plain ``nn.Linear``/``nn.Conv2d`` layers (exact backprop), in place (and
    remove direct feedback alignment's output hooks)."""
    direct.detach(model)
    for m in model.modules():
        if isinstance(m, FeedbackLayer):
            _strip(m)
    return model


def converted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every converted layer."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FeedbackLayer)]


def rule_of(model: nn.Module) -> str:
    """The model's rule name: ``"backprop"`` when no layer is converted, the common rule
    of the converted layers, or ``"mixed"``."""
    rules = {m.rule for _, m in converted_layers(model)}
    return "backprop" if not rules else rules.pop() if len(rules) == 1 else "mixed"


def feedback_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The learned B's, for an optimizer of their own."""
    return [m.feedback for _, m in converted_layers(model)
            if m.feedback is not None and m.feedback.requires_grad]


def param_groups(model: nn.Module, lr: float, weight_decay: float = 0.0, *,
                 feedback: bool = True) -> list[dict]:
    """Optimizer parameter groups for a plain torch loop: one group for ordinary
    parameters, one per distinct ``param.optim`` override dict (B: no weight decay, and
    its own lr when asked). ``feedback=False`` leaves the learned B's out (give them an
    optimizer of their own). A B that asks for an optimizer other than SGD (the quick
    preset's Adam) is an error here: :func:`nbkit.train.make_optimizer` builds both.

    >>> opt = torch.optim.SGD(param_groups(model, lr=0.1, weight_decay=5e-4), momentum=0.9)
    """
    skip = set() if feedback else {id(p) for p in feedback_parameters(model)}
    groups = group_by_optim(model, lr, weight_decay, skip)
    own = sorted({g["optimizer"] for g in groups if g.get("optimizer", "sgd") != "sgd"})
    if own:
        raise ValueError(f"this model's B's ask for an optimizer of their own ({', '.join(own)}"
                         "); build both with nbkit.train.make_optimizer(model, ...), or pass "
                         "feedback=False here and give rules.feedback_parameters(model) an "
                         "optimizer yourself")
    return groups


def group_by_optim(model: nn.Module, lr: float, weight_decay: float, skip=()) -> list[dict]:
    """Parameter groups: one for the parameters without an ``optim`` dict, one per distinct
    ``optim`` dict (its keys override ``lr`` and ``weight_decay``, and may name an
    ``optimizer``); parameters that do not require grad, or whose ``id`` is in ``skip``,
    are left out."""
    plain, special = [], {}
    for p in model.parameters():
        if not p.requires_grad or id(p) in skip:
            continue
        overrides = getattr(p, "optim", None)
        if overrides:
            special.setdefault(tuple(sorted(overrides.items())), []).append(p)
        else:
            plain.append(p)
    groups = [{"params": plain, "lr": lr, "weight_decay": weight_decay}] if plain else []
    for key, params in special.items():
        groups.append({"params": params, "lr": lr, "weight_decay": weight_decay, **dict(key)})
    return groups
