"""The whole training step as one compiled function.

One call of :class:`WholeStep` runs, in a single graph traced by ``torch.compile`` with
``fullgraph=True`` (so it cannot fall apart into pieces with Python between them):

1. the augmentation (crop and flip, from draws made by the loader's generator) and the
   normalisation of a uint8 batch;
2. the forward pass and the loss, through ``torch.func.functional_call``; a pruned
   layer's weight is ``weight_orig * weight_mask`` there, as its pruning hook makes it;
3. the backward pass, as ``torch.func.grad_and_value``: a converted layer's autograd
   function (:mod:`nbkit.rules.functions`) sends δ through B and fills B's gradient,
   so the rule's B update is part of the graph;
4. the optimizer update with torch's own functional SGD and Adam (the very functions
   ``torch.optim.SGD`` and ``torch.optim.Adam`` call), on the optimizer's own state
   tensors, with the learning rate a tensor (a schedule needs no recompilation);
5. BatchNorm's running statistics, the running loss and accuracy sums, and the step
   number of the first non-finite loss, all updated in place on the device.

Nothing in it reads a value back to the host, so on a GPU the step can be one CUDA
graph (``mode="reduce-overhead"``). The optimizer object stays the source of truth:
its momentum buffers and Adam moments are updated in place, so checkpoints, a
learning-rate schedule and a later eager step all see the same state.

What it cannot take (:func:`unsupported` says why, and :func:`nbkit.train.iter_fit`
then compiles only the model): optimizers other than SGD (dampening 0) and Adam
(without amsgrad), callbacks with an ``after_backward`` hook (the whole step never
stores ``.grad``), and direct feedback alignment (its layers read the output error
of the current call from Python state).

Two differences from the eager loop, both documented where they matter: every
parameter that requires grad gets a gradient (zero for a parameter the loss does not
use, which weight decay then shrinks; the eager SGD skips parameters without a
``.grad``), and weight mirror's white-noise inputs come from the compiler's random
generator (same distribution, other draws; ``torch._inductor.config.fallback_random =
True`` makes them the eager ones).
"""

from __future__ import annotations

import itertools
import types
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value
from torch.optim.adam import adam as _adam
from torch.optim.sgd import sgd as _sgd

from . import layers
from .pruning.masks import pruned_attributes

__all__ = ["WholeStep", "unsupported"]


def _optimizers(optimizer) -> list:
    return list(getattr(optimizer, "optimizers", [optimizer]))


def unsupported(model: nn.Module, optimizer, callbacks=()) -> str | None:
    """Why :class:`WholeStep` cannot train ``model`` with ``optimizer`` and
    ``callbacks``, or None when it can."""
    from .rules.layers import FeedbackLayer

    for o in _optimizers(optimizer):
        kind = type(o)
        if kind not in (torch.optim.SGD, torch.optim.Adam):
            return (f"the optimizer is a {kind.__name__}; the compiled whole step runs "
                    "torch's SGD and Adam only")
        for g in o.param_groups:
            if kind is torch.optim.SGD and g.get("dampening", 0):
                return "SGD with dampening is not supported by the compiled whole step"
            if kind is torch.optim.Adam and (g.get("amsgrad") or g.get("decoupled_weight_decay")
                                            or g.get("differentiable")):
                return "Adam with amsgrad or decoupled weight decay is not supported"
            if g.get("maximize"):
                return "an optimizer with maximize=True is not supported"
    for cb in callbacks:
        if getattr(cb, "after_backward", None) is not None:
            return (f"the callback {type(cb).__name__} has an after_backward hook, which "
                    "reads the gradients; the compiled whole step never stores .grad")
    for name, m in model.named_modules():
        if isinstance(m, FeedbackLayer) and m.direct:
            return (f"layer {name!r} learns by direct feedback alignment, whose layers "
                    "read the output error of the current call from Python state")
    names = {id(p) for p in model.parameters()}
    for o in _optimizers(optimizer):
        for g in o.param_groups:
            if any(id(p) not in names for p in g["params"]):
                return "the optimizer holds tensors that are not parameters of the model"
    return None


_made = itertools.count()


