"""How fast nbkit.pruning prunes, against a textbook loop in the same process.

    python benchmarks/prune_speed.py [--quick] [--device cpu|cuda] [--iterations N]
                                     [--repeats N] [--threads N]

Times SynFlow with 100 iterations (exponential schedule) to ρ = 10³ on vgg16_bn and
resnet20, and SNIP and GraSP once (vgg16_bn, 10 × classes random CIFAR-shaped
samples), each against the textbook baseline below, and prints the speed-up ratios.
``--quick`` runs fewer SynFlow iterations on vgg16_bn (the ratio per iteration is what
matters) so that it finishes in a couple of minutes on a 2-core CPU. On a CPU the
ratio of process CPU times is printed too: it is the steadier number on a busy machine.

The baseline is the loop most implementations write (and the published reference code
uses): float32; every iteration takes the absolute value of every parameter and buffer
in place and restores the signs afterwards, calls ``loss.backward()``, concatenates all
scores and finds a global threshold with ``torch.kthvalue``; masks are buffers that
the forward multiplies into the weights. Ties at the threshold are all pruned.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

import nbkit
from nbkit import pruning

# ------------------------------------------------------------------ textbook baseline


def _masked_forward(module):
    if isinstance(module, nn.Linear):
        return lambda x: F.linear(x, module.weight * module.weight_mask, module.bias)
    return lambda x: module._conv_forward(x, module.weight * module.weight_mask, module.bias)


def textbook_masks(model):
    """Give every Linear/Conv2d a ``weight_mask`` buffer multiplied in its forward."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for m in layers:
        m.register_buffer("weight_mask", torch.ones_like(m.weight))
        m.forward = _masked_forward(m)
    return layers


def _threshold_masks(layers, scores, density):
    flat = torch.cat([s.flatten() for s in scores])
    k = int((1.0 - density) * flat.numel())
    if k < 1:
        return
    threshold = torch.kthvalue(flat, k).values
    zero, one = torch.tensor(0.0, device=flat.device), torch.tensor(1.0, device=flat.device)
    for m, s in zip(layers, scores):
        m.weight_mask.copy_(torch.where(s <= threshold, zero, one))


def textbook_synflow(model, density, iterations, input_shape):
    layers = textbook_masks(model)
    model.eval()
    x = torch.ones((1, *input_shape), device=next(model.parameters()).device)
    for k in range(1, iterations + 1):
        signs = {}
        with torch.no_grad():
            for name, t in model.state_dict().items():
                signs[name] = torch.sign(t)
                t.abs_()
        model.zero_grad()
        model(x).sum().backward()
        scores = [(m.weight.grad * m.weight).detach().abs() for m in layers]
        with torch.no_grad():
            for name, t in model.state_dict().items():
                t.mul_(signs[name])
        _threshold_masks(layers, scores, density ** (k / iterations))
    return layers


def textbook_snip(model, density, batches):
    layers = textbook_masks(model)
    model.eval()
    model.zero_grad()
    for x, y in batches:
        F.cross_entropy(model(x), y).backward()
    scores = [(m.weight.grad * m.weight).detach().abs() for m in layers]
    total = sum(s.sum() for s in scores)
    _threshold_masks(layers, [s / total for s in scores], density)
    return layers


def textbook_grasp(model, density, batches, temperature=200.0):
    layers = textbook_masks(model)
    weights = [m.weight for m in layers]
    model.eval()
    g = None
    for x, y in batches:
        grads = torch.autograd.grad(F.cross_entropy(model(x) / temperature, y), weights)
        g = list(grads) if g is None else [a + b for a, b in zip(g, grads)]
    model.zero_grad()
    for x, y in batches:
        grads = torch.autograd.grad(F.cross_entropy(model(x) / temperature, y), weights,
                                    create_graph=True)
        sum((a * b).sum() for a, b in zip(grads, g)).backward()
    # keep the highest (H g) * theta
    _threshold_masks(layers, [(m.weight.grad * m.weight).detach() for m in layers], density)
    return layers


