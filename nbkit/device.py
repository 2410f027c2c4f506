"""One place that decides where tensors live."""

from __future__ import annotations

from contextlib import contextmanager

import torch

__all__ = ["get", "cpu_threads"]


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


@contextmanager
def cpu_threads(n: int | None, device=None):
    """Run the block with ``n`` torch threads when ``device`` is the CPU, then restore the
    previous setting (``n`` None or 0: leave it as it is). Small nets are bound by
    per-op overhead, and extra threads only add synchronisation, most of all on a busy
    machine, so the quick paths of the notebooks use one."""
    if not n or get(device).type != "cpu":
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
