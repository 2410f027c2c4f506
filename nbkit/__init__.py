"""nbkit: pruning at initialization and credit assignment without weight symmetry,
as a small GPU-ready package behind a suite of interactive notebooks.

Submodules load on first use, so ``import nbkit`` stays fast and the core never
imports plotly or ipywidgets.
"""

from __future__ import annotations

import importlib
import os
import random

__version__ = "0.1.0"

_SUBMODULES = ("data", "device", "experiments", "models", "probes", "pruning", "rules",
               "studies", "train", "viz", "widgets")
__all__ = [*_SUBMODULES, "seed", "mode"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'nbkit' has no attribute {name!r}")


def seed(n: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a CPU run repeats exactly."""
    import numpy as np
    import torch

    random.seed(n)
    np.random.seed(n % 2**32)
    torch.manual_seed(n)


def mode(default: str = "quick") -> str:
    """The run mode, "quick" or "full": ``NBKIT_MODE`` when set, else ``default``."""
    value = os.environ.get("NBKIT_MODE", default).strip().lower()
    if value not in ("quick", "full"):
        raise ValueError(f"NBKIT_MODE must be 'quick' or 'full', got {value!r}")
    return value
