"""The pruning loop: score, keep the top k, repeat on a schedule.

>>> masks = prune(model, "synflow", density=1e-3, iterations=100)

One call validates everything first, then scores and selects without touching the
model (the scorers run it with stand-in weights), and only at the end installs the
masks. Bad input, or an error while scoring, leaves the model as it was.

Speed: all weights live in one flat buffer; each iteration ranks only the weights
still alive (on average ~15% of them over a 100-step exponential schedule to 1e-3).
On a GPU that is one stable sort (never ``torch.kthvalue``, which runs on a single
thread block) and the loop runs without host synchronisation. On a CPU, where sorting
is slow, a sampled bracket narrows ``kthvalue`` to a few percent of the scores and
removed weights are only flagged until a quarter of the index list is dead.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .. import layers as _layers
from ..device import get as get_device
from . import scores as _scores
from .batches import collect_batches
from .functional import SATURATING, _float_dtype, eval_mode, resolve_input_shape
from .masks import apply_masks, kept_pruned_attributes, masks, prunable_parameters
from .select import LiveSet, select

__all__ = ["prune", "score", "schedule_counts", "SCHEDULES", "SCOPES"]

SCHEDULES = ("exponential", "linear")
SCOPES = ("global", "local")

# How the loop keeps its alive weights: "live" (CPU: flag removals, compact now and
# then; synchronises with the host) or "sort" (GPU: a stable sort per iteration, no
# host synchronisation). None picks by device; both give the same masks.
LOOP: str | None = None


def _check_density(density) -> float:
    try:
        d = float(density)
    except (TypeError, ValueError) as e:
        raise ValueError(f"density must be a number in (0, 1], got {density!r}") from e
    if not (0.0 < d <= 1.0):  # also rejects NaN
        raise ValueError(f"density must be in (0, 1] (the fraction of weights kept; "
                         f"compression 1/density), got {density!r}")
    return d


def schedule_counts(n_alive: int, n_total: int, density: float, iterations: int,
                    schedule: str = "exponential") -> list[int]:
    """Weights to keep after each iteration, ending at exactly ``round(density·n_total)``.

    Starting from density d₀ = n_alive/n_total: exponential d_k = d₀(d/d₀)^(k/n)
    (d^(k/n) from a dense model), linear d_k = d₀ − (d₀ − d)k/n. Counts never rise and
    never exceed ``n_alive``.
    """
    final = min(round(density * n_total), n_alive)
    d0 = n_alive / n_total
    counts, prev = [], n_alive
    for k in range(1, iterations + 1):
        if schedule == "exponential":
            d = d0 * (density / d0) ** (k / iterations)
        else:
            d = d0 - (d0 - density) * k / iterations
        c = final if k == iterations else max(final, min(prev, round(d * n_total)))
        counts.append(c)
        prev = c
    return counts


def _resolve_device(model: nn.Module, params: Mapping, device) -> torch.device:
    devices = {p.device for p in params.values()}
    if any(d.type == "meta" for d in devices):
        raise ValueError("the model's weights are on the meta device (shapes without "
                         "values): materialise them first, e.g. model.to_empty(device='cpu') "
                         "and initialise them, or build the model on a real device")
    if len(devices) > 1:
        where = sorted(map(str, devices))
        raise ValueError(f"the prunable parameters live on several devices {where}; move the "
                         "model to one device or pass device=")
    if device is not None:
        return get_device(device)
    return devices.pop()


def prune(model: nn.Module, method: str, density: float, iterations: int = 1,
          schedule: str = "exponential", scope: str = "global", data=None, device=None, *,
          invert: bool = False, shuffle: bool = False, reinitialize: bool = False,
          prunable=None, input_shape=None, num_batches: int | None = None,
          progress: bool = False, history: list | None = None,
          linearize: bool = False, temperature: float | None = None
          ) -> dict[str, torch.Tensor]:
    """Prune ``model`` in place to ``density`` and return its masks.

    Args:
        model: any module of Linear, Conv2d, BatchNorm, activations, pooling and
            residual adds. Already pruned parameters stay pruned (masks compose).
        method: ``"random"``, ``"magnitude"``, ``"snip"``, ``"grasp"`` or ``"synflow"``.
        density: fraction of prunable weights kept, in (0, 1]; compression ρ = 1/density.
            Global scope keeps exactly ``round(density · N)`` of the N prunable weights.
        iterations: re-score and re-mask this many times (the paper: 100 for SynFlow).
        schedule: ``"exponential"`` (d_k = d^(k/n)) or ``"linear"`` (1 − (1 − d)k/n).
        scope: ``"global"`` ranks all weights together; ``"local"`` keeps the top
            fraction of each layer.
        data: pruning data for SNIP/GraSP: an ``(x, y)`` pair of tensors, an iterable of
            ``(x, y)`` batches, or a dataset with ``.pruning_batches(n, device=...)``, such
            as one from :func:`nbkit.data.load`. By default ``10 × num_classes`` samples
            are used, in batches of 256.
        device: where to prune; the model is moved there. Default: where it is.
        invert: prune the highest scores instead of the lowest.
        shuffle: randomly permute each layer's final mask (keeps layer densities; the
            sanity check of Frankle et al. 2021).
        reinitialize: re-initialise the weights after pruning (masks kept).
        prunable: what may be pruned; see :func:`prunable_parameters`.
        input_shape: input shape for SynFlow's all-ones input (default: the model's).
        num_batches: use this many batches of ``data`` instead of ``10 × classes`` samples.
        progress: show a progress bar over iterations.
        history: a list; one dict per iteration is appended: ``iteration``, ``density``,
            ``layer_density`` {name: kept fraction}, ``removed_score`` (sum of this
            iteration's scores over the weights it removed), ``layer_score_totals``
            {name: sum of this iteration's scores over the layer's weights alive when
            scored}, ``objective`` (R for SynFlow, the loss for SNIP/GraSP, else NaN).
        linearize: SynFlow only: score the linearised network, every activation module
            taken as the identity (:func:`~nbkit.pruning.functional.linearized`). The
            same scores for a ReLU network; scores instead of zeros for one with
            saturating activations (ReLU6 in MobileNetV2, Hardtanh, sigmoid), where the
            all-ones input saturates every unit and no flow gets through.
        temperature: GraSP's temperature, which divides the logits (default: the
            scorer's own, 200 for ``"grasp"`` and 1 for ``"grasp_paper"``); an error for
            a scorer without one.

    Raises:
        ValueError: for a gradient-based score (SNIP, GraSP, SynFlow), when a layer's
            scores are all 0 or not finite at the start: the objective does not reach
            that layer (a saturating activation, a disconnected model), and which of
            its weights to keep would be arbitrary. The message names the layers.

    Returns:
        ``{name: bool mask}`` for every prunable parameter, keyed by the names of the
        unpruned model (``"layers.0.conv.weight"``).

    Scores are computed in eval mode. SynFlow runs in float32 and, if R is not finite or
    not positive in any iteration, the whole run is redone in float64.
    """
    scorer = _scores.get(method)
    density = _check_density(density)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; use one of {list(SCHEDULES)}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; use one of {list(SCOPES)}")
    if linearize and not scorer.linearizable:
        raise ValueError(f"linearize=True applies to SynFlow's data-free objective; "
                         f"{scorer.name!r} scores the network as it is")
    temperature = _scores.temperature_for(scorer, temperature)
    if scorer.needs_input_shape:
        reads = [f"{n} ({type(m).__name__})" for n, m, kind in _layers.weight_layers(model)
                 if not kind.float_input]
        if reads:
            raise _layers.UnsupportedLayerError(
                f"{scorer.label} runs the model on an all-ones float input, but "
                f"{', '.join(reads)} reads integer indices; use a data-driven pruner "
                "('snip', 'grasp') or 'magnitude'")
    if history is not None and not hasattr(history, "append"):
        raise ValueError("history must be a list (or None); per-iteration dicts are appended")
    if scorer.needs_data and data is None:
        raise ValueError(f"{scorer.name!r} scores with data: pass data=(x, y) or an iterable "
                         "of (x, y) batches, e.g. 10 × num_classes training samples; or use a "
                         "data-free method ('synflow', 'magnitude', 'random')")
    params = prunable_parameters(model, prunable)
    if not params:
        raise ValueError("the model has no prunable layer: nbkit prunes the weights of Linear "
                         "and Conv2d layers by default; add some, or name the parameters to "
                         "prune with prunable=[...]")
    dev = _resolve_device(model, params, device)
    finite = torch.stack([torch.isfinite(p.detach()).all() for p in params.values()]).tolist()
    bad = [n for n, ok in zip(params, finite) if not ok]  # (one host sync for all layers)
    if bad:
        raise ValueError(f"{_some(bad)} hold NaN or infinite weights; every score would be "
                         "meaningless: re-initialise the model (or find what diverged)")
    names = list(params)
    sizes = [p.numel() for p in params.values()]
    n_total, n_layers = sum(sizes), len(sizes)
    old = masks(model)
    alive0 = [old[n].reshape(-1) if n in old else None for n in names]
    alive_counts = [s if a is None else int(a.sum()) for a, s in zip(alive0, sizes)]

    if scope == "global":
        k_final = round(density * n_total)
        if k_final < n_layers:
            raise ValueError(f"density {density:g} keeps {k_final} of {n_total} weights, fewer "
                             f"than one per prunable layer ({n_layers} layers); use density >= "
                             f"{n_layers / n_total:.3g}")
        if k_final > sum(alive_counts):
            raise ValueError(f"the model already keeps only {sum(alive_counts)} of {n_total} "
                             f"weights (density {sum(alive_counts) / n_total:.3g}) and masks only "
                             f"shrink; ask for density <= {sum(alive_counts) / n_total:.3g} or "
                             "prune a fresh model")
        targets = [schedule_counts(sum(alive_counts), n_total, density, iterations, schedule)]
        groups = [(0, n_total)]
    else:
        for name, size in zip(names, sizes):
            if round(density * size) < 1:
                raise ValueError(f"density {density:g} keeps no weight of {name!r} ({size} "
                                 "weights) with scope='local'; raise density or use "
                                 "scope='global'")
        targets = [schedule_counts(a, s, density, iterations, schedule)
                   for a, s in zip(alive_counts, sizes)]
        offsets = [sum(sizes[:i]) for i in range(n_layers)]
        groups = list(zip(offsets, sizes))
    shape = resolve_input_shape(model, input_shape) if scorer.needs_input_shape else input_shape
    dtype = _float_dtype(model)
    batches = (collect_batches(model, data, dev, dtype, num_batches) if scorer.needs_data
               else [])
    # ---- everything validated: from here on the model may change
    if device is not None:
        model.to(dev)
        batches = [(x.to(dev), y.to(dev)) for x, y in batches]
    params = prunable_parameters(model, prunable)  # .to() may have replaced tensors

    run = _Run(model, scorer, params, alive0, groups, targets, dev, shape, batches,
               invert, history is not None, progress, linearize, temperature)
    result = run(dtype)
    if result is None:  # SynFlow's R overflowed or underflowed: redo it all in float64
        result = run(torch.float64)
    alive_views, records = result

    new_masks = {n: v.contiguous().clone() for n, v in alive_views.items()}
    if shuffle:
        for mask, a0 in zip(new_masks.values(), alive0):
            flat = mask.view(-1)
            pos = a0.to(dev).nonzero().squeeze(1) if a0 is not None else None
            bits = flat[pos] if pos is not None else flat.clone()
            bits = bits[torch.randperm(bits.numel(), device=dev)]
            if pos is None:
                flat.copy_(bits)
            else:
                flat[pos] = bits
    if reinitialize:
        _reinitialize(model)
    apply_masks(model, new_masks)
    if history is not None:
        history.extend(_history_dicts(records, names, sizes, n_total))
    return new_masks


def score(model: nn.Module, method: str, data=None, *, prunable=None, input_shape=None,
          num_batches: int | None = None, dtype: torch.dtype | None = None,
          temperature: float | None = None) -> dict[str, torch.Tensor]:
    """One round of ``method``'s scores for the prunable parameters, without pruning.

    Returns ``{name: scores}`` shaped like the parameters (higher means keep); weights
    that are already masked get -inf. ``dtype`` computes in another precision (e.g.
    ``torch.float64``); ``temperature`` is GraSP's (see :func:`prune`). The model is left
    exactly as it was.
    """
    scorer = _scores.get(method)
    temperature = _scores.temperature_for(scorer, temperature)
    params = prunable_parameters(model, prunable)
    if not params:
        raise ValueError("the model has no prunable layer (Linear or Conv2d weights)")
    if scorer.needs_data and data is None:
        raise ValueError(f"{scorer.name!r} scores with data: pass data=(x, y) or an iterable "
                         "of (x, y) batches")
    dev = _resolve_device(model, params, None)
    dtype = dtype or _float_dtype(model)
    shape = resolve_input_shape(model, input_shape) if scorer.needs_input_shape else input_shape
    batches = collect_batches(model, data, dev, dtype, num_batches) if scorer.needs_data else []
    old = masks(model)
    alive0 = [old[n].reshape(-1) if n in old else None for n in params]
    n = sum(p.numel() for p in params.values())
    run = _Run(model, scorer, params, alive0, [(0, n)], [[n]], dev, shape, batches, False,
               False, False)
    _, _, alive, weights, outs, alive_views = run._buffers(dtype)
    ctx = _scores.ScoreContext(alive=alive_views, batches=batches, input_shape=shape,
                               temperature=temperature)
    with eval_mode(model):
        scorer.fn(model, weights, outs, ctx)
    return {name: torch.where(alive_views[name], o.abs() if scorer.abs_scores else o,
                              float("-inf")).contiguous() for name, o in outs.items()}


class _Run:
    """One pass of the pruning loop in one dtype; returns None if SynFlow's R failed."""

    def __init__(self, model, scorer, params, alive0, groups, targets, device, input_shape,
                 batches, invert, record, progress, linearize=False, temperature=None):
        self.model, self.scorer, self.params = model, scorer, params
        self.linearize, self.temperature = linearize, temperature
        self.alive0, self.groups, self.targets = alive0, groups, targets
        self.device, self.input_shape, self.batches = device, input_shape, batches
        self.invert, self.record, self.progress = invert, record, progress
        sizes = self.sizes = [p.numel() for p in params.values()]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.n_total = sum(sizes)

    def _buffers(self, dtype):
        """Flat buffers of weights, scores and alive flags, and per-parameter views of
        them. For SynFlow, conv kernels are laid out channels-last (out, kh, kw, in),
        which makes its batch-1 convolutions faster on a CPU; positions (and so
        tie-breaking among equal scores) follow that layout."""
        dev, n = self.device, self.n_total
        view = _channels_last_view if self.scorer.absolute else _plain_view
        flat_w = torch.empty(n, dtype=dtype, device=dev)
        flat_s = torch.empty(n, dtype=dtype, device=dev)
        alive = torch.ones(n, dtype=torch.bool, device=dev)
        weights, outs, alive_views = {}, {}, {}
        with torch.no_grad():
            for (name, p), o, a0 in zip(self.params.items(), self.offsets, self.alive0):
                sl = slice(o, o + p.numel())
                w, a = view(flat_w[sl], p.shape), view(alive[sl], p.shape)
                w.copy_(p.detach())
                if a0 is not None:
                    a.copy_(a0.view(p.shape))
                    w.mul_(a)
                if self.scorer.absolute:
                    w.abs_()
                weights[name], outs[name] = w, view(flat_s[sl], p.shape)
                alive_views[name] = a
        return flat_w, flat_s, alive, weights, outs, alive_views

    def __call__(self, dtype):
        flat_w, flat_s, alive, weights, outs, alive_views = self._buffers(dtype)
        ctx = _scores.ScoreContext(alive=alive_views, batches=[
            (x.to(dtype) if x.is_floating_point() else x, y) for x, y in self.batches],
            input_shape=self.input_shape, linearize=self.linearize,
            temperature=self.temperature)
        idx = [_positions(alive[o:o + s], o) for o, s in self.groups]
        cpu = (LOOP or ("live" if self.device.type == "cpu" else "sort")) == "live"
        live = [LiveSet(i) for i in idx] if cpu else None
        gen = torch.Generator(device=self.device).manual_seed(0) if cpu else None
        bad = None
        records = []
        steps = range(len(self.targets[0]))
        if self.progress:
            from tqdm.auto import tqdm
            steps = tqdm(steps, desc=f"pruning ({self.scorer.name})", leave=False)
        with eval_mode(self.model):
            for it in steps:
                objective = self.scorer.fn(self.model, weights, outs, ctx)
                if self.scorer.absolute and objective is not None:
                    ok = torch.isfinite(objective) & (objective > 0)
                    if dtype == torch.float64:
                        pass  # nothing wider to retry in
                    elif it == 0 or cpu:
                        if not bool(ok):
                            return None
                    else:
                        bad = ~ok if bad is None else bad | ~ok
                if it == 0:
                    self._check_scores(flat_s, alive)
                removed_total, totals = [], []
                for g, targets in enumerate(self.targets):
                    alive_idx = live[g].idx if cpu else idx[g]
                    dead = live[g].dead if cpu else None
                    if dead is not None and self.record:
                        dead = dead.clone()  # update() flags this iteration's removals
                    s_raw = flat_s.index_select(0, alive_idx)
                    if self.scorer.abs_scores:
                        s_raw.abs_()
                    s = s_raw.neg() if self.invert else s_raw
                    if cpu:
                        gone, keep = live[g].update(s, targets[it], gen,
                                                    scratch=not self.record or self.invert)
                    else:
                        keep, gone = select(s, targets[it], need_removed=self.record)
                        idx[g] = alive_idx.index_select(0, keep)
                    if gone is None and self.record:
                        gone = _others(keep, alive_idx.numel(), dead)
                    with torch.no_grad():
                        if gone is None:  # most weights go: rebuild the group's masks
                            o, n = self.groups[g]
                            alive[o:o + n].zero_()
                            alive.index_fill_(0, live[g].idx if cpu else idx[g], True)
                            flat_w[o:o + n].mul_(alive[o:o + n])
                        else:
                            removed = alive_idx.index_select(0, gone)
                            flat_w.index_fill_(0, removed, 0)
                            alive.index_fill_(0, removed, False)
                    if self.record:
                        removed_total.append(
                            s_raw.index_select(0, gone).sum(dtype=torch.float64))
                        live_scores = s_raw if dead is None else s_raw.masked_fill(dead, 0)
                        totals.append(self._layer_totals(alive_idx, live_scores))
                if self.record:
                    records.append(self._record(alive, removed_total, totals, objective))
        if bad is not None and bool(bad):
            return None
        return alive_views, records

    def _check_scores(self, flat_s, alive):
        """Refuse scores that say nothing: a layer whose alive weights all score 0, or
        any score that is not finite (named, with the likely cause)."""
        finite = torch.isfinite(flat_s)
        flat = torch.where(finite, flat_s, torch.ones_like(flat_s)) * alive

        def per_layer(flags):  # whether each layer has a True flag, in one host sync
            return torch.stack([f.any() for f in torch.split(flags, self.sizes)]).tolist()

        bad, zero = [], []
        for name, live, nonfinite, nonzero in zip(self.params, per_layer(alive),
                                                  per_layer(~finite), per_layer(flat != 0)):
            if not live:
                continue
            if nonfinite:
                bad.append(name)
            elif self.scorer.flows and not nonzero:
                zero.append(name)
        if not (bad or zero):
            return
        label = self.scorer.label
        parts = []
        if bad:
            parts.append(f"{label} scores of {_some(bad)} are not finite (NaN or infinite "
                         "weights or data?)")
        if zero:
            parts.append(f"every {label} score of {_some(zero)} is 0: the objective does "
                         "not reach " + ("it" if len(zero) == 1 else "them"))
        hint = ""
        saturating = [n for n, m in self.model.named_modules() if isinstance(m, SATURATING)]
        blank = [n for n, p in self.params.items() if not bool(p.detach().any())]
        if zero and blank:
            hint = (f". {_some(blank)} {'is' if len(blank) == 1 else 'are'} all zeros (a "
                    "zero-initialised layer, such as a transformer's classifier head): no "
                    "gradient or flow passes it; initialise it (or prune it with "
                    "'magnitude' or 'random'), then prune")
        elif zero and self.scorer.linearizable and not self.linearize and saturating:
            hint = (f". Saturating activations ({_some(saturating)}) stop the all-ones "
                    "flow; pass linearize=True to score the network with its activations "
                    "removed, as the SynFlow theory does")
        elif zero:
            hint = (". Is the model already disconnected, or does a saturating or "
                    "non-differentiable step cut the gradient?")
        raise ValueError("; ".join(parts) + hint + "; which weights to keep would be "
                         "arbitrary, so nothing was pruned")

    def _boundaries(self):
        b = getattr(self, "_bounds", None)
        if b is None:
            b = self._bounds = torch.tensor(self.offsets[1:], dtype=torch.long,
                                            device=self.device)
        return b

    def _layer_totals(self, alive_idx, s_raw):
        n_layers = len(self.offsets)
        if len(self.groups) > 1:  # local scope: one group per layer
            return s_raw.sum(dtype=torch.float64).reshape(1)
        layer = torch.bucketize(alive_idx, self._boundaries(), right=True)
        return torch.zeros(n_layers, dtype=torch.float64, device=self.device).index_add_(
            0, layer, s_raw.to(torch.float64))

    def _record(self, alive, removed_total, totals, objective):
        counts = torch.stack([alive[o:o + s].count_nonzero()
                              for o, s in zip(self.offsets, self.sizes)])
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=self.device)
        obj = objective.detach().to(torch.float64).reshape(()) if objective is not None else nan
        return (counts, torch.stack(removed_total).sum(), torch.cat(totals), obj)