def _own_code(method):
    """``method`` bound to a copy of its function with a code object of its own.
    torch.compile keeps its compiled graphs on the code object, a bounded number per
    code object; one code object per :class:`WholeStep` keeps a sweep that trains many
    models in one process from exhausting that bound (and frees the graphs with the
    step)."""
    fn = method.__func__
    name = f"{fn.__name__}_{next(_made)}"
    renamed = {"co_qualname": name} if hasattr(fn.__code__, "co_qualname") else {}
    code = fn.__code__.replace(co_name=name, **renamed)
    copy = types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    return types.MethodType(copy, method.__self__)


class WholeStep:
    """One optimizer step of ``model`` as one compiled function (see the module
    docstring).

    Args:
        model: the model (pruned or converted models included), in train mode.
        optimizer: a ``torch.optim.SGD``, ``torch.optim.Adam`` or
            :class:`nbkit.train.Optimizers` of them, over the model's parameters; every
            group needs an ``initial_lr`` (the learning rate a schedule scales).
        finish: ``finish(x, draws)`` turns a raw batch into the model's input, inside
            the graph (the loop passes :meth:`nbkit.data.Batches.finish`); None: the
            batch is the input as it is.
        autocast: the autocast context of the loop (or None).
        label_smoothing: of the cross-entropy loss.
        mode: the ``torch.compile`` mode (``"reduce-overhead"`` for CUDA graphs).
        strict: for the training loop: raise, rather than fall back to compiling only
            the model, when the step cannot be captured in one graph.

    Call it with a raw batch ``(x, y, draws)`` (from :meth:`nbkit.data.Batches.raw`), the
    learning-rate factor of this step and the counters ``(loss sums, correct counts,
    first bad step or None, step number)``: lists of tensors the batch's summed loss and
    correct count are added to, and two long tensors. It returns ``(loss, x)``: the
    batch's mean loss (detached) and the input the model saw. Call :meth:`prepare` once
    before the first step. Under CUDA graphs (``"reduce-overhead"``) both live in the
    graph's memory until the next step: clone them to keep them longer (torch raises
    if an overwritten one is read).
    """

    def __init__(self, model: nn.Module, optimizer, finish=None, *, autocast=None,
                 label_smoothing: float = 0.0, mode: str | None = None, strict: bool = True):
        why = unsupported(model, optimizer)
        if why is not None:
            raise ValueError(f"cannot compile the whole training step: {why}. Pass "
                             "compile='model' to compile only the model")
        self.model, self.optimizer, self.finish = model, optimizer, finish
        self.strict, self.mode = strict, mode
        self.autocast = autocast or nullcontext()
        self.label_smoothing = float(label_smoothing)
        self.device = next(model.parameters()).device
        self.scale = torch.ones((), device=self.device)
        self.groups = self._groups()
        self._tensors = None  # (trainable, frozen, buffers, optimizer state): prepare()
        # the public name of a pruned weight (``conv.weight``), computed inside the call
        # from its ``weight_orig`` and ``weight_mask``; naming it lets functional_call
        # restore the module's own attribute afterwards
        self.pruned = {}
        for mod_name, _, attr in pruned_attributes(model):
            prefix = f"{mod_name}." if mod_name else ""
            self.pruned[prefix + attr] = (f"{prefix}{attr}_orig", f"{prefix}{attr}_mask")
        self.compiled = torch.compile(_own_code(self._step), fullgraph=True, mode=mode)

    def _groups(self) -> list[tuple]:
        names = {id(p): n for n, p in self.model.named_parameters()}
        out = []
        for o in _optimizers(self.optimizer):
            for g in o.param_groups:
                params = [p for p in g["params"] if p.requires_grad]
                out.append((o, g, [names[id(p)] for p in params], params))
        return out

    @torch.no_grad()
    def prepare(self) -> None:
        """Create the optimizer state the update works on, where the optimizer has none
        yet (zeros, which gives exactly the eager first step: dampening is 0), move
        Adam's step counts to the parameters' device, and gather the tensors every call
        passes. Call it before the first step, and again after the model's or the
        optimizer's tensors were replaced (loading a checkpoint)."""
        for o, g, _, params in self.groups:
            if "initial_lr" not in g:
                raise ValueError("every optimizer group needs an 'initial_lr' (the learning "
                                 "rate that the step's factor scales); set "
                                 "group['initial_lr'] = group['lr']")
            for p in params:
                state = o.state[p]
                if isinstance(o, torch.optim.SGD):
                    if g["momentum"] and state.get("momentum_buffer") is None:
                        state["momentum_buffer"] = torch.zeros_like(
                            p, memory_format=torch.preserve_format)
                else:
                    if "step" not in state:
                        state["step"] = torch.zeros((), dtype=torch.float32)
                        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                        state["exp_avg_sq"] = torch.zeros_like(
                            p, memory_format=torch.preserve_format)
                    state["step"] = state["step"].to(p.device, torch.float32)
                self.keep(*(v for v in state.values() if torch.is_tensor(v)))
        self.keep(self.scale, *self.model.buffers())
        named = dict(self.model.named_parameters())
        self._tensors = ({n: p for n, p in named.items() if p.requires_grad},
                         {n: p for n, p in named.items() if not p.requires_grad},
                         dict(self.model.named_buffers()), self._states())

    def keep(self, *tensors) -> None:
        """Tell the compiler that ``tensors`` (the loop's counters, passed to every call)
        keep their address, as parameters, buffers and optimizer state do: a CUDA graph
        then updates them in place instead of copying them in and out."""
        for t in tensors:
            if t is not None:
                torch._dynamo.mark_static_address(t)

    def _states(self) -> list[list]:
        out = []
        for o, _g, _, params in self.groups:
            if isinstance(o, torch.optim.SGD):
                out.append([[o.state[p].get("momentum_buffer") for p in params]])
            else:
                out.append([[o.state[p][k] for p in params]
                            for k in ("exp_avg", "exp_avg_sq", "step")])
        return out

    def __call__(self, x, y, draws, scale: float, counters):
        if self._tensors is None:
            raise RuntimeError("call prepare() once before the first step")
        self.scale.fill_(scale)
        return self.compiled(*self._tensors, x, y, draws, self.scale, counters)

    def _loss(self, trainable, frozen, buffers, x, y):
        tensors = {**frozen, **trainable, **buffers}
        for public, (orig, mask) in self.pruned.items():
            tensors[public] = tensors[orig] * tensors[mask]
        with self.autocast:
            out = layers.logits(functional_call(self.model, tensors, (x,)), "fit")
            loss = F.cross_entropy(out.float(), y, label_smoothing=self.label_smoothing)
        return loss, out.detach()

    def _step(self, trainable, frozen, buffers, states, x, y, draws, scale, counters):
        if self.finish is not None:
            x = self.finish(x, draws)
        grads, (loss, out) = grad_and_value(self._loss, has_aux=True)(
            trainable, frozen, buffers, x, y)
        with torch.no_grad():
            for (o, g, names, params), state in zip(self.groups, states):
                if not params:
                    continue
                lr = g["initial_lr"] * scale
                gs = [grads[n] for n in names]
                if isinstance(o, torch.optim.SGD):
                    _sgd(params, gs, state[0], foreach=True, weight_decay=g["weight_decay"],
                         momentum=g["momentum"], lr=lr, dampening=0.0,
                         nesterov=g["nesterov"], maximize=False)
                else:
                    _adam(params, gs, state[0], state[1], [], state[2], foreach=True,
                          capturable=True, amsgrad=False, beta1=g["betas"][0],
                          beta2=g["betas"][1], lr=lr, weight_decay=g["weight_decay"],
                          eps=g["eps"], maximize=False)
            loss = loss.detach()
            batch_loss = loss * y.shape[0]
            batch_correct = (out.argmax(1) == y).sum()
            sums, corrects, bad_step, step_no = counters
            for t in sums:
                t.add_(batch_loss)
            for t in corrects:
                t.add_(batch_correct)
            step_no.add_(1)
            if bad_step is not None:
                bad_step.copy_(torch.where((bad_step == 0) & ~torch.isfinite(loss),
                                           step_no, bad_step))
        return loss, x
