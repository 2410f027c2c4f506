"""Exact top-k selection with deterministic tie-breaking.

``select(scores, k)`` returns the positions (ascending) of the k largest scores and
the positions of the others. Ties are broken by position: among equal scores the
earlier position is kept. NaN scores count as -inf (pruned first).

Two strategies give identical results:

- ``"sort"`` (CUDA): one stable descending sort. No host synchronisation, and far
  faster on a GPU than ``torch.kthvalue``, which runs one thread block per slice.
- ``"threshold"`` (CPU): find the k-th largest value by sampling a narrow band around
  it and running ``kthvalue`` on the band only, then keep everything above it and the
  first few equal to it. A few linear passes instead of a full sort.
"""

from __future__ import annotations

import math

import torch

__all__ = ["select", "kth_largest"]

_SAMPLE = 16384          # sample size used to bracket the threshold
_MIN_SAMPLED = 1 << 17   # below this many scores, kthvalue on everything is cheap


def _strategy(device: torch.device) -> str:
    return "threshold" if device.type == "cpu" else "sort"


def kth_largest(scores: torch.Tensor, k: int, generator: torch.Generator | None = None):
    """The k-th largest value of a 1-D tensor (1 <= k <= numel), exactly."""
    m = scores.numel()
    q = m - k + 1  # its rank from below
    if m < _MIN_SAMPLED:
        return torch.kthvalue(scores, q).values
    pos = torch.randint(0, m, (_SAMPLE,), device=scores.device, generator=generator)
    sample = scores[pos].sort().values
    centre = q / m * _SAMPLE
    spread = 4.0 * math.sqrt(_SAMPLE) + 2
    lo_i, hi_i = int(centre - spread), int(centre + spread)
    lo = sample[lo_i] if lo_i > 0 else None
    hi = sample[hi_i] if hi_i < _SAMPLE else None
    below = int((scores < lo).sum()) if lo is not None else 0
    if lo is None and hi is None:
        return torch.kthvalue(scores, q).values
    band = (scores >= lo) if lo is not None else None
    if hi is not None:
        band = (scores <= hi) if band is None else band.logical_and_(scores <= hi)
    values = scores[band]
    if below < q <= below + values.numel():
        return torch.kthvalue(values, q - below).values
    return torch.kthvalue(scores, q).values  # the sample missed: rare, still exact


def select(scores: torch.Tensor, k: int, strategy: str | None = None,
           generator: torch.Generator | None = None):
    """Split positions 0..m-1 of 1-D ``scores`` into (kept, removed), both ascending,
    keeping exactly the ``k`` largest with ties broken toward lower positions."""
    m = scores.numel()
    if not 0 <= k <= m:
        raise ValueError(f"cannot keep {k} of {m} scores")
    device = scores.device
    if k == m:
        return torch.arange(m, device=device), torch.empty(0, dtype=torch.long, device=device)
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=device), torch.arange(m, device=device)
    strategy = strategy or _strategy(device)
    if scores.is_floating_point() and (strategy == "sort" or bool(torch.isnan(scores).any())):
        scores = torch.where(torch.isnan(scores), float("-inf"), scores)
    if strategy == "sort":
        order = torch.sort(scores, descending=True, stable=True).indices
        return order[:k].sort().values, order[k:].sort().values
    if strategy != "threshold":
        raise ValueError(f"unknown selection strategy {strategy!r}; use 'sort' or 'threshold'")
    t = kth_largest(scores, k, generator)
    keep = scores >= t
    n_ge = int(keep.sum())
    if n_ge != k:  # ties at the threshold: keep the first (k - #greater) of them
        equal = scores == t
        need = k - (n_ge - int(equal.sum()))
        keep = (scores > t).logical_or_(equal.logical_and_(equal.cumsum(0) <= need))
    return keep.nonzero().squeeze(1), keep.logical_not_().nonzero().squeeze(1)
