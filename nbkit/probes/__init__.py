"""Conservation-law probes: see why single-shot pruning empties the largest layers.

Synaptic saliency S = dR/dθ ⊙ θ obeys two conservation laws in networks with
homogeneous activations (ReLU, pooling) and no biases: every hidden unit passes on
the saliency it receives (neuron-wise), and every cut of the network carries the
same total, <dR/dx, x> (network-wise). These probes measure both on any model and
name what breaks them.

>>> S = saliency(model, "synflow")             # {param_name: tensor}
>>> layer_totals(model, S)                     # {weight_name: float}, all equal
>>> fig4_points(model, S)["slope"]             # -1: average score ∝ 1 / layer size
>>> print(conservation_report(model, "loss", data=(x, y)))
neuron-wise: holds to 3e-16
network-wise: holds to 2e-15

Everything runs on a copy of the model (float64 by default, on the GPU when there is
one); the model itself never changes.
"""

from .flows import fig4_points, flow_ratio, layer_sizes, layer_totals, neuron_flows
from .graph import LayerGraph, trace
from .report import ConservationReport, conservation_report
from .saliency import OBJECTIVES, saliency

__all__ = ["saliency", "layer_totals", "layer_sizes", "fig4_points", "neuron_flows",
           "conservation_report", "ConservationReport", "flow_ratio", "trace", "LayerGraph",
           "OBJECTIVES"]
