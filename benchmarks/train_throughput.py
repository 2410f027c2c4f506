"""Training throughput: nbkit's pipeline against a plain torchvision DataLoader pipeline.

    python benchmarks/train_throughput.py            # full CIFAR-10, resnet20 and vgg16_bn
    python benchmarks/train_throughput.py --quick    # cifar10-mini, a few dozen steps, CPU-friendly

Both pipelines run in this one process on the same device, with the same model, batch size,
augmentation (random crop with 4-pixel padding, horizontal flip), optimizer (SGD, Nesterov),
bf16 autocast and channels_last on CUDA. The baseline is the textbook loop: a DataLoader with
worker processes applying torchvision transforms per image, and an eager step. nbkit keeps the
uint8 images on the device, augments whole batches there, and (``--compile step``, the default
on CUDA) captures the whole step -- augmentation, forward, backward, SGD and the running metrics
-- in one torch.compile graph, a CUDA graph on a GPU (``--compile model``: the model alone, the
earlier setting). nbkit trains two epochs and the second is timed, so compilation is left out.
Prints seconds per epoch and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision.transforms import v2

import nbkit
from nbkit.train import fit, make_optimizer


class _TransformedTensors(torch.utils.data.Dataset):
    def __init__(self, split, mean, std):
        self.x, self.y = split.x.cpu(), split.y.cpu()
        self.transform = v2.Compose([
            v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(self.x[i]), self.y[i]


def dataloader_fit(model, dataset, epochs=1, *, lr=0.1, batch_size=128, workers=8, device="cpu",
                   max_steps=None, weight_decay=5e-4):
    """The plain pipeline: DataLoader + per-image torchvision transforms + an eager step,
    cosine schedule per step. Returns the seconds of each epoch."""
    dev = nbkit.device.get(device)
    loader = DataLoader(_TransformedTensors(dataset.train, dataset.mean, dataset.std),
                        batch_size=batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=dev.type == "cuda",
                        persistent_workers=workers > 0)
    model.to(dev).train()
    cuda = dev.type == "cuda"
    if cuda:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, lr, 0.9, True, weight_decay, dev)
    total = epochs * len(loader) if max_steps is None else max_steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.5 * (1 + torch.cos(torch.tensor(torch.pi * t / total)).item()))
    times, step = [], 0
    for _ in range(epochs):
        t0 = time.perf_counter()
        for x, y in loader:
            if step >= total:
                break
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="cifar10-mini and a few steps, to check the benchmark runs on a CPU")
    parser.add_argument("--device", default=None)
    parser.add_argument("--models", nargs="+", default=["resnet20", "vgg16_bn"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--compile", choices=["auto", "step", "model", "off"], default="auto",
                        help="auto: the whole step on CUDA, off on the CPU")
    args = parser.parse_args(argv)

    dev = nbkit.device.get(args.device)
    data = nbkit.data.load("cifar10-mini" if args.quick else "cifar10")
    steps = min(20, len(data.train) // args.batch) if args.quick else None
    workers = args.workers if args.workers is not None else (2 if args.quick else 8)
    use_compile = {"auto": "step" if dev.type == "cuda" else False, "step": "step",
                   "model": "model", "off": False}[args.compile]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"device: {name} | torch {torch.__version__} | data: {data.name} "
          f"({len(data.train)} train) | batch {args.batch} | compile={use_compile}")

    for arch in args.models:
        nbkit.seed(0)
        model = nbkit.models.build(arch)
        common = dict(batch_size=args.batch, device=dev, compile=use_compile, progress=False)
        # two epochs in one fit: the first compiles, the second is timed (training only,
        # evaluation excluded); --quick: the second epoch stops after `steps` steps
        per_epoch = len(data.train) // args.batch
        h = fit(model, data, **({"steps": per_epoch + steps} if steps else {"epochs": 2}),
                **common)
        ours = h["time"][-1]
        nbkit.seed(0)
        base_model = nbkit.models.build(arch)
        dataloader_fit(base_model, data, 1, batch_size=args.batch, workers=workers, device=dev,
                       max_steps=3)  # warm-up
        base = dataloader_fit(base_model, data, 1, batch_size=args.batch, workers=workers,
                              device=dev, max_steps=steps)[-1]
        unit = f"{steps} steps" if steps else "epoch"
        print(f"{arch:10s} nbkit {ours:7.2f} s/{unit} | DataLoader+eager {base:7.2f} s/{unit} "
              f"| speed-up {base / ours:5.2f}x")


if __name__ == "__main__":
    main()
