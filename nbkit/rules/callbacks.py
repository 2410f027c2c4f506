"""Training callbacks for converted models (see ``nbkit.train.fit``'s ``callbacks=``).

>>> history = nbkit.train.fit(model, data, steps=500,
...                           callbacks=[AngleLogger(every=25), NoisyUpdates(sigma=0.01)])
>>> history["angles"][-1]["alignment"]          # {layer_name: degrees}

Both work with a plain torch loop too: call ``logger.log(model, step, batch)`` and
``noise.apply(model, optimizer)`` yourself.
"""

from __future__ import annotations

import torch
from torch import nn

from . import registry
from .angles import gradient_angles, weight_probes
from .convert import converted_layers
from .layers import param_of

__all__ = ["AngleLogger", "NoisyUpdates"]


class AngleLogger:
    """Log :func:`alignment_angles`, both kinds of :func:`gradient_angles` and
    :func:`norm_ratios` every ``every`` steps (and once before training) into
    ``history["angles"]``, as ``{"step", "alignment", "gradient" (the global δ angle),
    "gradient_local" (the local one), "norm_ratio"}`` dicts of ``{layer: float}``.

    Args:
        every: log after every ``every``-th optimizer step.
        batch: a fixed ``(x, y)`` batch for the gradient angle, and for the weight angle
            and norm ratio of direct feedback alignment's layers (D against the mean true
            feedback on the batch), moved to the model's device; by default the current
            training batch (DFA's probes cost one forward and n_out backward passes on
            it). Before training, with no batch, the gradient angle is left out (an
            empty dict) and DFA's weight angles and norm ratios are NaN.
        gradient: also compute the δ angles (three extra forward/backward passes).
        loss_fn: the loss for the gradient angle (default: cross-entropy).
        key: the history key.
    """

    def __init__(self, every: int = 50, batch=None, *, gradient: bool = True, loss_fn=None,
                 key: str = "angles"):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        self.every, self.batch, self.gradient = every, batch, gradient
        self.loss_fn, self.key = loss_fn, key
        self.records: list[dict] = []

    def log(self, model: nn.Module, step: int, batch=None) -> dict:
        """Measure now and return the record (also kept in ``self.records``)."""
        batch = self.batch if self.batch is not None else batch
        grad, local = {}, {}
        if batch is not None:
            dev = next(model.parameters()).device
            batch = tuple(t.to(dev) for t in batch)
        if self.gradient and batch is not None:
            grad = gradient_angles(model, batch, self.loss_fn, kind="global")
            local = gradient_angles(model, batch, self.loss_fn, kind="local")
        alignment, ratios = weight_probes(model, batch)
        record = {"step": int(step), "alignment": alignment, "gradient": grad,
                  "gradient_local": local, "norm_ratio": ratios}
        self.records.append(record)
        return record

    def _append(self, state, record):
        state.history.setdefault(self.key, []).append(record)

    def on_fit_start(self, state):
        self._append(state, self.log(state.model, state.step, self.batch))

    def after_step(self, state):
        if state.step % self.every == 0:
            self._append(state, self.log(state.model, state.step, state.batch))


class NoisyUpdates:
    """Noisy updates ([TR]'s weight estimation): after each optimizer step every tensor
    that was updated gets ``θ += lr · ξ``, ξ ~ N(0, σ²), with its own group's lr. For a
    layer whose rule transports W's update to B (Kolen-Pollack) only B gets the noise
    (its W and bias do not).

    Args:
        sigma: the noise scale σ.
        generator: an optional ``torch.Generator`` on the parameters' device.
    """

    def __init__(self, sigma: float, generator: torch.Generator | None = None):
        if not isinstance(sigma, (int, float)) or sigma < 0:
            raise ValueError(f"sigma must be a number >= 0, got {sigma!r}")
        self.sigma, self.generator = float(sigma), generator
        self._skip: set[int] | None = None

    def _excluded(self, model: nn.Module) -> set[int]:
        skip = set()
        for _, m in converted_layers(model):
            if registry.get(m.rule).transport:  # Kolen-Pollack: W's update is B's
                skip.update(id(p) for p in (param_of(m, "weight"), param_of(m, "bias"))
                            if p is not None)
        return skip

    @torch.no_grad()
    def apply(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Add the noise to the tensors ``optimizer`` just updated."""
        if self.sigma == 0:
            return
        if self._skip is None:
            self._skip = self._excluded(model)
        for group in optimizer.param_groups:
            scale = float(group["lr"]) * self.sigma
            for p in group["params"]:
                if p.grad is None or id(p) in self._skip:
                    continue
                noise = torch.randn(p.shape, device=p.device, dtype=p.dtype,
                                    generator=self.generator)
                p.add_(noise, alpha=scale)

    def on_fit_start(self, state):
        self._skip = self._excluded(state.model)

    def after_step(self, state):
        self.apply(state.model, state.optimizer)
