"""One place that decides where tensors live."""

from __future__ import annotations

import torch

__all__ = ["get"]


def get(device=None) -> torch.device:
    """Return a :class:`torch.device`: CUDA when available and ``device`` is None,
    otherwise CPU; or the device named by ``device`` ("cpu", "cuda", "cuda:1", a
    ``torch.device``). Raises ValueError for a name torch does not know or a CUDA
    device that is not there."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N' "
                         "(or None to pick CUDA when available)") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available here; "
                             "use device='cpu' or device=None")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist; this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev.type not in ("cpu", "mps"):
        raise ValueError(f"unsupported device {device!r}; use 'cpu' or 'cuda'")
    return dev
