"""The training loop: GPU-resident batches, SGD with Nesterov momentum, a learning-rate
schedule, bf16 autocast on CUDA, evaluation each epoch, a progress bar, callbacks and a
plain-dict history that plots can take directly.

>>> history = fit(model, "cifar10-mini", epochs=3, lr=0.05)
>>> history["test_acc"][-1]

Callbacks are objects with any of these methods, each called with the loop's
:class:`State`: ``on_fit_start``, ``after_backward`` (gradients ready, before the
optimizer step), ``after_step`` (after the optimizer step), ``on_epoch_end`` and
``on_fit_end``. A plain function is called as ``after_step``.

:func:`iter_fit` is the same loop as a generator that hands back the :class:`State`
every few steps, for apps that draw a run while it trains.
"""

from __future__ import annotations

import math
import numbers
import os
import time
import warnings
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import data as _data
from . import layers
from . import step as _step
from .device import get as get_device

__all__ = ["fit", "iter_fit", "evaluate", "param_groups", "make_optimizer", "Optimizers",
           "State", "NonFiniteLoss", "checkpoint_epoch",
           "SCHEDULES", "RECIPES", "steps_per_epoch"]

HOOKS = ("on_fit_start", "after_backward", "after_step", "on_epoch_end", "on_fit_end")

# Device types whose training loss is checked for NaN at every step (reading it costs no
# host synchronisation there); on the others the first bad step is recorded on the device
# and read at the epoch's end and before each yield.
EAGER_NONFINITE_CHECK = ("cpu",)


@dataclass
class State:
    """What callbacks see. ``history`` is the dict that :func:`fit` returns; callbacks may
    add keys to it (lists of JSON-friendly values). ``seen``, ``loss_sum`` and
    ``correct`` count the training examples, their summed loss and their correct
    predictions since the start (tensors on the device: read them when logging)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    history: dict
    total_steps: int
    step: int = 0
    epoch: int = 0
    batch: tuple | None = None
    loss: torch.Tensor | None = None
    lr: float = 0.0
    seen: int = 0
    loss_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


class NonFiniteLoss(ValueError):
    """The training loss became NaN or infinite. ``step`` is the optimizer step (counted
    from 1) whose loss was not finite, ``epoch`` its epoch, and ``history`` the history
    dict up to the last evaluation before it (what :func:`fit` would have returned had
    training stopped there)."""

    def __init__(self, message: str, *, step: int, epoch: int, history: dict):
        super().__init__(message)
        self.step, self.epoch, self.history = step, epoch, history


def _nonfinite_error(step: int, epoch: int, n_epochs: int, what: str, history: dict,
                     lr) -> NonFiniteLoss:
    done = history["epoch"]
    kept = (f"the history up to the last good evaluation (epoch {done[-1]}, step "
            f"{history['step'][-1]}) is in this exception's .history" if done else
            "no evaluation had been made yet, so this exception's .history is empty")
    return NonFiniteLoss(
        f"the training loss became {what} at step {step} (epoch {epoch} of {n_epochs}); "
        f"training stopped and {kept}. Lower the learning rate (lr={lr:g}), check the "
        "training images and labels for NaN or extreme values, and for a model converted "
        "by nbkit.rules check the rule's coefficients (a large one can make training "
        "diverge). Pass on_nonfinite='continue' to train on regardless.",
        step=step, epoch=epoch, history=history)


def _check_number(name: str, value, *, positive: bool = False) -> None:
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value) and (value > 0 if positive else value >= 0))
    if not ok:
        need = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"{name} must be {need}, got {value!r}")


def _check_count(name: str, value, *, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a positive int{extra}, got {value!r}")


def param_groups(model: nn.Module, lr: float, weight_decay: float, *,
                 skip=frozenset()) -> list[dict]:
    """Optimizer parameter groups: one for ordinary parameters (with ``weight_decay``),
    and one per distinct ``param.optim`` dict for parameters that carry such overrides
    (feedback matrices of learning rules use it to skip weight decay, or to set their own
    learning rate or optimizer). Parameters whose ``id`` is in ``skip`` are left out."""
    from .rules.convert import group_by_optim

    return group_by_optim(model, lr, weight_decay, skip)


class Optimizers:
    """Several torch optimizers stepped as one (SGD for the network, Adam for the
    feedback matrices that ask for it). ``param_groups`` lists every group, so a
    learning-rate schedule and :class:`nbkit.rules.NoisyUpdates` see them all."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = [o for o in optimizers if o is not None]

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)


