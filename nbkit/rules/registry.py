"""The rule registry: every learning rule by name, with its coefficients.

A rule says how the backward matrix B of each layer is set or learned. The learned
rules are weighted sums of the regularisation primitives of :mod:`.primitives`; each
coefficient of a rule names one primitive and carries the default of [TR] (Kunin et
al. 2020). A few rules also take *options* that are not coefficients of a primitive
(the number of samples the data-driven primitives are estimated on).

>>> get("symmetric_alignment").coefficients
{'alpha': 0.001, 'beta': 0.002}
>>> resolve("symmetric_alignment", alpha=0.01)["alpha"]
0.01
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

__all__ = ["Rule", "RULES", "ROUTES", "FEEDBACK_KINDS", "QUICK", "QUICK_FEEDBACK", "PAPER",
           "feedback_update", "paper_preset_status", "names",
           "ordered", "route", "label", "short", "get", "resolve", "register"]


@dataclass(frozen=True)
class Rule:
    """One learning rule.

    Attributes:
        name: registry key.
        feedback: how B is obtained: ``"transpose"`` (B = Wᵀ, backprop), ``"fixed"``
            (a random B that never changes), ``"sign"`` (B = sign(Wᵀ) times a fixed scale,
            recomputed from W at every backward pass), ``"learned"`` (a random B whose
            gradient the rule fills) or ``"direct"`` (no B: every layer sends δx = D e,
            the error e at the network's output through a fixed random D of its own;
            direct feedback alignment, see :mod:`.direct`).
        terms: ``{coefficient: (primitive, default)}`` for the learned rules. The
            primitives are ``decay``, ``amp``, ``sparse``, ``null`` and ``self``.
        noise_inputs: the data-driven primitives see white-noise inputs instead of the
            layer's own inputs (weight mirror).
        options: rule options that are not coefficients, with their defaults.
        transport: B's gradient includes W's gradient (Kolen-Pollack's transported update).
        shares_decay: W gets the same decay as B, through its ``optim`` weight-decay
            override (off for every built-in rule: [TR]'s Kolen-Pollack lets W keep the
            task's weight decay; see :func:`nbkit.rules.convert`).
        route: where the rule sits in [TR]'s story: ``"reference"`` (backprop),
            ``"local"`` (B learned from what the layer itself sees), ``"estimation"``
            (weight estimation: B tracks W through W, W x or W's updates) or ``"other"``.
        order: position in listings, legends and dropdowns (lowest first).
        label, short: display names ("Feedback alignment", "FA").
        summary: one line for listings.
    """

    name: str
    feedback: str
    terms: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    noise_inputs: bool = False
    options: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    transport: bool = False
    shares_decay: bool = False
    route: str = "other"
    order: int = 100
    label: str = ""
    short: str = ""
    summary: str = ""

    @property
    def coefficients(self) -> dict:
        """The default coefficients, ``{name: value}``."""
        return {k: v for k, (_, v) in self.terms.items()}

    @property
    def learned(self) -> bool:
        return self.feedback == "learned"

    @property
    def direct(self) -> bool:
        """Every layer gets the output error directly, not the error of the layer above."""
        return self.feedback == "direct"


ROUTES = ("reference", "local", "estimation", "other")
FEEDBACK_KINDS = ("transpose", "fixed", "sign", "learned", "direct")


def _rule(name, feedback, terms=None, options=None, **kw) -> Rule:
    return Rule(name, feedback, MappingProxyType(dict(terms or {})),
                options=MappingProxyType(dict(options or {})), **kw)


# The data-driven primitives (amp, sparse, null) are batch means, estimated on the first
# `samples` examples of each batch (weight mirror: on that many white-noise inputs). The
# primitives are linear in these means, so a subset gives an unbiased estimate; B averages
# it over many steps anyway. 64 examples (times every output position of a conv) keep the
# extra convolutions of WM, IA and AA small at large batches; None uses the whole batch.
# `conv_form` says how a conv layer's data primitives are normalised: "reference" (the
# default: [TR]'s code, a batch mean summed over output positions, null on the image-space
# reconstruction) or "per_position" (a mean over positions too; see .primitives).
CONV_FORMS = ("reference", "per_position")
_SAMPLES = {"samples": 64, "conv_form": "reference"}

RULES: dict[str, Rule] = {r.name: r for r in (
    _rule("backprop", "transpose", route="reference", order=0, label="Backprop", short="BP",
          summary="B = Wᵀ (weight transport)"),
    _rule("feedback_alignment", "fixed", route="local", order=10, label="Feedback alignment",
          short="FA", summary="fixed random B"),
    _rule("direct_feedback_alignment", "direct", route="local", order=15,
          label="Direct feedback alignment", short="DFA",
          summary="δx = D e: the output error through a fixed random D per layer"),
    _rule("sign_symmetry", "sign", route="other", order=20, label="Sign symmetry", short="SS",
          summary="B = sign(Wᵀ), scaled to W's init"),
    _rule("weight_mirror", "learned", {"alpha": ("decay", 1e-3), "beta": ("amp", 1e-3)},
          _SAMPLES, noise_inputs=True, route="local", order=30, label="Weight mirror",
          short="WM",
          summary="decay + amp on white-noise inputs"),
    _rule("information_alignment", "learned",
          {"alpha": ("amp", 2e-3), "beta": ("null", 1e-3), "gamma": ("decay", 1e-3)},
          _SAMPLES, route="local", order=40, label="Information alignment", short="IA",
          summary="amp + null + decay"),
    _rule("kolen_pollack", "learned", {"alpha": ("decay", 1e-3)}, transport=True,
          route="estimation", order=50, label="Kolen-Pollack", short="KP",
          summary="B gets W's update (transported) and a decay of its own"),
    _rule("activation_alignment", "learned", {"alpha": ("sparse", 1e-3), "beta": ("amp", 2e-3)},
          _SAMPLES, route="estimation", order=60, label="Activation alignment", short="AA",
          summary="sparse + amp (uses W x)"),
    _rule("symmetric_alignment", "learned", {"alpha": ("decay", 1e-3), "beta": ("self", 2e-3)},
          route="estimation", order=70, label="Symmetric alignment", short="SA",
          summary="decay + self (uses W)"),
)}

# Quick-mode presets for short demos (a few hundred SGD steps at lr ~0.05-0.1, momentum 0.9).
#
# With [TR]'s coefficients and one shared SGD, B approaches its fixed point at about
# lr·α per step (times 1/(1 - momentum)): a time constant of thousands of steps. For the
# rules without data terms (SA, KP) the quick preset scales every coefficient of a rule
# by one factor, which keeps the fixed point and makes the time constant tens of steps.
#
# The data-driven rules (WM, IA, AA) cannot be sped up that way on convolutions: [TR]'s
# primitives sum over a conv's P output positions, so their gradient, and the largest
# stable step, scale with P (1024 for a 32 × 32 layer, 16 near the classifier). Any one
# SGD step size is unstable for the large-P layers (measured: IA and AA at [TR]'s own
# coefficients reach NaN within 150 steps of notebook 05's conv net at lr 0.05) or
# glacial for the small-P ones. Their quick preset therefore keeps [TR]'s coefficients
# (so the same fixed points) and gives B an optimizer of its own, Adam, whose step does
# not scale with P: the reference code's "alignment_optimizer". Kolen-Pollack never gets
# one: its B must receive exactly W's update.
QUICK: dict[str, dict] = {
    "kolen_pollack": {"alpha": 0.0075},
    "symmetric_alignment": {"alpha": 0.05, "beta": 0.1},
}
QUICK_FEEDBACK: dict[str, dict] = {
    "weight_mirror": {"optimizer": "adam", "lr": 0.005},
    "information_alignment": {"optimizer": "adam", "lr": 0.005},
    "activation_alignment": {"optimizer": "adam", "lr": 0.005},
}
FEEDBACK_OPTIMIZERS = ("sgd", "adam")

# The "paper" preset: [TR]'s tuned metaparameters, from data/reference/two_routes.json,
# where that file has them (a rule it has none for keeps the reference code's fallbacks,
# which are the defaults above). See paper_preset_status().
REFERENCE_FILE = Path(__file__).resolve().parents[2] / "data" / "reference" / "two_routes.json"


def _paper_preset() -> tuple[dict, dict]:
    """(coefficients per rule with every tuned value known, {rule: status text})."""
    try:
        tuned = json.loads(REFERENCE_FILE.read_text())["metaparameters"]["tuned"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return {}, {"*": f"{REFERENCE_FILE.name} could not be read ({type(e).__name__}); the "
                         "paper preset equals the default one"}
    preset, status = {}, {}
    for rule, values in tuned.items():
        if not isinstance(values, dict) or rule not in RULES:
            continue
        known = {k: v for k, v in values.items() if isinstance(v, (int, float))}
        if known and len(known) == len(values):
            preset[rule] = known
            status[rule] = "the paper's tuned values"
        else:
            status[rule] = ("not known here (null in two_routes.json): the reference code's "
                            "fallbacks, the same as the default preset")
    return preset, status


PAPER, _PAPER_STATUS = _paper_preset()
PRESETS = {"default": {}, "quick": QUICK, "paper": PAPER}
PRESET_FEEDBACK = {"default": {}, "quick": QUICK_FEEDBACK, "paper": {}}


def paper_preset_status() -> dict:
    """What the "paper" preset holds, per tuned rule: the paper's values, or why not."""
    return dict(_PAPER_STATUS)


def names() -> list[str]:
    """Every registered rule name, sorted."""
    return sorted(RULES)


def ordered(rules=None) -> list[str]:
    """``rules`` (default: every registered rule) in display order; names that are not
    registered come last, sorted."""
    rules = list(RULES) if rules is None else list(dict.fromkeys(rules))
    known = sorted((r for r in rules if r in RULES), key=lambda r: (RULES[r].order, r))
    return known + sorted(r for r in rules if r not in RULES)


def label(rule) -> str:
    """The rule's display name ("Feedback alignment"); the name itself if not registered."""
    r = rule if isinstance(rule, Rule) else RULES.get(rule)
    return (r.label or r.name) if r is not None else str(rule)


def short(rule) -> str:
    """The rule's short name ("FA"); the name itself if not registered."""
    r = rule if isinstance(rule, Rule) else RULES.get(rule)
    return (r.short or r.name) if r is not None else str(rule)


def route(rule) -> str:
    """The rule's route (see :class:`Rule`); ``"other"`` for a name not registered."""
    if isinstance(rule, Rule):
        return rule.route
    return RULES[rule].route if rule in RULES else "other"


def register(rule: Rule, quick: dict | None = None) -> Rule:
    """Add a rule (for instance a new combination of primitives) to the registry."""
    if not isinstance(rule, Rule):
        raise ValueError(f"register takes a Rule, got {type(rule).__name__}")
    if rule.feedback not in FEEDBACK_KINDS:
        raise ValueError(f"rule {rule.name!r}: unknown feedback kind {rule.feedback!r}; use "
                         f"one of {list(FEEDBACK_KINDS)}")
    if rule.route not in ROUTES:
        raise ValueError(f"rule {rule.name!r}: unknown route {rule.route!r}; use one of "
                         f"{list(ROUTES)}")
    from .primitives import PRIMITIVES

    for coef, (prim, _) in rule.terms.items():
        if prim not in PRIMITIVES:
            raise ValueError(f"rule {rule.name!r}: coefficient {coef!r} names unknown "
                             f"primitive {prim!r}; valid: {sorted(PRIMITIVES)}")
    RULES[rule.name] = rule
    if quick is not None:
        QUICK[rule.name] = dict(quick)
    return rule


def get(rule) -> Rule:
    """The :class:`Rule` for a name (or the rule itself). Unknown names raise a
    ValueError that lists the valid ones."""
    if isinstance(rule, Rule):
        return rule
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"unknown learning rule {rule!r}; valid rules are: "
                         f"{', '.join(names())}")
    return RULES[rule]


def feedback_update(rule, preset: str | None = None) -> dict:
    """How the preset updates the rule's B: ``{}`` (the task's optimizer, as in [TR]'s
    reference setup) or ``{"optimizer": "adam", "lr": ...}`` (an optimizer of B's own)."""
    r = get(rule)
    preset = "default" if preset is None else preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return dict(PRESET_FEEDBACK.get(preset, {}).get(r.name, {}))


def resolve(rule, preset: str | None = None, **overrides) -> dict:
    """The rule's settings: its default coefficients and options, then the preset's
    values, then ``overrides``. A name the rule does not have raises a ValueError."""
    r = get(rule)
    if preset is None:
        preset = "default"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    settings = {**r.coefficients, **r.options}
    for source in (PRESETS[preset].get(r.name, {}), overrides):
        unknown = sorted(set(source) - set(settings))
        if unknown:
            valid = ", ".join(sorted(settings)) or "none"
            raise ValueError(f"rule {r.name!r} has no coefficient {', '.join(map(repr, unknown))}"
                             f"; its coefficients and options are: {valid}")
        settings.update(source)
    for k in r.coefficients:
        value = settings[k]
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value) or value < 0):
            raise ValueError(f"coefficient {k!r} of rule {r.name!r} must be a finite number "
                             f">= 0, got {value!r}")
        settings[k] = float(value)
    if settings.get("samples") is not None:
        s = settings["samples"]
        if not isinstance(s, int) or isinstance(s, bool) or s < 1:
            raise ValueError(f"option 'samples' of rule {r.name!r} must be a positive int "
                             f"or None, got {s!r}")
    if "conv_form" in settings and settings["conv_form"] not in CONV_FORMS:
        raise ValueError(f"option 'conv_form' of rule {r.name!r} must be one of "
                         f"{list(CONV_FORMS)}, got {settings['conv_form']!r}")
    return settings
