"""Pruning batches for SNIP and GraSP, gathered once before the pruning loop.

The paper scores with ``10 × num_classes`` training samples (100 for CIFAR-10) at
batch size 256. The batches are moved to the device once, so no data loader runs
inside the pruning loop and every iteration sees the same samples.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .functional import eval_mode

__all__ = ["collect_batches", "SAMPLES_PER_CLASS", "BATCH_SIZE"]

SAMPLES_PER_CLASS = 10
BATCH_SIZE = 256

_HOW = ("pass data=(x, y) (tensors of inputs and integer labels), an iterable of (x, y) "
        "batches such as a DataLoader, or a dataset with .pruning_batches(n_samples, "
        "device=...), such as nbkit.data.load(...)")


def _is_pair(obj) -> bool:
    return (isinstance(obj, (tuple, list)) and len(obj) == 2
            and all(torch.is_tensor(t) for t in obj))


def _check_pair(x, y, where: str):
    if not (torch.is_tensor(x) and torch.is_tensor(y)):
        raise ValueError(f"{where}: expected a pair of tensors (x, y); {_HOW}")
    if y.dim() != 1 or y.is_floating_point() or y.is_complex():
        raise ValueError(f"{where}: labels y must be a 1-D tensor of class indices, "
                         f"got shape {tuple(y.shape)} and dtype {y.dtype}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{where}: x has {x.shape[0]} samples but y has {y.shape[0]}")


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    last = list(model.modules())[-1]
    if isinstance(last, nn.Linear):  # the usual classifier head: no forward needed
        return last.out_features
    with torch.no_grad(), eval_mode(model):
        out = model(x[:1])
    if not torch.is_tensor(out) or out.dim() != 2:
        raise ValueError("SNIP and GraSP need a classifier that returns logits of shape "
                         f"(batch, classes), got {getattr(out, 'shape', type(out))}")
    return out.shape[1]


def collect_batches(model: nn.Module, data, device: torch.device, dtype: torch.dtype,
                    num_batches: int | None = None, n_samples: int | None = None):
    """Gather pruning batches ``[(x, y), ...]`` on ``device`` from ``data``.

    Without ``num_batches`` the batches hold ``n_samples`` samples (default
    ``10 × num_classes``, the paper's choice), taken in order from ``data``; a single
    ``(x, y)`` pair is split into batches of 256. With ``num_batches`` that many
    batches are taken whole.
    """
    if data is None:
        raise ValueError(f"this pruning method needs data: {_HOW}")
    if num_batches is not None and (not isinstance(num_batches, int) or num_batches < 1):
        raise ValueError(f"num_batches must be a positive int or None, got {num_batches!r}")

    def to_device(x, y):
        x = x.to(device=device, dtype=dtype if x.is_floating_point() else None)
        return x, y.to(device=device, dtype=torch.long)

    def need() -> int:
        return n_samples if n_samples is not None else SAMPLES_PER_CLASS * classes

    classes = None
    if hasattr(data, "pruning_batches") and not _is_pair(data):
        if n_samples is None:
            classes = _infer_classes_from_model(model, device, dtype)
        data = data.pruning_batches(need(), device=device)
    if _is_pair(data):
        x, y = data
        _check_pair(x, y, "data")
        if x.shape[0] == 0:
            raise ValueError(f"data holds no samples; {_HOW}")
        if num_batches is None:
            classes = classes or _num_classes(model, x.to(device=device, dtype=dtype))
            x, y = x[:need()], y[:need()]
        chunks = list(zip(x.split(BATCH_SIZE), y.split(BATCH_SIZE)))
        if num_batches is not None:
            chunks = chunks[:num_batches]
        return [to_device(a, b) for a, b in chunks]
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes)) or torch.is_tensor(data):
        raise ValueError(f"cannot read pruning batches from a {type(data).__name__}; {_HOW}")
    batches, count = [], 0
    for i, batch in enumerate(data):
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            raise ValueError(f"batch {i} of data is a {type(batch).__name__}, not an (x, y) pair;"
                             f" {_HOW}")
        x, y = batch[0], batch[1]
        _check_pair(x, y, f"batch {i} of data")
        x, y = to_device(x, y)
        if num_batches is None:
            classes = classes or _num_classes(model, x)
            x, y = x[:need() - count], y[:need() - count]
        batches.append((x, y))
        count += x.shape[0]
        if (num_batches is not None and len(batches) >= num_batches) or (
                num_batches is None and count >= need()):
            break
    if count == 0:
        raise ValueError(f"data yielded no samples; {_HOW}")
    return batches


def _infer_classes_from_model(model: nn.Module, device, dtype) -> int:
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ValueError("cannot tell the number of classes; pass num_batches= to prune")
    return last.out_features
