"""Binary masks on parameters, stored the way ``torch.nn.utils.prune`` stores them.

A pruned parameter ``weight`` of a module becomes three things, exactly as in
``torch.nn.utils.prune``:

- ``weight_orig``: the original ``nn.Parameter`` (the same object, so an optimizer
  built before pruning keeps training it);
- ``weight_mask``: a buffer of 0s and 1s, saved in ``state_dict()``;
- a forward pre-hook that sets ``module.weight = weight_orig * weight_mask`` before
  every forward.

Masked weights therefore compute as exact zeros in every forward, whatever an
optimizer does to ``weight_orig``; their gradient is zero too, and nbkit also zeroes
the masked entries of ``weight_orig`` so that weight decay and momentum keep them at
zero. ``torch.nn.utils.prune.is_pruned`` and ``prune.remove`` work on these modules,
and masks made by ``torch.nn.utils.prune`` itself are understood here. One addition:
a forward hook detaches ``module.weight`` after each forward, so that a pruned model
can be deep-copied after training (plain ``torch.nn.utils.prune`` cannot).

Users see the names of the unpruned model: ``masks(model)`` is keyed by
``"layers.0.conv.weight"``, never ``"layers.0.conv.weight_orig"``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune

from .. import layers as _layers

__all__ = ["prunable_parameters", "masks", "apply_masks", "remove", "load_state_dict",
           "is_pruned", "locate", "pruned_attributes", "kept_pruned_attributes",
           "hook_disabled", "aliases"]

_PRUNABLE_OPTIONS = ("bias", "batchnorm", "final")


def locate(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """Split ``"layers.0.conv.weight"`` into (the submodule, ``"weight"``)."""
    path, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError as e:
        raise ValueError(f"the model has no submodule {path!r} (from parameter name {name!r})"
                         ) from e
    return module, attr


def _hooks(module: nn.Module) -> list:
    """``(key, hook)`` of every ``torch.nn.utils.prune`` pre-hook of ``module``. The one
    place in nbkit that reads torch's private hook dict."""
    return [(key, hook) for key, hook in module._forward_pre_hooks.items()
            if isinstance(hook, torch_prune.BasePruningMethod)]


def _pruning_hook(module: nn.Module, attr: str):
    """The (key, hook) of the ``torch.nn.utils.prune`` pre-hook that masks ``attr``."""
    for key, hook in _hooks(module):
        if hook._tensor_name == attr:
            return key, hook
    return None, None