def make_optimizer(model: nn.Module, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                   device=None):
    """SGD with (Nesterov) momentum over :func:`param_groups`, fused on CUDA; the groups
    whose ``optim`` asks for ``"optimizer": "adam"`` (a learning rule's B under the quick
    preset) get an Adam of their own, with their own lr, and both step as one
    (:class:`Optimizers`)."""
    dev = get_device(device) if device is not None else next(model.parameters()).device
    kwargs = {"fused": True} if dev.type == "cuda" else {"foreach": True}
    groups = param_groups(model, lr, weight_decay)
    for g in groups:
        g["initial_lr"] = g["lr"]
    unknown = sorted({g.get("optimizer", "sgd") for g in groups} - {"sgd", "adam"})
    if unknown:
        raise ValueError(f"unknown optimizer(s) {unknown} in a parameter's optim dict; use "
                         "'sgd' or 'adam'")
    sgd = [g for g in groups if g.get("optimizer", "sgd") == "sgd"]
    adam = [{k: v for k, v in g.items() if k != "optimizer"} for g in groups
            if g.get("optimizer") == "adam"]
    first = torch.optim.SGD(sgd, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                            weight_decay=weight_decay, **kwargs) if sgd else None
    if not adam:
        return first
    return Optimizers(first, torch.optim.Adam(adam, lr=adam[0]["lr"], **kwargs))


def _cosine(t, total, _milestones, _gamma):
    return 0.5 * (1 + math.cos(math.pi * min(t, total) / total))


def _multistep(t, _total, milestones, gamma):
    return gamma ** sum(t >= m for m in milestones)


def _constant(*_):
    return 1.0


SCHEDULES = {"cosine": _cosine, "multistep": _multistep, "constant": _constant}

# Training recipes: keyword arguments of :func:`fit`.
RECIPES = {
    # The SynFlow paper's VGG recipe: 160 epochs, lr 0.1 x0.1 at epochs 60 and 120.
    "paper": dict(epochs=160, batch_size=128, lr=0.1, momentum=0.9, nesterov=True,
                  weight_decay=1e-4, schedule="multistep", milestones=[60, 120], gamma=0.1),
    # Shortened, sized to train all 16 vgg16_bn runs in about a quarter of an hour of
    # one GPU: 30 epochs with a cosine schedule, batch 512 (a quarter of the optimizer
    # steps, each one less dominated by per-kernel launch cost) at lr 0.2, and weight
    # decay 5e-4, the usual value for short CIFAR schedules.
    "short": dict(epochs=30, batch_size=512, lr=0.2, momentum=0.9, nesterov=True,
                  weight_decay=5e-4, schedule="cosine", milestones=[], gamma=0.1),
    # Shortened for the learning rules: 20 epochs, cosine, batch 256 at lr 0.1; weight
    # decay as in the ResNet recipe.
    "short_rules": dict(epochs=20, batch_size=256, lr=0.1, momentum=0.9, nesterov=True,
                        weight_decay=1e-4, schedule="cosine", milestones=[], gamma=0.1),
    # The usual CIFAR ResNet recipe (He et al. 2016).
    "resnet": dict(epochs=160, batch_size=128, lr=0.1, momentum=0.9, nesterov=True,
                   weight_decay=1e-4, schedule="multistep", milestones=[80, 120], gamma=0.1),
    # CPU demo on the mini dataset (the quick variants cap it at a few dozen steps).
    "quick": dict(epochs=1, batch_size=128, lr=0.05, momentum=0.9, nesterov=True,
                  weight_decay=5e-4, schedule="cosine", milestones=[], gamma=0.1),
}


def steps_per_epoch(recipe: dict, train_images: int = 50_000) -> int:
    """Optimizer steps per epoch of ``recipe`` (the last partial batch is dropped)."""
    return train_images // recipe["batch_size"]


def _resolve_data(data, device):
    if isinstance(data, str):
        return _data.load(data)
    if isinstance(data, _data.Dataset):
        return data
    raise ValueError("data must be a dataset name such as 'cifar10-mini' or an "
                     f"nbkit.data.Dataset, got {type(data).__name__}; wrap your own images "
                     "with nbkit.data.from_tensors(x_train, y_train, x_test, y_test)")


