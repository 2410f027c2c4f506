"""Which prunable layer reads which: the layer graph the probes need.

One forward pass with hooks records, for every prunable layer (Linear, Conv2d) and
every other leaf module, the autograd node of its output and of its inputs. Walking
the autograd graph back from a layer's input, jumping over whole modules, finds the
prunable layers that feed it and every module and operation in between. From that:

- **sites**: groups of hidden units. Usually a site is the output of one layer; where
  a residual add merges several layers' outputs (or a skip path carries a site on),
  those layers form one site, because a channel of the sum is one unit for the law.
- **cuts**: a set of layers is a cut when removing it leaves no path from the input
  to the output. In a chain every layer is a cut; in a residual block a main-path
  layer is one only together with the shortcut.

The trace runs the model once, in eval mode, on an all-ones input, and restores the
model's train/eval flags afterwards. It never calls backward, so nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .. import layers as _layers
from ..pruning.masks import kept_pruned_attributes

__all__ = ["PRUNABLE", "Layer", "Site", "LayerGraph", "trace", "canonical_name"]

PRUNABLE = (nn.Linear, nn.Conv2d)

#: Modules that act on each channel by itself: neuron flows pass through them.
CHANNELWISE = (
    nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
    nn.Softplus, nn.Hardtanh, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Flatten, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.BatchNorm1d, nn.BatchNorm2d,
)
#: Positively homogeneous modules, phi(a x) = a phi(x) for a > 0 (BatchNorm aside).
HOMOGENEOUS = (
    nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Flatten,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)

# Autograd operations outside modules (x + y, torch.flatten, F.relu, x.mean(...)) that keep
# channels apart, by the start of their node name; the second set is also homogeneous.
_CHANNELWISE_OPS = ("Add", "View", "Reshape", "UnsafeView", "Clone", "ToCopy", "Relu",
                    "Threshold", "LeakyRelu", "MaxPool", "AvgPool", "AdaptiveAvgPool",
                    "AdaptiveMaxPool", "Mean", "Squeeze", "Unsqueeze", "Tanh", "Sigmoid",
                    "Gelu", "Silu", "Elu", "Softplus", "Hardtanh", "Flatten", "Alias")
_NONHOMOGENEOUS_OPS = ("Tanh", "Sigmoid", "Gelu", "Silu", "Elu", "Softplus", "Hardtanh")


def canonical_name(name: str) -> str:
    """The name a parameter had before pruning reparametrised it:
    ``a.parametrizations.weight.original`` and ``a.weight_orig`` become ``a.weight``."""
    if ".parametrizations." in f".{name}":
        head, _, tail = f".{name}".partition(".parametrizations.")
        tensor = tail.split(".")[0]
        return f"{head}.{tensor}".lstrip(".")
    if name.endswith("_orig"):
        return name[: -len("_orig")]
    return name


def _inside_prunable(name: str, prunable_names: set[str]) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in prunable_names for i in range(1, len(parts)))


@dataclass
class Layer:
    """A prunable layer: its module name, weight/bias keys and where it runs."""

    name: str
    module: nn.Module
    weight: str
    bias: str | None
    order: int
    nodes: list = field(default_factory=list, repr=False)

    @property
    def channels(self) -> int:
        m = self.module
        return m.out_features if isinstance(m, nn.Linear) else m.out_channels


@dataclass
class Site:
    """Hidden units: the outputs of ``producers`` (merged by residual adds), read by
    ``consumers``; ``modules`` and ``ops`` lie between them."""

    producers: list[str]
    consumers: list[str]
    modules: list[str]
    ops: list[str]
    channels: int = 0
    touches_input: bool = False
    touches_output: bool = False


@dataclass
class LayerGraph:
    """The traced structure of a model. See the module docstring."""

    layers: dict[str, Layer]
    sites: list[Site]
    modules: dict[str, nn.Module]
    input_readers: list[str]
    output_feeders: list[str]
    output_modules: list[str] = field(default_factory=list)
    output_ops: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    _outputs: list = field(repr=False, default_factory=list)
    _input: object = field(repr=False, default=None)

    def reaches_input(self, blocked: set[str]) -> bool:
        """Whether some path runs from the input to the output avoiding ``blocked`` layers."""
        stop = {id(n) for name in blocked for n in self.layers[name].nodes}
        stack, seen = list(self._outputs), set()
        while stack:
            node = stack.pop()
            if node is None or id(node) in seen or id(node) in stop:
                continue
            if node is self._input:
                return True
            seen.add(id(node))
            stack.extend(f for f, _ in node.next_functions)
        return False

    def is_cut(self, names) -> bool:
        """Whether the layers ``names`` together separate the input from the output."""
        return not self.reaches_input(set(names))

    def ancestors(self, name: str) -> set[str]:
        """The prunable layers that run before ``name`` on some path into it."""
        by_node = {id(n): lay.name for lay in self.layers.values() for n in lay.nodes}
        found, seen = set(), set()
        stack = [f for n in self.layers[name].nodes for f, _ in n.next_functions]
        while stack:
            node = stack.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if id(node) in by_node:
                found.add(by_node[id(node)])
            stack.extend(f for f, _ in node.next_functions)
        return found

    def cuts(self) -> list[list[str]]:
        """Minimal cuts, each a list of layer names in execution order, ordered by their
        first layer. A layer that is a cut alone is its own cut; another layer joins the
        layers that run beside it (neither before nor after it), and the set is trimmed
        to a minimal cut. Layers on a path that some parameter-free skip bypasses belong
        to no cut."""
        names = list(self.layers)
        single = {n for n in names if self.is_cut([n])}
        rest = [n for n in names if n not in single]
        anc = {n: self.ancestors(n) for n in rest}
        found = {frozenset([n]) for n in single}
        for a in rest:
            beside = [b for b in rest if b != a and b not in anc[a] and a not in anc[b]]
            group = [a, *beside]
            if not self.is_cut(group):
                continue
            for b in beside:
                trial = [g for g in group if g != b]
                if self.is_cut(trial):
                    group = trial
            found.add(frozenset(group))
        order = {n: self.layers[n].order for n in names}
        cuts = [sorted(c, key=order.get) for c in found]
        return sorted(cuts, key=lambda c: (order[c[0]], len(c), [order[n] for n in c]))


class _Call:
    __slots__ = ("name", "inputs", "output")

    def __init__(self, name, inputs, output):
        self.name, self.inputs, self.output = name, inputs, output


def _tensors(obj):
    if torch.is_tensor(obj):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def trace(model: nn.Module, input_shape) -> LayerGraph:
    """Trace ``model`` on one all-ones input of ``input_shape`` (without the batch
    dimension) and return its :class:`LayerGraph`."""
    _layers.refuse(model, "probes", what="the conservation probes cannot trace this model")
    named = dict(model.named_modules())
    prunable = {n for n, m in named.items() if isinstance(m, PRUNABLE)}
    if not prunable:
        raise ValueError("the model has no prunable layer (nn.Linear or nn.Conv2d); "
                         "the conservation probes need at least one")
    params = dict(model.named_parameters())
    layers: dict[str, Layer] = {}
    for name in prunable:
        m = named[name]
        w = [k for k in params if k.startswith(f"{name}.") and
             canonical_name(k) == f"{name}.weight".lstrip(".")]
        b = f"{name}.bias".lstrip(".") if getattr(m, "bias", None) is not None else None
        layers[name] = Layer(name, m, canonical_name(w[0]) if w else f"{name}.weight", b, -1)

    hooked = [n for n, m in named.items() if n in prunable or
              (not list(m.children()) and not _inside_prunable(n, prunable))]
    calls: list[_Call] = []
    pending: dict[str, list] = {}
    handles = []

    def pre_hook(name):
        def hook(module, args):
            pending[name] = [t.grad_fn for t in _tensors(args) if t.grad_fn is not None]
        return hook

    def post_hook(name):
        def hook(module, args, output):
            outs = [t.grad_fn for t in _tensors(output) if t.grad_fn is not None]
            ins = pending.pop(name, [])
            if len(outs) == 1 and outs[0] not in ins:
                calls.append(_Call(name, ins, outs[0]))
        return hook

    flags = {m: m.training for m in model.modules()}
    p = next(model.parameters())
    x = torch.ones((1, *input_shape), dtype=p.dtype, device=p.device, requires_grad=True)
    # pruning's forward pre-hooks set plain ``module.weight`` attributes: put them back
    with kept_pruned_attributes(model):
        try:
            for n in hooked:
                handles.append(named[n].register_forward_pre_hook(pre_hook(n)))
                handles.append(named[n].register_forward_hook(post_hook(n)))
            model.eval()
            with torch.enable_grad():
                xin = x.clone()
                out = model(xin)
        finally:
            for h in handles:
                h.remove()
            for m, t in flags.items():
                m.training = t
    outputs = [t.grad_fn for t in _tensors(out) if t.grad_fn is not None]

    for i, c in enumerate(calls):
        if c.name in layers:
            lay = layers[c.name]
            lay.nodes.append(c.output)
            if lay.order < 0:
                lay.order = i
    unused = [n for n, lay in layers.items() if lay.order < 0]
    layers = {n: lay for n, lay in sorted(layers.items(), key=lambda kv: kv[1].order)
              if lay.order >= 0}
    if not layers:
        raise ValueError("no prunable layer ran in the model's forward pass")
    graph = _link(layers, calls, outputs, xin.grad_fn, named, params)
    graph.unused = unused
    return graph


def _walk(starts, layer_of, call_of, input_node, params_by_id):
    """Walk back from ``starts`` to the prunable layers (and/or the input) that feed them.
    Returns (sources, module names, op names) where the input is the source ``None``."""
    sources, modules, ops = set(), [], []
    stack, seen = list(starts), set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if id(node) in layer_of:
            sources.add(layer_of[id(node)])
        elif node is input_node:
            sources.add(None)
        elif id(node) in call_of:
            call = call_of[id(node)]
            modules.append(call.name)
            stack.extend(call.inputs)
        elif hasattr(node, "variable"):
            name = params_by_id.get(id(node.variable))
            if name is not None:
                ops.append(f"parameter {name}")
        else:
            nxt = [f for f, _ in node.next_functions if f is not None]
            ops.append(f"{node.name()}/{len(nxt)}")
            stack.extend(nxt)
    return sources, modules, ops


def _link(layers, calls, outputs, input_node, named, params) -> LayerGraph:
    layer_of = {id(n): name for name, lay in layers.items() for n in lay.nodes}
    call_of = {id(c.output): c for c in calls if c.name not in layers}
    params_by_id = {id(p): n for n, p in params.items()}
    reads: dict[str, set] = {}
    between: dict[str, tuple[list, list]] = {}
    for c in calls:
        if c.name in layers:
            src, mods, ops = _walk(c.inputs, layer_of, call_of, input_node, params_by_id)
            reads.setdefault(c.name, set()).update(src)
            m0, o0 = between.setdefault(c.name, ([], []))
            m0.extend(mods)
            o0.extend(ops)
    out_src, out_mods, out_ops = _walk(outputs, layer_of, call_of, input_node, params_by_id)

    # union-find over producers that feed one consumer together (residual adds)
    parent = {n: n for n in layers}

    def find(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for src in [*reads.values(), out_src]:
        src = [s for s in src if s is not None]
        for s in src[1:]:
            parent[find(s)] = find(src[0])
    groups: dict[str, Site] = {}
    for name in layers:
        root = find(name)
        site = groups.setdefault(root, Site([], [], [], []))
        site.producers.append(name)
    for consumer, src in reads.items():
        prods = [s for s in src if s is not None]
        if not prods:
            continue
        site = groups[find(prods[0])]
        site.consumers.append(consumer)
        site.touches_input |= None in src
        mods, ops = between[consumer]
        site.modules.extend(m for m in mods if m not in site.modules)
        site.ops.extend(o for o in ops if o not in site.ops)
    for s in out_src:
        if s is not None:
            groups[find(s)].touches_output = True
    for site in groups.values():
        site.channels = layers[site.producers[0]].channels
    input_readers = [n for n, src in reads.items() if None in src]
    return LayerGraph(layers, list(groups.values()), named, input_readers,
                      [s for s in out_src if s is not None], out_mods, out_ops,
                      _outputs=outputs, _input=input_node)