def pruned_attributes(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(module name, module, attribute)`` of every masked tensor of ``model`` (the
    attribute is ``"weight"`` for a pruned ``module.weight``)."""
    return [(name, module, hook._tensor_name) for name, module in model.named_modules()
            for _, hook in _hooks(module)]


@contextmanager
def kept_pruned_attributes(model: nn.Module):
    """Run the block, then put back the plain ``module.<attr>`` tensors that the pruning
    hooks set as a side effect of each forward (or remove them when there were none),
    so that a forward pass or a re-initialisation inside the block leaves no trace."""
    saved = [(m, attr, m.__dict__.get(attr)) for _, m, attr in pruned_attributes(model)]
    try:
        yield saved
    finally:
        for module, attr, value in saved:
            if value is None:
                module.__dict__.pop(attr, None)
            else:
                module.__dict__[attr] = value


@contextmanager
def hook_disabled(module: nn.Module, attr: str):
    """Switch off the pruning hook of ``module.<attr>`` inside the block (so that a
    tensor set as ``module.<attr>`` is used as it is). ValueError if there is none."""
    key, hook = _pruning_hook(module, attr)
    if key is None:
        raise ValueError(f"{type(module).__name__}.{attr} is not pruned")
    module._forward_pre_hooks[key] = _noop_hook
    try:
        yield
    finally:
        module._forward_pre_hooks[key] = hook


def _noop_hook(module, args):
    return None


def is_pruned(module: nn.Module, attr: str = "weight") -> bool:
    """True if ``module.<attr>`` carries a mask (``<attr>_orig`` and ``<attr>_mask``)."""
    return (f"{attr}_orig" in module._parameters and f"{attr}_mask" in module._buffers
            and _pruning_hook(module, attr)[0] is not None)


class DetachAfterForward:
    """Forward hook that replaces ``module.<attr>`` (set by the pruning pre-hook to
    ``<attr>_orig * <attr>_mask``, a non-leaf tensor) by its detached value once the
    forward is done. The autograd graph already holds the non-leaf; the module keeps a
    leaf, so ``copy.deepcopy(model)`` works after a training step."""

    def __init__(self, attr: str):
        self.attr = attr

    def __call__(self, module, inputs, output):
        value = module.__dict__.get(self.attr)
        if torch.is_tensor(value) and f"{self.attr}_orig" in module._parameters:
            # unconditional (no look at grad_fn, which torch.compile cannot trace: one
            # graph break per pruned layer); detaching a leaf is a cheap no-op
            module.__dict__[self.attr] = value.detach()


def _detach_hooks(module: nn.Module, attr: str):
    return [k for k, h in module._forward_hooks.items()
            if isinstance(h, DetachAfterForward) and h.attr == attr]


def _default_candidates(model: nn.Module, bias: bool, batchnorm: bool, final: bool):
    """Every weight of every layer kind pruning supports (:mod:`nbkit.layers`), in model
    order; a tensor shared by several modules once, under its first name."""
    _layers.refuse(model, "pruning", what="cannot prune this model as it is")
    found = {id(m): kind for _, m, kind in _layers.weight_layers(model)}
    final_module = None
    if not final:
        final_module = next((m for _, m, _ in reversed(_layers.weight_layers(model))), None)
    seen = set()
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        kind = found.get(id(module))
        if kind is not None:
            if module is final_module:
                continue
            attrs = kind.weights(module)
            if bias and isinstance(getattr(module, "bias", None), torch.Tensor):
                attrs = (*attrs, "bias")
        elif batchnorm and isinstance(module, nn.modules.batchnorm._BatchNorm):
            attrs = ("weight", "bias")
        else:
            continue
        for attr in attrs:
            param = _parameter(module, attr)
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                yield prefix + attr, param


def _parameter(module: nn.Module, attr: str):
    """The trainable tensor behind ``module.<attr>``: ``<attr>_orig`` when pruned."""
    if is_pruned(module, attr):
        return module._parameters[f"{attr}_orig"]
    return module._parameters.get(attr)


def prunable_parameters(model: nn.Module, prunable=None) -> OrderedDict[str, nn.Parameter]:
    """The parameters that pruning may mask, in model order, as ``{name: Parameter}``.

    Names are those of the unpruned model (``"fc.weight"``); for a parameter that is
    already pruned the value is the underlying ``fc.weight_orig`` Parameter.

    Args:
        prunable: what to prune.
            - ``None``: every weight of every layer kind that pruning supports
              (:data:`nbkit.layers.KINDS`: Linear, Conv1d/2d/3d, ConvTranspose,
              Bilinear, Embedding and multi-head attention's projections), the final
              layer included (the paper's default). Subclasses count too, so a layer
              converted by ``nbkit.rules`` contributes its ``weight`` and nothing else.
              A layer it cannot prune (recurrent weights, a weight computed by
              ``weight_norm``) is an error naming it; a tensor shared by several modules
              (tied weights) is one entry with one mask.
            - a dict of options: ``bias=True`` adds Linear/Conv2d biases,
              ``batchnorm=True`` adds BatchNorm weights and biases, ``final=False``
              leaves the final Linear/Conv2d layer (last in ``model.modules()``) dense.
            - an iterable of parameter names, e.g. ``["layers.0.conv.weight"]``.
    """
    if prunable is None:
        prunable = {}
    if isinstance(prunable, Mapping):
        unknown = set(prunable) - set(_PRUNABLE_OPTIONS)
        if unknown:
            raise ValueError(f"unknown prunable option(s) {sorted(unknown)}; valid options are "
                             f"{list(_PRUNABLE_OPTIONS)}, or pass a list of parameter names")
        opts = {"bias": False, "batchnorm": False, "final": True, **prunable}
        return OrderedDict(_default_candidates(model, bool(opts["bias"]),
                                               bool(opts["batchnorm"]), bool(opts["final"])))
    if isinstance(prunable, str) or not isinstance(prunable, Iterable):
        raise ValueError("prunable must be None, a dict of options (bias/batchnorm/final) or a "
                         f"list of parameter names, got {prunable!r}")
    out = OrderedDict()
    for name in prunable:
        module, attr = locate(model, name)
        param = _parameter(module, attr)
        kind = _layers.kind_of(module)
        if kind is not None and kind.pruning is not None and attr in kind.weights(module):
            raise _layers.UnsupportedLayerError(
                f"cannot prune {name!r} ({type(module).__name__}): {kind.pruning}")
        if param is None and (parametrize.is_parametrized(module, attr)
                              or hasattr(module, f"{attr}_g")):
            raise _layers.UnsupportedLayerError(
                f"cannot prune {name!r}: it is computed by a parametrization (weight_norm, "
                "spectral_norm); remove it first (torch.nn.utils.parametrize."
                "remove_parametrizations)")
        if param is None:
            valid = [n for n, _ in _public_named_parameters(model)]
            raise ValueError(f"{name!r} is not a parameter of the model; valid names include "
                             f"{valid[:6]}{' ...' if len(valid) > 6 else ''}")
        out[name] = param
    return out


def _public_named_parameters(model: nn.Module):
    """``model.named_parameters()`` with ``*_orig`` renamed back to the public name."""
    for name, param in model.named_parameters():
        if name.endswith("_orig"):
            module, attr = locate(model, name)
            if is_pruned(module, attr[:-5]):
                name = name[:-5]
        yield name, param


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current masks as ``{name: bool tensor}`` for every masked parameter.

    Keys are the names of the unpruned model; an unpruned model gives ``{}``.
    """
    out, seen = {}, set()
    for mod_name, module, attr in pruned_attributes(model):
        if is_pruned(module, attr):
            buf = module._buffers[f"{attr}_mask"]
            if id(buf) in seen:  # a tied weight: one mask, under its first name
                continue
            seen.add(id(buf))
            prefix = f"{mod_name}." if mod_name else ""
            out[prefix + attr] = buf.detach() != 0
    return out


def aliases(model: nn.Module) -> dict[str, list[str]]:
    """``{name: [other names of the same tensor]}`` for tied weights (one Parameter held
    by several modules), by the names of the unpruned model; others are left out."""
    groups: dict[int, list[str]] = {}
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for key, p in module._parameters.items():
            if p is None:
                continue
            attr = key[:-5] if key.endswith("_orig") and is_pruned(module, key[:-5]) else key
            groups.setdefault(id(p), []).append(prefix + attr)
    return {n: [o for o in names if o != n] for names in groups.values() if len(names) > 1
            for n in names}


class RefreshMasked:
    """Forward pre-hook on a module that reads other modules' masked weights directly:
    multi-head attention reads its ``out_proj.weight`` without calling ``out_proj``, and
    a transformer layer's inference fast path reads attention's weights without calling
    it. Before the reader runs, each ``weight = weight_orig * weight_mask`` is recomputed
    (unless its hook is switched off, as while scoring), so masks hold, gradients reach
    ``weight_orig`` and a loaded checkpoint is used at once."""

    def __init__(self):
        self.targets: list[tuple[nn.Module, str]] = []

    def __call__(self, module, inputs):
        for target, attr in self.targets:
            _, hook = _pruning_hook(target, attr)
            if hook is not None:
                setattr(target, attr, hook.apply_mask(target))


class DetachMasked:
    """Forward hook, the pair of :class:`RefreshMasked`: detach what it set once the
    reader is done (as :class:`DetachAfterForward` does for a module's own weight)."""

    def __init__(self, refresh: RefreshMasked):
        self.refresh = refresh

    def __call__(self, module, inputs, output):
        for target, attr in self.refresh.targets:
            value = target.__dict__.get(attr)
            if torch.is_tensor(value) and f"{attr}_orig" in target._parameters:
                target.__dict__[attr] = value.detach()


def _refresh_on(reader: nn.Module, target: nn.Module, attr: str) -> None:
    refresh = next((h for h in reader._forward_pre_hooks.values()
                    if isinstance(h, RefreshMasked)), None)
    if refresh is None:
        refresh = RefreshMasked()
        reader.register_forward_pre_hook(refresh, prepend=True)
        reader.register_forward_hook(DetachMasked(refresh))
    if not any(t is target and a == attr for t, a in refresh.targets):
        refresh.targets.append((target, attr))


def _readers(model: nn.Module) -> dict[int, list[nn.Module]]:
    """``{id(module): [modules that read its weights without calling it]}``: the
    attention module around an out_proj, and the model itself for attention's weights
    (a transformer layer's fast path reads them directly)."""
    out: dict[int, list[nn.Module]] = {}
    for child, parent in _layers.read_by_parent(model).items():
        out[id(model.get_submodule(child))] = [model.get_submodule(parent), model]
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention) and m is not model:
            out[id(m)] = [model]
    return out


@torch.no_grad()
def apply_masks(model: nn.Module, new_masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Mask the named parameters in place; masks compose (a kept weight needs every mask).

    ``new_masks`` maps parameter names (as in :func:`masks`) to bool tensors of the
    parameter's shape. Unpruned parameters get the ``torch.nn.utils.prune`` machinery;
    pruned ones have their mask ANDed. Masked entries of ``<attr>_orig`` are set to 0.
    """
    resolved = []
    tied, readers = aliases(model), _readers(model)
    for name, mask in new_masks.items():  # validate everything first
        module, attr = locate(model, name)
        param = _parameter(module, attr)
        if param is None:
            raise ValueError(f"cannot mask {name!r}: the model has no such parameter")
        mask = torch.as_tensor(mask)
        if tuple(mask.shape) != tuple(param.shape):
            raise ValueError(f"mask for {name!r} has shape {tuple(mask.shape)}, "
                             f"the parameter has {tuple(param.shape)}")
        mask = mask.to(device=param.device, dtype=torch.bool)
        # a tied weight: every module holding the tensor gets the same mask buffer
        holders = [(module, attr)] + [locate(model, other) for other in tied.get(name, [])]
        resolved.append((holders, mask))
    for holders, mask in resolved:
        shared_buf = None
        for module, attr in holders:
            if is_pruned(module, attr):
                buf = module._buffers[f"{attr}_mask"]
                if shared_buf is None:
                    buf.mul_(mask.to(buf.dtype))
                    shared_buf = buf
                else:
                    module._buffers[f"{attr}_mask"] = shared_buf
                _, hook = _pruning_hook(module, attr)
            else:
                torch_prune.custom_from_mask(module, attr, mask)
                _, hook = _pruning_hook(module, attr)
                hook.mask = None  # only read when first applied; do not keep a second copy
                if shared_buf is None:
                    shared_buf = module._buffers[f"{attr}_mask"]
                else:
                    module._buffers[f"{attr}_mask"] = shared_buf
            if not _detach_hooks(module, attr):
                module.register_forward_hook(DetachAfterForward(attr))
            for reader in readers.get(id(module), ()):
                _refresh_on(reader, module, attr)
            orig = module._parameters[f"{attr}_orig"]
            orig.mul_(module._buffers[f"{attr}_mask"].to(orig.dtype))
            setattr(module, attr, hook.apply_mask(module))
    return model


def remove(model: nn.Module) -> nn.Module:
    """Make every mask permanent: ``weight = weight_orig * weight_mask`` becomes a plain
    Parameter again (the same Parameter object as ``weight_orig``) and the mask and hook
    go away. Pruned weights stay exactly zero but are no longer held at zero by training."""
    for _, module, attr in pruned_attributes(model):
        torch_prune.remove(module, attr)
        for key in _detach_hooks(module, attr):
            del module._forward_hooks[key]
    for module in model.modules():
        for hooks in (module._forward_pre_hooks, module._forward_hooks):
            for key in [k for k, h in hooks.items()
                        if isinstance(h, (RefreshMasked, DetachMasked))]:
                del hooks[key]
    return model


def load_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict=True):
    """``model.load_state_dict`` that also accepts the state of a pruned model when
    ``model`` is not pruned (yet): every ``<name>_mask`` in ``state_dict`` first gets an
    all-ones mask on ``model``, then the state (masks included) is loaded."""
    pending = {}
    for key, value in state_dict.items():
        if key.endswith("_mask") and key[:-5] + "_orig" in state_dict:
            name = key[:-5]
            module, attr = locate(model, name)
            if not is_pruned(module, attr) and _parameter(module, attr) is not None:
                pending[name] = torch.ones(value.shape, dtype=torch.bool)
    apply_masks(model, pending)
    return model.load_state_dict(state_dict, strict=strict)
