"""Training-step cost of every learning rule, as a ratio to backprop, in one run.

A step is forward, backward and an SGD (momentum) step over ``nbkit.rules.param_groups``.
Rules are timed in interleaved rounds (every rule once per round) and each rule's
median step time is divided by backprop's from the same rounds.

    python benchmarks/rule_overhead.py --quick              # CPU, a couple of minutes
    python benchmarks/rule_overhead.py --device cuda        # bf16, batch 256, 32 and 224 px
    python benchmarks/rule_overhead.py --device cuda --compile --size 32   # the whole step

On a busy CPU, ``--threads 1`` gives steadier ratios.

Targets ([TR] on an H100, bf16, batch 256): FA, SS, SA and KP <= 1.10x backprop;
WM, IA and AA <= 1.6x.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

import nbkit
from nbkit import rules
from nbkit.step import WholeStep, unsupported


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def make_step(model, dev, dtype, batch, size, channels_last, compile=False):
    groups = rules.param_groups(model, lr=0.01, weight_decay=5e-4)
    kw = {"fused": True} if dev.type == "cuda" else {"foreach": True}
    opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9, **kw)
    x = torch.randn(batch, 3, size, size, device=dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=dev)
    amp = torch.autocast(dev.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    if compile and unsupported(model, opt) is None:  # the whole step, one graph
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
        whole = WholeStep(model, opt, autocast=amp,
                          mode="reduce-overhead" if dev.type == "cuda" else None)
        whole.prepare()
        zero = {"device": dev, "dtype": torch.long}
        counters = ([torch.zeros((), device=dev)], [torch.zeros((), **zero)], None,
                    torch.zeros((), **zero))
        whole.keep(*counters[0], *counters[1], counters[3])
        return lambda: whole(x, y, None, 1.0, counters)
    if compile:  # direct feedback alignment: the model alone
        model = torch.compile(model, mode="reduce-overhead" if dev.type == "cuda" else None)

    def step():
        with amp:
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def bench_model(arch, size, rule_names, args, dev, dtype):
    nbkit.seed(0)
    base = nbkit.models.build(arch, input_shape=(3, size, size))
    steps = {}
    for rule in rule_names:
        model = copy.deepcopy(base)
        extra = {"samples": args.samples or None} if args.samples is not None and \
            "samples" in rules.get(rule).options else {}
        rules.convert(model, rule, seed=0, **extra)
        model.to(dev)
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        steps[rule] = make_step(model, dev, dtype, args.batch, size, args.channels_last,
                                args.compile)
    for _ in range(args.warmup):
        for rule in rule_names:
            steps[rule]()
    _sync(dev)
    times = {rule: [] for rule in rule_names}
    for _ in range(args.steps):
        for rule in rule_names:
            _sync(dev)
            t0 = time.perf_counter()
            steps[rule]()
            _sync(dev)
            times[rule].append(time.perf_counter() - t0)
    return {rule: statistics.median(ts) for rule, ts in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="32 px only, small batch, few steps (CPU smoke run)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--batch", type=int, default=None, help="default 256 (8 with --quick)")
    p.add_argument("--size", type=int, nargs="+", default=None,
                   help="input sizes in px (default 32 224; 32 with --quick)")
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet20"])
    p.add_argument("--rules", nargs="+", default=rules.names())
    p.add_argument("--steps", type=int, default=None, help="timed rounds (default 20; 10 quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds (default 5; 2 quick)")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default=None,
                   help="autocast dtype (default bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--samples", type=int, default=None,
                   help="examples per batch the WM/IA/AA updates are estimated on "
                        "(default: the rules' own, 64; 0: the whole batch)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--compile", action="store_true",
                   help="time the compiled whole step (nbkit.step.WholeStep: forward, "
                        "backward, B's update and SGD in one graph; CUDA graphs on a GPU) "
                        "for every rule and for backprop")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)

    dev = nbkit.device.get(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.batch = args.batch or (8 if args.quick else 256)
    args.steps = args.steps or (10 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    sizes = args.size or ([32] if args.quick else [32, 224])
    if args.dtype is None:
        args.dtype = "bf16" if dev.type == "cuda" else "fp32"
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    if args.channels_last is None:
        args.channels_last = dev.type == "cuda"
    rule_names = ["backprop"] + [r for r in args.rules if r != "backprop"]
    for r in rule_names:
        rules.get(r)

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else \
        f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}, {args.dtype}, batch {args.batch}, {args.steps} timed rounds, "
          f"compile={args.compile}, "
          f"channels_last={args.channels_last}, torch {torch.__version__}")
    results = []
    for size in sizes:
        for arch in args.models:
            t = bench_model(arch, size, rule_names, args, dev, dtype)
            print(f"\n{arch} @ {size}px: backprop {1e3 * t['backprop']:.1f} ms/step")
            for rule in rule_names:
                ratio = t[rule] / t["backprop"]
                print(f"  {rule:24s} {1e3 * t[rule]:9.1f} ms  {ratio:5.2f}x")
                results.append({"model": arch, "size": size, "rule": rule,
                                "ms": 1e3 * t[rule], "ratio": ratio})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "dtype": args.dtype, "batch": args.batch,
                       "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