@torch.no_grad()
def evaluate(model: nn.Module, data, split="test", *, batch_size=1000, device=None,
             amp=None, max_batches=None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on one split (in eval mode; the
    model's train/eval mode is restored afterwards)."""
    dev = get_device(device) if device is not None else next(model.parameters()).device
    ds = _resolve_data(data, dev)
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    n = 0
    ctx = _autocast(dev, amp)
    try:
        for i, (x, y) in enumerate(ds.loader(split, batch_size, shuffle=False, augment=False,
                                             drop_last=False, device=dev, seed=0)):
            if max_batches is not None and i >= max_batches:
                break
            with ctx:
                out = layers.logits(model(x), "evaluation")
            loss += F.cross_entropy(out.float(), y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
            n += len(y)
    finally:
        model.train(was_training)
    return loss.item() / max(n, 1), correct.item() / max(n, 1)


def _autocast(dev, amp):
    use = (dev.type == "cuda") if amp is None else bool(amp)
    if not use:
        return nullcontext()
    return torch.autocast(dev.type, dtype=torch.bfloat16)


def _call(callbacks, hook, state):
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is None and hook == "after_step" and callable(cb) and not hasattr(cb, HOOKS[0]):
            fn = cb
        if fn is not None:
            fn(state)


def _after_step(state: State, callbacks, step: int, batch, loss, lr) -> int:
    step += 1
    state.step, state.batch, state.loss, state.lr = step, batch, loss, lr
    _call(callbacks, "after_step", state)
    return step


COMPILE_TARGETS = ("step", "model")


def _compile_plan(compile, model, opt, batches, dev, ctx, label_smoothing, callbacks):
    """``(whole step or None, the module the eager step calls)`` for ``compile``."""
    if not compile:
        return None, model
    mode = compile if isinstance(compile, str) and compile not in COMPILE_TARGETS else (
        "reduce-overhead" if dev.type == "cuda" else None)
    if compile == "model":
        return None, torch.compile(model, mode=mode)
    why = _step.unsupported(model, opt, callbacks)
    if why is not None:
        if compile == "step":
            raise ValueError(f"cannot compile the whole training step: {why}. Pass "
                             "compile='model' to compile only the model")
        warnings.warn(f"compiling only the model, not the whole training step: {why}",
                      stacklevel=4)
        return None, torch.compile(model, mode=mode)
    whole = _step.WholeStep(model, opt, batches.finish, autocast=ctx,
                            label_smoothing=label_smoothing, mode=mode, strict=compile == "step")
    return whole, model


def _fall_back(error, whole):
    """``(None, the model compiled alone)`` after ``whole`` could not be captured."""
    first = (str(error).splitlines() or [""])[0]
    warnings.warn("torch.compile could not capture the whole training step in one graph "
                  f"({type(error).__name__}: {first}); compiling only the model instead "
                  "(compile='step' raises here instead)", stacklevel=3)
    return None, torch.compile(whole.model, mode=whole.mode)


def fit(model: nn.Module, data="cifar10-mini", epochs: int = 1, **kwargs) -> dict:
    """Train ``model`` on ``data`` and return its history (see :func:`iter_fit` for
    every argument).

    Returns:
        a dict of lists, one entry per evaluation: ``epoch``, ``step``, ``train_loss``,
        ``train_acc``, ``test_loss``, ``test_acc``, ``lr``, ``time`` (seconds of training
        in that epoch), plus ``config`` and whatever callbacks added.

    Raises:
        NonFiniteLoss: a training loss was NaN or infinite (unless
            ``on_nonfinite="continue"``); it carries the ``step``, the ``epoch`` and the
            ``history`` up to the last evaluation before that step.
    """
    (last,) = deque(iter_fit(model, data, epochs, **kwargs), maxlen=1)
    return last.history


# ------------------------------------------------------------------------ checkpoints

CHECKPOINT_FORMAT = "nbkit.train.checkpoint/1"


def checkpoint_epoch(path) -> int | None:
    """The epoch after which the checkpoint at ``path`` was saved, or None when there is
    no readable checkpoint there."""
    path = Path(path)
    if not path.is_file():
        return None
    try:  # mapped, not read: the weights are not needed to know the epoch
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a torn or foreign file is no checkpoint
        return None
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        return None
    return int(saved["epoch"])


def _save_checkpoint(path: Path, state: State, loader, callbacks, bad_step) -> None:
    """Everything the loop needs to go on after ``state.epoch`` as if never stopped,
    written to a temporary file and renamed over ``path`` (atomic)."""
    rng = {"torch": torch.get_rng_state(), "loader": loader.generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    saved = {"format": CHECKPOINT_FORMAT, "epoch": state.epoch, "step": state.step,
             "config": _comparable(state.history["config"]),
             "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
             "history": state.history, "rng": rng,
             "counters": {"seen": state.seen, "loss_sum": state.loss_sum,
                          "correct": state.correct, "bad_step": bad_step},
             "callbacks": {str(i): cb.state_dict() for i, cb in enumerate(callbacks)
                           if callable(getattr(cb, "state_dict", None))}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(saved, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _comparable(config: dict) -> dict:
    """The training configuration a checkpoint must match (the device may differ)."""
    return {k: v for k, v in config.items() if k != "device"}


def _load_checkpoint(path: Path, state: State, loader, callbacks, bad_step) -> int:
    """Restore the loop from ``path`` and return its epoch (see :func:`_save_checkpoint`).
    """
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read the checkpoint {path} ({type(e).__name__}: {e}); "
                         "delete it to train from the start") from e
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an nbkit training checkpoint; delete it or pass "
                         "another checkpoint path")
    now = _comparable(state.history["config"])
    if saved["config"] != now:
        then = saved["config"]
        diff = ", ".join(f"{k}: {then.get(k)!r} then, {now.get(k)!r} now"
                         for k in sorted(set(now) | set(then)) if now.get(k) != then.get(k))
        raise ValueError(f"the checkpoint {path} was saved by a different training setup "
                         f"({diff}); delete it to train from the start")
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.history.clear()
    state.history.update(saved["history"])
    dev = state.device
    counters = saved["counters"]
    state.seen = int(counters["seen"])
    state.loss_sum.copy_(counters["loss_sum"])
    state.correct.copy_(counters["correct"])
    if bad_step is not None and counters["bad_step"] is not None:
        bad_step.copy_(counters["bad_step"])
    torch.set_rng_state(saved["rng"]["torch"])
    if "cuda" in saved["rng"] and dev.type == "cuda":
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
    loader.generator.set_state(saved["rng"]["loader"])  # a CPU byte tensor, any device
    for i, cb in enumerate(callbacks):
        if str(i) in saved["callbacks"] and callable(getattr(cb, "load_state_dict", None)):
            cb.load_state_dict(saved["callbacks"][str(i)])
    state.epoch, state.step = int(saved["epoch"]), int(saved["step"])
    return state.epoch


def iter_fit(model: nn.Module, data="cifar10-mini", epochs: int = 1, *,
             steps: int | None = None, batch_size: int = 128, lr: float = 0.1,
             momentum: float = 0.9, nesterov: bool = True, weight_decay: float = 5e-4,
             schedule: str = "cosine", milestones=(), gamma: float = 0.1,
             augment: bool = True, device=None, amp: bool | None = None,
             channels_last: bool | None = None, compile: bool = False, callbacks=(),
             optimizer: torch.optim.Optimizer | None = None, progress: bool = True,
             eval_every: int = 1, eval_batch_size: int = 1000, seed: int | None = None,
             label_smoothing: float = 0.0, every: int | None = None,
             on_nonfinite: str = "raise", checkpoint=None, checkpoint_every: int = 1):
    """Train ``model`` on ``data``; a generator of the loop's :class:`State`.

    Args:
        model: any classifier; pruned (nbkit.pruning) and converted (nbkit.rules) models
            train as they are.
        data: a dataset name (``"cifar10-mini"``, ``"cifar10"``, ``"synthetic"``) or an
            :class:`nbkit.data.Dataset`. Its uint8 images are moved to ``device`` once.
        epochs: passes over the training split. ``steps``, when given, stops after that
            many optimizer steps instead (the schedule then spans ``steps``).
        schedule: ``"cosine"`` (to zero), ``"multistep"`` (times ``gamma`` at each epoch
            in ``milestones``) or ``"constant"``.
        amp: bf16 autocast; default on for CUDA, off on CPU.
        channels_last: NHWC memory format; default on for CUDA.
        compile: ``True`` or ``"step"``: compile the whole training step (augmentation,
            forward, backward, the rules' B updates, the optimizer update and the running
            metrics) into one graph with ``torch.compile(fullgraph=True)`` (see
            :mod:`nbkit.step`; ``"reduce-overhead"`` mode on CUDA, which makes it one CUDA
            graph). What the whole step cannot take (another optimizer, an
            ``after_backward`` callback, direct feedback alignment) makes ``True`` compile
            only the model, with a warning, and ``"step"`` raise. ``"model"``: compile
            only the model. A mode string (``"max-autotune"``) is ``True`` in that mode.
        callbacks: see the module docstring.
        optimizer: use this optimizer instead of SGD over :func:`param_groups`.
        seed: seeds the model-independent randomness of the loop (batch order and
            augmentation); use :func:`nbkit.seed` before building the model as well.
        every: also yield after every ``every``-th optimizer step (after the epoch's
            evaluation when that step ends an epoch); None: only once, at the end.
        on_nonfinite: ``"raise"`` (default) stops training with :class:`NonFiniteLoss`
            when a training loss is NaN or infinite; ``"continue"`` trains on regardless
            (for studies that record divergence themselves). On the CPU every step is
            checked, before its backward pass; on a GPU the first bad step is recorded on
            the device, without a host synchronisation, and checked at each epoch's end
            and before each yield, so training stops there (with that step's number).
        checkpoint: a file path. After every ``checkpoint_every``-th epoch (but the last)
            the loop saves there, atomically, all it needs to go on: the model (masks
            included), the optimizer (and a converted model's feedback state), the
            random states, the history and the state of every callback with a
            ``state_dict`` method. When the file exists at the start, training resumes
            after its epoch and ends as an uninterrupted run would. Load it with
            ``torch.load(path, weights_only=True)``; :func:`checkpoint_epoch` reads its
            epoch.

    Yields the :class:`State` (its ``history`` grows as :func:`fit` describes), the last
    time after training and ``on_fit_end``.
    """
    if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                              or every < 1):
        raise ValueError(f"every must be a positive int or None, got {every!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {sorted(SCHEDULES)}")
    if on_nonfinite not in ("raise", "continue"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'continue', got {on_nonfinite!r}")
    _check_count("steps", steps, allow_none=True)
    if steps is None and (isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral)
                          or epochs < 1):
        raise ValueError(f"epochs must be a positive int (or pass steps=N), got {epochs!r}")
    _check_count("batch_size", batch_size)
    _check_count("eval_every", eval_every)
    _check_count("checkpoint_every", checkpoint_every)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    _check_number("lr", lr, positive=True)
    _check_number("momentum", momentum)
    _check_number("weight_decay", weight_decay)
    dev = get_device(device)
    ds = _resolve_data(data, dev)
    model.to(dev)
    if channels_last is None:
        channels_last = dev.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    train_batches = ds.loader("train", batch_size, augment=augment, device=dev, seed=seed,
                              channels_last=channels_last)
    per_epoch = len(train_batches)
    if per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the training split "
                         f"({len(ds.train)} images); lower it")
    total = int(steps) if steps is not None else int(epochs) * per_epoch
    n_epochs = math.ceil(total / per_epoch)

    opt = optimizer or make_optimizer(model, lr, momentum, nesterov, weight_decay, dev)
    for g in opt.param_groups:
        g.setdefault("initial_lr", g["lr"])
    milestone_steps = [m * per_epoch for m in milestones]
    factor = SCHEDULES[schedule]

    ctx = _autocast(dev, amp)
    callbacks = list(callbacks)
    whole, step_model = _compile_plan(compile, model, opt, train_batches, dev, ctx,
                                      label_smoothing, callbacks)

    history = {"epoch": [], "step": [], "train_loss": [], "train_acc": [], "test_loss": [],
               "test_acc": [], "lr": [], "time": [],
               "config": {"model": getattr(model, "arch", type(model).__name__),
                          "data": ds.name, "epochs": n_epochs, "steps": total,
                          "batch_size": batch_size, "lr": lr, "momentum": momentum,
                          "nesterov": nesterov, "weight_decay": weight_decay,
                          "schedule": schedule, "milestones": list(milestones),
                          "augment": augment, "device": str(dev), "seed": seed}}
    state = State(model, opt, dev, history, total, loss_sum=torch.zeros((), device=dev),
                  correct=torch.zeros((), device=dev, dtype=torch.long))
    _call(callbacks, "on_fit_start", state)

    # The first optimizer step (from 1) whose loss was not finite, 0 while none was: on
    # the CPU checked at once, elsewhere recorded on the device and read at sync points.
    check = on_nonfinite == "raise"
    eager_check = check and dev.type in EAGER_NONFINITE_CHECK
    bad_step = torch.zeros((), device=dev, dtype=torch.long) if check else None

    def raise_if_bad():
        if check and not eager_check:
            first = int(bad_step)
            if first:
                raise _nonfinite_error(first, (first - 1) // per_epoch + 1, n_epochs,
                                       "NaN or infinite", history, lr)

    start = 0
    if checkpoint is not None and checkpoint.exists():
        start = _load_checkpoint(checkpoint, state, train_batches, callbacks, bad_step)
    bar = tqdm(total=total, initial=state.step, desc="train", unit="step",
               disable=not progress, leave=False)
    step = state.step
    # this epoch's sums (kept, and zeroed each epoch: a CUDA graph keeps their address)
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    if whole is not None:
        whole.prepare()  # after any checkpoint: the optimizer state it updates in place
        step_no = torch.full((), step, device=dev, dtype=torch.long)
        whole.keep(loss_sum, correct, state.loss_sum, state.correct, step_no, bad_step)
        counters = ([loss_sum, state.loss_sum], [correct, state.correct],
                    bad_step if check else None, step_no)
    model.train()
    try:
        for epoch in range(start + 1, n_epochs + 1):
            state.epoch = epoch
            loss_sum.zero_()
            correct.zero_()
            seen = 0
            t0 = time.perf_counter()
            for i, batch in enumerate(train_batches if whole is None else train_batches.raw()):
                if step >= total:
                    break
                scale = factor(step, total, milestone_steps, gamma)
                for g in opt.param_groups:
                    g["lr"] = g["initial_lr"] * scale
                stepped = False
                if whole is not None:
                    x, y, draws = batch
                    try:
                        loss, x = whole(x, y, draws, scale, counters)
                        stepped = True
                    except torch._dynamo.exc.TorchDynamoException as e:
                        if whole.strict:
                            raise
                        whole, step_model = _fall_back(e, whole)
                    if stepped and eager_check and int(bad_step):
                        what = "NaN" if math.isnan(loss.item()) else "infinite"
                        raise _nonfinite_error(step + 1, epoch, n_epochs, what, history, lr)
                if not stepped:
                    if len(batch) == 3:  # raw batches: the whole step fell back to this one
                        batch = (train_batches.finish(batch[0], batch[2]), batch[1])
                    x, y = batch
                    with ctx:
                        out = layers.logits(step_model(x), "fit")
                        loss = F.cross_entropy(out.float(), y, label_smoothing=label_smoothing)
                    if eager_check and not torch.isfinite(loss.detach()):
                        what = "NaN" if math.isnan(loss.item()) else "infinite"
                        raise _nonfinite_error(step + 1, epoch, n_epochs, what, history, lr)
                    if check and not eager_check:
                        bad_step.masked_fill_((bad_step == 0) & ~torch.isfinite(loss.detach()),
                                              step + 1)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    state.batch, state.loss, state.lr = (x, y), loss, lr * scale
                    _call(callbacks, "after_backward", state)
                    opt.step()
                    batch_loss = loss.detach() * len(y)
                    batch_correct = (out.detach().argmax(1) == y).sum()
                    for sums, value in (((loss_sum, state.loss_sum), batch_loss),
                                        ((correct, state.correct), batch_correct)):
                        for t in sums:
                            t += value
                step = _after_step(state, callbacks, step, (x, y), loss, lr * scale)
                seen += len(y)
                state.seen += len(y)
                bar.update(1)
                closes_epoch = i == per_epoch - 1 or step >= total
                if every is not None and step % every == 0 and not closes_epoch:
                    raise_if_bad()
                    yield state
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            elapsed = time.perf_counter() - t0
            raise_if_bad()
            last = step >= total
            if epoch % eval_every == 0 or last:
                test_loss, test_acc = evaluate(model, ds, "test", batch_size=eval_batch_size,
                                               device=dev, amp=amp)
                train_loss = loss_sum.item() / max(seen, 1)
                train_acc = correct.item() / max(seen, 1)
                for key, value in (("epoch", epoch), ("step", step), ("train_loss", train_loss),
                                   ("train_acc", train_acc), ("test_loss", test_loss),
                                   ("test_acc", test_acc), ("lr", state.lr),
                                   ("time", elapsed)):
                    history[key].append(value)
                bar.set_postfix(epoch=epoch, loss=f"{train_loss:.3f}", test_acc=f"{test_acc:.3f}")
            _call(callbacks, "on_epoch_end", state)
            if last:
                break
            if every is not None and step % every == 0:
                yield state
            if checkpoint is not None and epoch % checkpoint_every == 0:
                _save_checkpoint(checkpoint, state, train_batches, callbacks, bad_step)
    finally:
        bar.close()
    _call(callbacks, "on_fit_end", state)
    yield state
