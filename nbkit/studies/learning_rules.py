"""Learning without weight symmetry: train a net with one learning rule and log, as it
trains, the loss, the accuracy and every layer's weight and δ angles (notebook 05, and
the ``learning_rules`` experiment at full scale).

>>> for run in iter_rule("feedback_alignment", QUICK):     # a growing run, for a figure
...     print(run["steps"][-1], run["test_acc"][-1])
>>> run = train_rule("symmetric_alignment", QUICK)          # the finished run, cached
>>> for partial in compare(["backprop", "feedback_alignment"], QUICK): ...

:func:`iter_rule` is the one loop that trains a rule: notebook 05's app, notebook 06's
grid (:mod:`.two_routes`) and the experiment runner's ``train_rule`` kind all use it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from .. import device as _device
from .. import models, rules, train
from .. import seed as seed_everything
from . import results
from .common import StudySettings, cached, dataset, for_mode

__all__ = ["Settings", "QUICK", "FULL", "MODES", "settings", "iter_rule", "train_rule",
           "compare", "angle_series", "describe_settings", "mean_over_layers",
           "results_by_rule", "final_by_rule", "collected", "final_table"]


@dataclass(frozen=True)
class Settings(StudySettings):
    """How a learning rule is trained and watched.

    Args:
        model, model_kwargs: :func:`nbkit.models.build` arguments.
        data: the dataset; ``image_size`` average-pools its images (8: an 8×8 MLP input).
        num_classes: the model's classes (None: the dataset's).
        train: keyword arguments of :func:`nbkit.train.fit` (the recipe).
        log_every: log the test accuracy and the angles every this many steps (and before
            training); None: before and after training only.
        angle_batch: test images of the fixed batch the δ angles are measured on (0: no
            δ angles).
        eval_samples: class-balanced test images for every test accuracy (None: all).
        preset, coefficients, feedback_lr: of :func:`nbkit.rules.convert`.
        sigma: update noise σ (:class:`nbkit.rules.NoisyUpdates`), 0 for none.
        seed: seeds the weights, the feedback matrices and the batch order.
        threads: CPU threads while training on the CPU (None: leave as is).
    """

    model: str = "conv"
    model_kwargs: dict = field(default_factory=lambda: {"depth": 4, "width": 8})
    data: str = "cifar10-mini"
    num_classes: int | None = None
    image_size: int | None = None
    train: dict = field(default_factory=dict)
    log_every: int | None = 15
    angle_batch: int = 64
    eval_samples: int | None = 500
    preset: str | None = "quick"
    coefficients: dict = field(default_factory=dict)
    feedback_lr: float | None = None
    sigma: float = 0.0
    seed: int = 0
    threads: int | None = None


# Notebook 05. Quick: a 4-layer convnet of width 8 on cifar10-mini, 150 SGD steps on one
# CPU thread (about 5 s per rule). Full: resnet20 on CIFAR-10 for about eight epochs, on
# a GPU.
QUICK = Settings(
    "quick", model="conv", model_kwargs={"depth": 4, "width": 8}, data="cifar10-mini",
    train={"steps": 150, "batch_size": 32, "lr": 0.05, "momentum": 0.9,
           "weight_decay": 5e-4, "schedule": "constant", "augment": False},
    log_every=25, angle_batch=64, eval_samples=500, preset="quick", threads=1)
FULL = Settings(
    "full", model="resnet20", model_kwargs={}, data="cifar10",
    train={"steps": 3000, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
           "weight_decay": 1e-4, "schedule": "constant", "augment": True},
    log_every=150, angle_batch=256, eval_samples=None, preset="quick")
MODES = {"quick": QUICK, "full": FULL}


def settings(mode: str = "quick", **changes) -> Settings:
    """:data:`QUICK` or :data:`FULL` with ``changes`` (``train`` is merged, not
    replaced)."""
    if "train" in changes:
        changes = {**changes, "train": {**MODES.get(mode, QUICK).train, **changes["train"]}}
    return for_mode(MODES, mode, **changes)


_PER_LAYER = ("alignment", "gradient", "gradient_local", "norm_ratio")


def _snapshot(run: dict) -> dict:
    """A copy of the growing run that later logging does not change."""
    return {k: (list(v) if isinstance(v, list) else
                {n: list(x) for n, x in v.items()} if k in _PER_LAYER else v)
            for k, v in run.items()}


def iter_rule(rule: str, settings: Settings = QUICK, *, device=None, compile: bool = False,
              checkpoint=None, checkpoint_every: int = 1):
    """Train ``settings.model`` with ``rule`` and yield the run so far after every
    ``settings.log_every`` steps (the first time before training, the last time with
    the finished run).

    A run holds the logged ``steps``, the mean training loss and accuracy since the
    previous log, the test loss and accuracy (on ``eval_samples`` test images), every
    layer's ``alignment`` (W against Bᵀ), ``gradient`` (the global δ angle: the δx sent
    under the rule against full backprop's) and ``gradient_local`` (the local one: B δy
    against Wᵀ δy), both on a fixed batch of ``angle_batch`` test images, and
    ``norm_ratio`` (‖B‖/‖W‖), and ``progress`` in [0, 1]. The finished run also holds
    ``history`` (of :func:`nbkit.train.fit`), ``coefficients`` (the resolved rule settings),
    ``finite`` (the loss and every parameter stayed finite), ``diverged_at`` (the step
    whose loss was NaN or infinite, where training stopped; None) and ``seconds``.

    ``checkpoint``, a file path, saves the training and the run's logs there after each
    epoch and resumes from it when it exists (:func:`nbkit.train.iter_fit`): the
    finished run is the same.
    """
    rules.get(rule)  # a clear error for an unknown name, before any work
    dev = _device.get(device)
    with _device.cpu_threads(settings.threads, dev):
        yield from _iter_rule(rule, settings, dev, compile, checkpoint,
                              checkpoint_every)


class _RunLog:
    """The run's logs and running totals, kept in a training checkpoint (a callback
    with nothing to do but ``state_dict``/``load_state_dict``)."""

    def __init__(self, run: dict, tally: dict):
        self.run, self.tally = run, tally

    def state_dict(self) -> dict:
        return {"run": self.run, "tally": self.tally}

    def load_state_dict(self, saved: dict) -> None:
        self.run.clear()
        self.run.update(saved["run"])
        self.tally.update(saved["tally"])


def _iter_rule(rule, settings, dev, compile, checkpoint=None, checkpoint_every: int = 1):
    t0 = time.perf_counter()
    ds = dataset(settings.data, device=dev, image_size=settings.image_size)
    ds = ds.subset(test=settings.eval_samples, seed=settings.seed)
    seed_everything(settings.seed)
    net = models.build(settings.model, num_classes=settings.num_classes or ds.num_classes,
                       input_shape=ds.input_shape, device=dev, **settings.model_kwargs)
    rules.convert(net, rule, preset=settings.preset, seed=settings.seed,
                  feedback_lr=settings.feedback_lr, **settings.coefficients)
    probe = None
    if settings.angle_batch:
        probe = next(iter(ds.loader("test", settings.angle_batch, shuffle=False,
                                    augment=False, device=dev)))
    logger = rules.AngleLogger(batch=probe, gradient=probe is not None)
    callbacks = [rules.NoisyUpdates(settings.sigma)] if settings.sigma else []
    steps = settings.train.get("steps")
    run = {"rule": rule, "route": rules.route(rule), "steps": [], "train_loss": [],
           "train_acc": [], "test_loss": [], "test_acc": [], "alignment": {},
           "gradient": {}, "gradient_local": {}, "norm_ratio": {}, "progress": 0.0}

    def log(step, total, losses):
        record = logger.log(net, step)
        run["steps"].append(step)
        for k, v in losses.items():
            run[k].append(v)
        for key in _PER_LAYER:
            for layer, value in record[key].items():
                run[key].setdefault(layer, []).append(value)
        run["progress"] = step / total

    test_loss, test_acc = train.evaluate(net, ds, device=dev)
    total = steps or 1
    log(0, total, {"train_loss": None, "train_acc": None, "test_loss": test_loss,
                   "test_acc": test_acc})
    yield _snapshot(run)
    tally = {"seen": 0, "loss_sum": 0.0, "correct": 0}
    state, diverged = None, None
    steps_iter = train.iter_fit(net, ds, device=dev, progress=False, seed=settings.seed,
                                callbacks=[*callbacks, _RunLog(run, tally)], compile=compile,
                                every=settings.log_every, checkpoint=checkpoint,
                                checkpoint_every=checkpoint_every,
                                **settings.train)
    while True:
        try:
            state = next(steps_iter)
        except StopIteration:
            break
        except train.NonFiniteLoss as e:  # a diverged run is a result: keep what it had
            diverged = e
            break
        hist = state.history
        if hist["step"] and hist["step"][-1] == state.step:  # fit has just evaluated
            test_loss, test_acc = hist["test_loss"][-1], hist["test_acc"][-1]
        else:
            test_loss, test_acc = train.evaluate(net, ds, device=dev)
        now_loss, now_correct = float(state.loss_sum), int(state.correct)
        n = max(state.seen - tally["seen"], 1)
        losses = {"train_loss": (now_loss - tally["loss_sum"]) / n,
                  "train_acc": (now_correct - tally["correct"]) / n,
                  "test_loss": test_loss, "test_acc": test_acc}
        tally.update(seen=state.seen, loss_sum=now_loss, correct=now_correct)
        if run["steps"][-1] != state.step:
            log(state.step, state.total_steps, losses)
        if state.step < state.total_steps:  # the finished run is yielded once, below
            yield _snapshot(run)
    history = diverged.history if diverged is not None else state.history
    finite = diverged is None and bool(all(torch.isfinite(p).all() for p in net.parameters()))
    run.update(history=history, coefficients=rules.resolve(rule, settings.preset,
                                                           **settings.coefficients),
               finite=finite, diverged_at=None if diverged is None else diverged.step,
               train_seconds=sum(history["time"]), seconds=time.perf_counter() - t0,
               progress=1.0)
    yield _snapshot(run)


@cached(maxsize=128, ignore=("compile", "checkpoint", "checkpoint_every"))
def _train_rule(rule, settings, dev, *, compile=False, checkpoint=None,
                checkpoint_every: int = 1) -> dict:
    run = None
    for run in iter_rule(rule, settings, device=dev, compile=compile,  # noqa: B007
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every):
        pass
    return run


def train_rule(rule: str, settings: Settings = QUICK, *, device=None,
               compile: bool = False, checkpoint=None, checkpoint_every: int = 1) -> dict:
    """The finished run of :func:`iter_rule` (cached per rule, settings and device)."""
    return _train_rule(rule, settings, _device.get(device), compile=compile,
                       checkpoint=checkpoint, checkpoint_every=checkpoint_every)


def compare(rule_names, settings: Settings = QUICK, *, device=None):
    """Train every rule in ``rule_names`` (in order) with the same settings, yielding
    ``{"runs": [run, ...], "settings", "coefficients", "progress"}`` as each run grows.
    Finished runs are cached, so asking again costs nothing."""
    names = list(dict.fromkeys(rule_names))
    if not names:
        raise ValueError("choose at least one learning rule")
    coefficients = {r: rules.resolve(r, settings.preset, **settings.coefficients)
                    for r in names}  # also a clear error for an unknown name
    dev = _device.get(device)
    done: list[dict] = []
    for i, r in enumerate(names):
        if not _train_rule.is_cached(r, settings, dev):
            run = None
            for run in iter_rule(r, settings, device=dev):
                yield {"runs": done + [run], "settings": settings,
                       "coefficients": coefficients,
                       "progress": (i + run["progress"]) / len(names)}
            _train_rule.put(run, r, settings, dev)
        done.append(_train_rule(r, settings, dev))
    yield {"runs": list(done), "settings": settings, "coefficients": coefficients,
           "progress": 1.0}


def angle_series(run: dict, key: str) -> dict:
    """``{"steps": [...], "layers": {layer: [value per step]}}`` of one of a run's
    per-layer logs (``"alignment"``, ``"gradient"`` or ``"norm_ratio"``), leaving out the
    steps where it was not measured (the δ angle before training, say)."""
    layers = run.get(key) or {}
    steps = run["steps"][len(run["steps"]) - max((len(v) for v in layers.values()), default=0):]
    return {"steps": steps, "layers": {n: list(v) for n, v in layers.items()}}


def _coefficient_text(values: dict) -> str:
    greek = {"alpha": "α", "beta": "β", "gamma": "γ"}
    return ", ".join(f"{greek.get(k, k)}={v:g}" for k, v in values.items()
                     if isinstance(v, float))


def describe_settings(settings: Settings, coefficients: dict) -> str:
    """The line shown under a figure: model, data, steps and the coefficients used."""
    kw = settings.model_kwargs or {}
    model = settings.model + (f" (depth {kw['depth']}, width {kw['width']})"
                              if "depth" in kw and "width" in kw else "")
    t = settings.train
    which = ("quick-mode coefficients (nbkit.rules.QUICK, an Adam of B's own for WM, IA "
             "and AA)" if settings.preset == "quick" else
             "[TR]'s coefficients, B on the task's SGD")
    coefs = "; ".join(f"{rules.registry.label(r)} {_coefficient_text(c)}"
                      for r, c in coefficients.items() if _coefficient_text(c))
    length = f"{t['steps']} SGD steps" if t.get("steps") else f"{t.get('epochs', 1)} epochs"
    return (f"{model} on {settings.data}, {length} of batch {t.get('batch_size', 128)}, "
            f"lr {t.get('lr', 0.1):g}, momentum {t.get('momentum', 0.9):g}; {which}"
            + (f": {coefs}" if coefs else ""))


# ------------------------------------------------------------------ full-scale results

EXPERIMENT = "learning_rules"


def mean_over_layers(per_layer: dict, index: int = -1) -> float:
    """The mean over layers of ``{layer: [value ...]}`` at one logged step, leaving out
    missing and non-finite values (NaN if none is left)."""
    vals = [v[index] for v in per_layer.values() if len(v)]
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan


def collected(folder=None) -> results.ResultFile | None:
    """The collected ``learning_rules`` results in data/results/ (the full variant
    first, then the short one), or None when there are none yet (see
    :mod:`nbkit.studies.results` for a file that cannot be read)."""
    return results.collected(EXPERIMENT, folder=folder)


def results_by_rule(merged: dict) -> dict[str, list]:
    """``{rule: [result of each run]}`` of a collected ``learning_rules`` result."""
    by_rule: dict[str, list] = {}
    for run in merged.get("runs", []):
        rule = run.get("config", {}).get("rule", merged.get("config", {}).get("rule"))
        by_rule.setdefault(rule, []).append(run["result"])
    return by_rule


def final_by_rule(merged: dict) -> dict:
    """From a collected ``learning_rules`` result, per rule (in display order): the
    final ``test_acc`` (a fraction, mean over seeds) and the final mean over layers of the
    weight angle, the δ angle and ‖B‖/‖W‖ (first seed)."""
    by_rule = results_by_rule(merged)
    out = {}
    for r in rules.ordered(by_rule):
        first = by_rule[r][0]
        layers = {k: (first.get(k) or {}).get("layers", {})
                  for k in ("weight_angles", "delta_angles", "norm_ratios")}
        out[r] = {"test_acc": sum(x["test_acc"] for x in by_rule[r]) / len(by_rule[r]),
                  "weight_angle": mean_over_layers(layers["weight_angles"]),
                  "delta_angle": mean_over_layers(layers["delta_angles"]),
                  "norm_ratio": mean_over_layers(layers["norm_ratios"])}
    return out


def final_table(merged: dict) -> str:
    """A plain-text table of a collected ``learning_rules`` result: per rule its route,
    final test accuracy, and the final mean weight angle, δ angle and ‖B‖/‖W‖."""
    routes = {"reference": "reference", "local": "local", "estimation": "estimation",
              "other": "signs of W"}
    rows = [f"{'rule':>22}  {'route':>10}  {'top-1':>6}  {'W vs Bᵀ':>7}  {'δ angle':>7}  "
            f"{'‖B‖/‖W‖':>7}"]
    for r, f in final_by_rule(merged).items():
        rows.append(f"{r:>22}  {routes[rules.route(r)]:>10}  {100 * f['test_acc']:5.1f}%  "
                    f"{f['weight_angle']:6.1f}°  {f['delta_angle']:6.1f}°  "
                    f"{f['norm_ratio']:7.2f}")
    return "\n".join(rows)
