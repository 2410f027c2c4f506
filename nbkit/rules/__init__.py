"""Learning rules without weight symmetry ([TR]: Kunin et al. 2020, and Lillicrap,
Liao, Xiao, Akrout et al.).

A layer y = W x sends its error back as δx = B δy instead of Wᵀ δy; its weight gradient
stays the local δy xᵀ. The rules differ in how B is set or learned:

=========================  ==========================================  ============
rule                       B                                           coefficients
=========================  ==========================================  ============
backprop                   Wᵀ                                          --
feedback_alignment         fixed random                                --
direct_feedback_alignment  none: δx = D e, output error e, fixed D     --
sign_symmetry              sign(Wᵀ), scaled to W                       --
weight_mirror              decay + amp on white-noise inputs           alpha, beta
kolen_pollack              W's update transported, own decay           alpha
information_alignment      amp + null + decay                          alpha, beta, gamma
activation_alignment       sparse + amp                                alpha, beta
symmetric_alignment        decay + self                                alpha, beta
=========================  ==========================================  ============

>>> import nbkit
>>> model = nbkit.models.build("conv")
>>> nbkit.rules.convert(model, "symmetric_alignment", preset="quick")
>>> history = nbkit.train.fit(model, "cifar10-mini", steps=500,
...                           callbacks=[nbkit.rules.AngleLogger(every=25)])
>>> nbkit.rules.alignment_angles(model)           # {layer_name: degrees}

B lives in ``layer.feedback`` (an ``nn.Parameter`` with W's shape, holding Bᵀ); the rule
fills its ``.grad`` in the backward pass, so any optimizer updates W and B together.
Direct feedback alignment (Nøkland 2016) has no B: every layer sends the error at the
network's output through a fixed random D of its own (see :mod:`.direct`).

Cost: every conv's backward is one fused convolution-backward call with B as the weight,
as cheap as backprop's (DFA's is the weight gradient alone, plus one product of the
output error with D). FA, SS, SA and KP add no convolution (SA's and KP's B gradients
are closed form or reuse δW). Per conv, AA and IA add one forward convolution and one
weight-gradient call (IA also a channels-by-channels Gram matrix), WM the same on white
noise; all on at most ``samples`` (default 64) examples of the batch. Angles cost nothing
until asked.
"""

from .angles import alignment_angles, angle, gradient_angles, norm_ratios, weight_layers
from .callbacks import AngleLogger, NoisyUpdates
from .convert import (
    convert,
    converted_layers,
    feedback_parameters,
    param_groups,
    rule_of,
    unconvert,
)
from .functions import DirectFeedbackFunction, FeedbackFunction
from .layers import FeedbackConv2d, FeedbackLinear
from .registry import (
    PAPER,
    QUICK,
    QUICK_FEEDBACK,
    ROUTES,
    RULES,
    Rule,
    get,
    names,
    ordered,
    paper_preset_status,
    register,
    resolve,
    route,
)

__all__ = [
    "convert", "unconvert", "names", "ordered", "route", "ROUTES", "get", "resolve", "register",
    "Rule", "RULES", "QUICK", "QUICK_FEEDBACK", "PAPER", "paper_preset_status",
    "alignment_angles", "gradient_angles", "norm_ratios", "angle", "weight_layers",
    "AngleLogger", "NoisyUpdates", "FeedbackLinear", "FeedbackConv2d", "FeedbackFunction",
    "DirectFeedbackFunction",
    "converted_layers", "feedback_parameters", "param_groups", "rule_of",
]
