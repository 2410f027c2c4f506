"""Exact top-k selection with deterministic tie-breaking.

``select(scores, k)`` returns the positions (ascending) of the k largest scores and
the positions of the others. Ties are broken by position: among equal scores the
earlier position is kept. NaN scores count as -inf (pruned first).

Two strategies give identical results:

- ``"sort"`` (CUDA): one stable descending sort. No host synchronisation, and far
  faster on a GPU than ``torch.kthvalue``, which runs one thread block per slice.
- ``"threshold"`` (CPU, where sorting is slow): draw a small sample to bracket the
  threshold, gather the few scores on the short side of the bracket, and run
  ``kthvalue`` on those only. A handful of linear passes instead of a sort or a
  ``kthvalue`` over everything.
"""

from __future__ import annotations

import math

import torch

__all__ = ["select", "smallest"]

_SAMPLE = 8192           # sample size used to bracket the threshold
_MIN_SAMPLED = 1 << 16   # below this many scores, kthvalue on everything is cheap


def _strategy(device: torch.device) -> str:
    return "threshold" if device.type == "cpu" else "sort"


def _bracket(values: torch.Tensor, n: int, generator):
    """Positions of a subset of ``values`` that surely holds its n smallest, or None."""
    m = values.numel()
    if m < _MIN_SAMPLED or 4 * n > m:
        return None
    top = math.ceil(n / m * _SAMPLE + 4.0 * math.sqrt(n / m * _SAMPLE) + 8)
    if top >= _SAMPLE:
        return None
    pos = torch.randint(0, m, (_SAMPLE,), device=values.device, generator=generator)
    hi = torch.kthvalue(values[pos], top + 1).values
    candidates = values <= hi
    if int(candidates.count_nonzero()) < n:  # the sample missed: rare, still exact
        return None
    return candidates.nonzero().squeeze(1)


def smallest(values: torch.Tensor, n: int, late_first: bool = False,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Ascending positions of the ``n`` smallest of 1-D ``values`` (0 < n <= numel).

    Ties at the n-th value are taken from the lowest positions, or from the highest
    ones with ``late_first``.
    """
    pos = _bracket(values, n, generator)
    vals = values if pos is None else values.index_select(0, pos)
    t = torch.kthvalue(vals, n).values
    below = vals < t
    equal = vals == t
    need = n - int(below.count_nonzero())
    if need == int(equal.count_nonzero()):
        chosen = below.logical_or_(equal)
    else:
        rank = equal.flip(0).cumsum(0).flip(0) if late_first else equal.cumsum(0)
        chosen = below.logical_or_(equal.logical_and_(rank <= need))
    out = chosen.nonzero().squeeze(1)
    return out if pos is None else pos.index_select(0, out)


def _complement(positions: torch.Tensor, m: int) -> torch.Tensor:
    mask = torch.ones(m, dtype=torch.bool, device=positions.device)
    mask.index_fill_(0, positions, False)
    return mask.nonzero().squeeze(1)


def select(scores: torch.Tensor, k: int, strategy: str | None = None,
           generator: torch.Generator | None = None, need_removed: bool = True):
    """Split positions 0..m-1 of 1-D ``scores`` into (kept, removed), both ascending,
    keeping exactly the ``k`` largest with ties broken toward lower positions.

    With ``need_removed=False`` the removed positions may come back as None when they
    are the larger set (the caller rebuilds its masks from the kept ones instead)."""
    m = scores.numel()
    if not 0 <= k <= m:
        raise ValueError(f"cannot keep {k} of {m} scores")
    device = scores.device
    if k == m:
        return torch.arange(m, device=device), torch.empty(0, dtype=torch.long, device=device)
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=device), torch.arange(m, device=device)
    strategy = strategy or _strategy(device)
    if strategy not in ("sort", "threshold"):
        raise ValueError(f"unknown selection strategy {strategy!r}; use 'sort' or 'threshold'")
    if scores.is_floating_point() and (
            strategy == "sort" or not bool(torch.isfinite(scores.sum()))):
        scores = torch.where(torch.isnan(scores), float("-inf"), scores)
    if strategy == "sort":
        order = torch.sort(scores, descending=True, stable=True).indices
        return order[:k].sort().values, order[k:].sort().values
    if m - k <= k:  # remove the m - k smallest, latest positions first among ties
        removed = smallest(scores, m - k, late_first=True, generator=generator)
        return _complement(removed, m), removed
    kept = smallest(scores.neg(), k, generator=generator)  # keep the k largest, earliest first
    return kept, _complement(kept, m) if need_removed else None


class LiveSet:
    """The alive positions of one group, for the CPU loop: a sorted index list that may
    still hold entries removed since its last compaction (flagged in ``dead``).

    Removing a few percent per iteration then costs no rebuild of the list: removed
    entries are flagged, ranked last, and dropped once a quarter of the list is dead.
    The results equal ``select`` on the live entries alone.
    """

    def __init__(self, idx: torch.Tensor):
        self.idx = idx
        self.dead: torch.Tensor | None = None
        self.n_live = idx.numel()

    def update(self, scores: torch.Tensor, k: int, generator=None, scratch: bool = False):
        """Keep the ``k`` largest live entries of ``scores`` (aligned with ``idx``).

        Returns ``(gone, kept)``: positions into the list as it was, ascending; one of
        them is None when the other is the smaller set (``kept`` is returned when most
        entries go, after which the list is compacted). With ``scratch`` the scores may
        be overwritten.
        """
        r = self.n_live - k
        if r == 0:
            return torch.empty(0, dtype=torch.long, device=scores.device), None
        inf = float("inf")
        big = None
        if scores.is_floating_point() and not bool(torch.isfinite(scores.sum())):
            big = torch.finfo(scores.dtype).max  # NaN or infinite scores: map them
        if r <= k:  # remove the r smallest live entries (latest first among ties)
            v = scores
            if big is not None:
                v = torch.nan_to_num(scores, nan=-inf, posinf=big, neginf=-inf)
                scratch = True
            if self.dead is not None:
                v = v.masked_fill_(self.dead, inf) if scratch else v.masked_fill(self.dead, inf)
            gone = smallest(v, r, late_first=True, generator=generator)
            if self.dead is None:
                self.dead = torch.zeros(self.idx.numel(), dtype=torch.bool, device=v.device)
            self.dead.index_fill_(0, gone, True)
            self.n_live = k
            if 4 * (self.idx.numel() - k) > self.idx.numel():
                self._compact((~self.dead).nonzero().squeeze(1))
            return gone, None
        v = scores.neg()  # keep the k largest live entries (earliest first among ties)
        if big is not None:
            v = torch.nan_to_num(v, nan=inf, posinf=inf, neginf=-big)
        if self.dead is not None:
            v.masked_fill_(self.dead, inf)
        kept = smallest(v, k, generator=generator) if k else torch.empty(
            0, dtype=torch.long, device=v.device)
        self.n_live = k
        self._compact(kept)
        return None, kept

    def _compact(self, positions: torch.Tensor) -> None:
        self.idx = self.idx.index_select(0, positions)
        self.dead = None
