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


# What full mode costs without a GPU, from nbkit's own measurements on an idle 2-core
# CPU (data/results/README.md): one pruning of the full-width VGG-16-BN takes 0.6 s
# (random, magnitude), 1.5 s (SNIP), 6 s (GraSP) and 13 s (SynFlow, 100 iterations),
# so notebook 01's grid of 25 compressions takes about 9 minutes per model.
FULL_ON_CPU = (
    "full mode runs the papers' settings, and this machine has no GPU. On a 2-core CPU, "
    "notebook 01's sweep of the full-width VGG-16-BN takes about 9 minutes per model "
    "(13 s per SynFlow pruning, measured), and more when the machine is busy; notebooks "
    "04 to 06 train VGG-16-BN and ResNets on all of CIFAR-10, which should take hours "
    "on a CPU (not measured). For a lecture or a first look, use quick mode (unset "
    "NBKIT_MODE): it draws the shipped full-scale results beside its live runs.")


CONFIRM_ENV = "NBKIT_FULL_ON_CPU"  # "yes": run full mode on a CPU without asking


def mode(default: str = "quick") -> str:
    """The run mode, "quick" or "full": ``NBKIT_MODE`` when set, else ``default``.

    Full mode on a machine without a GPU warns (:data:`FULL_ON_CPU`) with what it will
    cost, then asks before anything starts: in a notebook a text box takes the answer,
    in a terminal the prompt does. "y" keeps full mode; anything else switches to quick
    mode. Where nobody can answer (papermill, a script without a terminal), it says so
    and runs quick mode, unless ``NBKIT_FULL_ON_CPU=yes`` says to go on in full."""
    value = os.environ.get("NBKIT_MODE", default).strip().lower()
    if value not in ("quick", "full"):
        raise ValueError(f"NBKIT_MODE must be 'quick' or 'full', got {value!r}")
    if value == "full":
        from .device import get as _get_device

        if _get_device().type == "cpu":
            import warnings

            warnings.warn(FULL_ON_CPU, UserWarning, stacklevel=2)
            return _confirm_full_on_cpu()
    return value


def _confirm_full_on_cpu() -> str:
    """Ask whether to run full mode on this CPU: "full" or "quick"."""
    import sys

    if os.environ.get(CONFIRM_ENV, "").strip().lower() in ("1", "yes", "y", "true"):
        return "full"
    question = "Run the papers' settings on this CPU anyway (hours)? [y/N] "
    try:
        from IPython import get_ipython

        in_kernel = getattr(get_ipython(), "kernel", None) is not None
    except ImportError:
        in_kernel = False
    try:
        if not in_kernel and not (sys.stdin and sys.stdin.isatty()):
            raise EOFError
        answer = input(question)
    except (EOFError, OSError, RuntimeError, NotImplementedError):
        # (a kernel that takes no input raises IPython's StdinNotImplementedError, a
        # RuntimeError; a batch run has no terminal)
        print(f"Full mode on a CPU needs a yes, and nobody can answer here, so this run "
              f"uses quick mode. Set {CONFIRM_ENV}=yes to run the papers' settings on "
              "this CPU anyway, or run on a machine with a GPU.")
        return "quick"
    if answer.strip().lower() in ("y", "yes"):
        return "full"
    print("Staying in quick mode (set NBKIT_MODE=full on a machine with a GPU for the "
          "papers' settings).")
    return "quick"