def _positions(alive: torch.Tensor, offset: int) -> torch.Tensor:
    """Positions (plus ``offset``) of the True entries of ``alive``; for an unpruned
    group, the common case, a plain range (no search through the flags)."""
    if bool(alive.all()):
        return torch.arange(offset, offset + alive.numel(), device=alive.device)
    return alive.nonzero().squeeze(1).add_(offset)


def _others(keep: torch.Tensor, m: int, dead: torch.Tensor | None) -> torch.Tensor:
    """Positions in 0..m-1 that are neither kept nor already dead."""
    mask = torch.ones(m, dtype=torch.bool, device=keep.device) if dead is None else ~dead
    mask.index_fill_(0, keep, False)
    return mask.nonzero().squeeze(1)


def _plain_view(flat: torch.Tensor, shape) -> torch.Tensor:
    return flat.view(shape)


def _channels_last_view(flat: torch.Tensor, shape) -> torch.Tensor:
    """``flat`` seen as a tensor of ``shape``; 4-D in channels-last memory order."""
    if len(shape) == 4:
        o, i, h, w = shape
        return flat.view(o, h, w, i).permute(0, 3, 1, 2)
    return flat.view(shape)


def _history_dicts(records, names, sizes, n_total):
    if not records:
        return []
    counts = torch.stack([r[0] for r in records]).tolist()
    removed = torch.stack([r[1] for r in records]).tolist()
    totals = torch.stack([r[2] for r in records]).tolist()
    objective = torch.stack([r[3] for r in records]).tolist()
    out = []
    for k in range(len(records)):
        out.append({
            "iteration": k + 1,
            "density": sum(counts[k]) / n_total,
            "layer_density": {n: c / s for n, c, s in zip(names, counts[k], sizes)},
            "removed_score": removed[k],
            "layer_score_totals": dict(zip(names, totals[k])),
            "objective": objective[k],
        })
    return out


@torch.no_grad()
def _reinitialize(model: nn.Module) -> None:
    """Re-draw the weights: nbkit's initialisation for models built by nbkit, else each
    module's ``reset_parameters()``. Pruned tensors are re-drawn through ``*_orig``."""
    from ..models import init_weights

    with kept_pruned_attributes(model) as exposed:
        for module, attr, _ in exposed:
            module.__dict__[attr] = module._parameters[f"{attr}_orig"]
        if getattr(model, "arch", None) is not None:
            init_weights(model)
        else:
            for module in model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()


def _some(names, n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