# ----------------------------------------------------------------------------- timing

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, make, device, repeats):
    """Best wall-clock and process CPU time over ``repeats`` runs on fresh models."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        model = make()
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(model)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, out


def _kept(layers):
    return int(sum(m.weight_mask.sum().item() for m in layers))


def compare(label, base, ours, make, device, repeats):
    """Time ``base(model)`` and ``ours(model)``, each on a fresh ``make()``."""
    t_base, c_base, layers = _time(base, make, device, repeats)
    t_ours, c_ours, masks = _time(ours, make, device, repeats)
    kept_ours = sum(int(m.sum()) for m in masks.values())
    cpu = f"   (CPU time ratio {c_base / c_ours:5.2f}x)" if device.type == "cpu" else ""
    print(f"{label:<34} textbook {t_base:8.3f} s   nbkit {t_ours:8.3f} s   "
          f"ratio {t_base / t_ours:6.2f}x{cpu}   kept {_kept(layers)} / {kept_ours}", flush=True)
    return t_base / t_ours


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations on vgg16_bn")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="SynFlow iterations (default 100; 25 on vgg16_bn with --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs, best kept")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--profile", default=None, metavar="FILE",
                    help="also profile one nbkit SynFlow-100 run on vgg16_bn (after the "
                         "timings) and write torch.profiler's op table to FILE: where the "
                         "time between the ideal 100 x (forward + backward + selection) and "
                         "the measured time goes")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = nbkit.device.get(args.device)
    repeats = args.repeats or (1 if device.type == "cpu" else 3)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    density = 1e-3
    ratios = {}
    for name in ("vgg16_bn", "resnet20"):
        iters = args.iterations or (25 if args.quick and name == "vgg16_bn" else 100)
        nbkit.seed(0)
        model = nbkit.models.build(name, num_classes=10, device=device)
        ratios[f"synflow-{iters} {name}"] = compare(
            f"SynFlow-{iters} to 1e3, {name}",
            lambda m, n=iters: textbook_synflow(m, density, n, m.input_shape),
            lambda m, n=iters: pruning.prune(m, "synflow", density, n),
            lambda model=model: copy.deepcopy(model), device, repeats)
    nbkit.seed(0)
    model = nbkit.models.build("vgg16_bn", num_classes=10, device=device)
    x = torch.randn(100, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (100,), device=device)
    for method, base in (("snip", textbook_snip), ("grasp", textbook_grasp)):
        ratios[f"{method} vgg16_bn"] = compare(
            f"{method.upper()} once to 1e3, vgg16_bn",
            lambda m, base=base: base(m, density, [(x, y)]),
            lambda m, method=method: pruning.prune(m, method, density, data=(x, y)),
            lambda: copy.deepcopy(model), device, repeats)
    print("ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    if args.profile:
        profile_synflow(args.profile, device)
    return ratios


def profile_synflow(path, device, iterations=100):
    """One SynFlow-``iterations`` run on vgg16_bn under torch.profiler: the op table by
    self CPU time (host cost: launches, syncs, Python) and, on CUDA, by device time."""
    from torch.profiler import ProfilerActivity, profile

    nbkit.seed(0)
    model = nbkit.models.build("vgg16_bn", num_classes=10, device=device)
    pruning.prune(copy.deepcopy(model), "synflow", 1e-3, 5)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if device.type == "cuda" else [])
    _sync(device)
    with profile(activities=activities) as prof:
        pruning.prune(model, "synflow", 1e-3, iterations)
        _sync(device)
    table = prof.key_averages()
    text = [f"SynFlow-{iterations} to 1e3, vgg16_bn, {device}, torch {torch.__version__}",
            table.table(sort_by="self_cpu_time_total", row_limit=30)]
    if device.type == "cuda":
        text.append(table.table(sort_by="self_device_time_total", row_limit=30))
    with open(path, "w") as f:
        f.write("\n\n".join(text) + "\n")
    print(f"profile written to {path}")


if __name__ == "__main__":
    main()
