"""Datasets as uint8 tensors, served in batches from the device they live on.

>>> ds = load("cifar10-mini")              # shipped in data/, works offline
>>> for x, y in ds.loader("train", batch_size=128, device="cpu"): ...

Three datasets are registered:

- ``cifar10``: all of CIFAR-10 (50,000 train, 10,000 test). Found in ``root``, then in
  ``$NBKIT_DATA``, then in the repository's ``data/`` folder, in any of these forms:
  the JPEG archive ``cifar10-jpeg.tar.gz``, its extracted ImageFolder tree
  (``train/<class>/*.jpg``, ``test/<class>/*.jpg``, optionally inside ``cifar10-jpeg/``),
  or torchvision's ``cifar-10-batches-py``. With ``download=True`` torchvision fetches
  it into ``data/`` when there is internet access.
- ``cifar10-mini``: a class-balanced subset of CIFAR-10 (5,000 train, 1,000 test),
  stored as JPEG bytes in ``data/cifar10-mini.npz``; see :func:`make_mini`.
- ``synthetic``: random images whose labels come from a fixed random linear teacher,
  for shape-only work and smoke tests.

Decoded images are cached as uint8 tensors (``$NBKIT_CACHE``, default
``~/.cache/nbkit``), so JPEG decoding happens once per machine.
"""

from __future__ import annotations

import hashlib
import math
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .device import get as get_device

__all__ = ["load", "names", "from_tensors", "Dataset", "Split", "Batches", "augment",
           "make_mini",
           "CIFAR10_CLASSES", "DATA_DIR"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MINI_FILE = "cifar10-mini.npz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


# ----------------------------------------------------------------------------- types

@dataclass
class Split:
    """One split: ``x`` uint8 images (N, C, H, W) and ``y`` int64 labels (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self):
        return len(self.y)

    def to(self, device) -> Split:
        return Split(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True))


@dataclass
class Dataset:
    """A labelled image dataset held as uint8 tensors, with its normalisation."""

    name: str
    train: Split
    test: Split
    classes: tuple
    mean: tuple = CIFAR10_MEAN
    std: tuple = CIFAR10_STD
    source: str = ""
    info: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.train.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, which: str) -> Split:
        if which not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {which!r}")
        return self.train if which == "train" else self.test

    def to(self, device) -> Dataset:
        """A copy of the dataset whose tensors live on ``device`` (kept as uint8)."""
        dev = get_device(device)
        return Dataset(self.name, self.train.to(dev), self.test.to(dev), self.classes,
                       self.mean, self.std, self.source, dict(self.info))

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> Dataset:
        """A class-balanced random subset with at most ``train``/``test`` images."""
        def pick(s: Split, n):
            if n is None or n >= len(s):
                return s
            idx = _balanced_indices(s.y.cpu(), n, seed).to(s.y.device)
            return Split(s.x[idx], s.y[idx])
        return Dataset(self.name, pick(self.train, train), pick(self.test, test), self.classes,
                       self.mean, self.std, self.source, dict(self.info))

    def downsample(self, size: int) -> Dataset:
        """A copy with every image average-pooled to ``size`` × ``size`` pixels (uint8
        kept), for MLPs that should train in a fraction of a second."""
        h = self.input_shape[1]
        if not isinstance(size, int) or size < 1 or h % size:
            raise ValueError(f"image size must be a positive int dividing the image height "
                             f"{h}, got {size!r}")

        def shrink(split: Split) -> Split:
            x = F.avg_pool2d(split.x.float(), h // size).round_().to(torch.uint8)
            return Split(x, split.y)

        return Dataset(f"{self.name}-{size}px", shrink(self.train), shrink(self.test),
                       self.classes, self.mean, self.std, self.source,
                       dict(self.info, image_size=size))

    def loader(self, split="train", batch_size=128, *, shuffle=None, augment=None,
               device=None, drop_last=None, seed=None, channels_last=False) -> Batches:
        """Batches of normalised float images and labels on ``device``.

        Training batches are shuffled and augmented (random crop with 4-pixel padding and
        horizontal flip, done on the device) unless told otherwise; test batches are not.
        """
        train = split == "train"
        return Batches(self, split, batch_size,
                       shuffle=train if shuffle is None else shuffle,
                       augment=train if augment is None else augment,
                       device=device, drop_last=train if drop_last is None else drop_last,
                       seed=seed, channels_last=channels_last)

    def pruning_batches(self, n_samples: int | None = None, batch_size: int = 256, *,
                        device=None, seed: int = 0, augment: bool = True) -> list:
        """The pruning data of SNIP and GraSP: ``n_samples`` (default 10 per class) random,
        class-balanced training images with training augmentation, in batches."""
        n = n_samples or 10 * self.num_classes
        idx = _balanced_indices(self.train.y.cpu(), n, seed)
        dev = get_device(device)
        x = self.train.x[idx.to(self.train.x.device)].to(dev)
        y = self.train.y[idx.to(self.train.y.device)].to(dev)
        gen = torch.Generator(device=dev).manual_seed(seed)
        xs = normalize(x, self.mean, self.std)
        if augment:
            xs = globals()["augment"](xs, generator=gen)
        return [(xs[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]

    def __repr__(self):
        return (f"Dataset({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
                f"input_shape={self.input_shape}, classes={self.num_classes}, "
                f"source={Path(self.source).name!r})")


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32, scaled to [0, 1] and standardised per channel."""
    m = torch.tensor(mean, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (x.float().div_(255) - m) / s


def augment(x: torch.Tensor, pad: int = 4, flip: bool = True, generator=None) -> torch.Tensor:
    """Random crop with ``pad`` zero pixels of padding, and a random horizontal flip, for
    a whole batch at once on its own device (no per-image Python work)."""
    n, c, h, w = x.shape
    dev = x.device
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=dev, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=dev, generator=generator)
    rows = (dy + torch.arange(h, device=dev)).view(n, 1, h, 1)
    cols = (dx + torch.arange(w, device=dev)).view(n, 1, 1, w)
    out = xp[torch.arange(n, device=dev).view(n, 1, 1, 1),
             torch.arange(c, device=dev).view(1, c, 1, 1), rows, cols]
    if flip:
        mirror = torch.rand(n, device=dev, generator=generator) < 0.5
        out = torch.where(mirror.view(n, 1, 1, 1), out.flip(3), out)
    return out


class Batches:
    """An iterable over one split in batches, kept and augmented on ``device``.

    The uint8 images are moved to the device once; each epoch draws a permutation there,
    so iterating needs no DataLoader, no worker processes and no host synchronisation.
    """

    def __init__(self, dataset: Dataset, split="train", batch_size=128, *, shuffle=True,
                 augment=True, device=None, drop_last=True, seed=None, channels_last=False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.device = get_device(device)
        self.data = dataset.split(split).to(self.device)
        self.batch_size = int(batch_size)
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.channels_last = channels_last
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._mean = torch.tensor(dataset.mean, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(dataset.std, device=self.device).view(1, -1, 1, 1)

    def __len__(self):
        n = len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.data)
        if self.shuffle:
            order = torch.randperm(n, device=self.device, generator=self.generator)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.data.x[idx]
            if self.augment:
                x = augment(x, generator=self.generator)
            x = (x.float().div_(255) - self._mean) / self._std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.data.y[idx]


# --------------------------------------------------------------------------- loading

def _balanced_indices(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` indices into ``y``, as equal per class as possible, drawn with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    classes = torch.unique(y)
    per = [n // len(classes) + (1 if i < n % len(classes) else 0) for i in range(len(classes))]
    picks = []
    for c, k in zip(classes.tolist(), per):
        members = torch.nonzero(y == c).flatten()
        picks.append(members[torch.randperm(len(members), generator=gen)[:k]])
    return torch.sort(torch.cat(picks)).values


def _cache_dir() -> Path:
    path = Path(os.environ.get("NBKIT_CACHE", Path.home() / ".cache" / "nbkit"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cached(key: str, make):
    """Load ``key`` from the tensor cache, or build it with ``make()`` and store it."""
    path = _cache_dir() / f"{key}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a torn or stale cache file: rebuild it
            path.unlink(missing_ok=True)
    value = make()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(value, tmp)
    os.replace(tmp, path)
    return value


def _decode_jpegs(blobs: list) -> torch.Tensor:
    """Decode a list of JPEG byte strings to one uint8 (N, 3, H, W) tensor."""
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    out = []
    for i in range(0, len(tensors), 4096):
        out.extend(decode_jpeg(tensors[i:i + 4096], mode=ImageReadMode.RGB))
    return torch.stack(out)


def _read_image_folder(split_dir: Path):
    """(jpeg byte strings, labels) of an ImageFolder split, classes sorted by name."""
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if tuple(classes) != CIFAR10_CLASSES:
        raise FileNotFoundError(f"{split_dir} does not hold the 10 CIFAR-10 class folders "
                                f"(found {classes[:12]})")
    blobs, labels = [], []
    for label, name in enumerate(classes):
        for f in sorted((split_dir / name).iterdir()):
            blobs.append(f.read_bytes())
            labels.append(label)
    return blobs, labels


def _read_archive(path: Path):
    """{split: (jpeg byte strings, labels)} from the CIFAR-10 JPEG tar.gz archive."""
    out = {"train": ([], []), "test": ([], [])}
    index = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    with tarfile.open(path, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")),
                         key=lambda m: m.name)
        for m in members:
            parts = Path(m.name).parts
            split, cls = parts[-3], parts[-2]
            if split in out and cls in index:
                out[split][0].append(tar.extractfile(m).read())
                out[split][1].append(index[cls])
    if not out["train"][0] or not out["test"][0]:
        raise FileNotFoundError(f"{path} does not hold train/<class>/*.jpg and "
                                "test/<class>/*.jpg images")
    return out


def _from_blobs(parts) -> dict:
    return {split: (_decode_jpegs(blobs), torch.tensor(labels, dtype=torch.int64))
            for split, (blobs, labels) in parts.items()}


def _from_torchvision(folder: Path) -> dict:
    from torchvision.datasets import CIFAR10

    out = {}
    for split in ("train", "test"):
        ds = CIFAR10(str(folder), train=split == "train", download=False)
        out[split] = (torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                      torch.tensor(ds.targets, dtype=torch.int64))
    return out


def _search_dirs(root) -> list[Path]:
    if root is not None:
        return [Path(root).expanduser()]
    dirs = []
    if os.environ.get("NBKIT_DATA"):
        dirs.append(Path(os.environ["NBKIT_DATA"]).expanduser())
    dirs.append(DATA_DIR)
    return dirs


def _find_cifar10(dirs: list[Path]):
    """(kind, path) of the first CIFAR-10 copy found in ``dirs``, or None."""
    for d in dirs:
        for base in (d / "cifar10-jpeg", d / "cifar10", d):
            if (base / "train").is_dir() and (base / "test").is_dir():
                return "folder", base
        if (d / "cifar10-jpeg.tar.gz").is_file():
            return "archive", d / "cifar10-jpeg.tar.gz"
        if (d / "cifar-10-batches-py").is_dir():
            return "torchvision", d
    return None


def _cifar10(root=None, download=False) -> Dataset:
    dirs = _search_dirs(root)
    found = _find_cifar10(dirs)
    if found is None and download:
        from torchvision.datasets import CIFAR10

        target = dirs[0]
        target.mkdir(parents=True, exist_ok=True)
        CIFAR10(str(target), train=True, download=True)
        CIFAR10(str(target), train=False, download=True)
        found = ("torchvision", target)
    if found is None:
        looked = ", ".join(str(d) for d in dirs)
        raise FileNotFoundError(
            f"CIFAR-10 not found; looked in: {looked} for cifar10-jpeg.tar.gz, an ImageFolder "
            "tree (train/<class>/*.jpg, test/<class>/*.jpg) or cifar-10-batches-py/. Set "
            "NBKIT_DATA to the folder that holds one, pass root=..., or pass download=True "
            "to fetch it with torchvision (needs internet). The shipped 'cifar10-mini' works "
            "offline.")
    kind, path = found
    stat = path.stat()
    key = hashlib.sha1(f"{kind}:{path.resolve()}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    readers = {"folder": lambda: _from_blobs({s: _read_image_folder(path / s)
                                              for s in ("train", "test")}),
               "archive": lambda: _from_blobs(_read_archive(path)),
               "torchvision": lambda: _from_torchvision(path)}
    parts = _cached(f"cifar10-{kind}-{key}", readers[kind])
    jpeg = kind != "torchvision"
    return Dataset("cifar10", Split(*parts["train"]), Split(*parts["test"]), CIFAR10_CLASSES,
                   source=str(path), info={"format": kind, "jpeg": jpeg})


def _mini(root=None, download=False) -> Dataset:
    dirs = _search_dirs(root)
    path = next((d / MINI_FILE for d in dirs if (d / MINI_FILE).is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"{MINI_FILE} not found in {', '.join(str(d) for d in dirs)}. It ships in the "
            "repository's data/ folder; rebuild it from the full CIFAR-10 JPEG archive with "
            "nbkit.data.make_mini(source, 'data/cifar10-mini.npz').")
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12]

    def decode():
        z = np.load(path)
        out = {}
        for split in ("train", "test"):
            buf, off = z[f"{split}_jpeg"], z[f"{split}_offsets"]
            blobs = [buf[off[i]:off[i + 1]].tobytes() for i in range(len(off) - 1)]
            labels = torch.from_numpy(z[f"{split}_labels"].astype(np.int64))
            out[split] = (_decode_jpegs(blobs), labels)
        return out

    parts = _cached(f"cifar10-mini-{digest}", decode)
    return Dataset("cifar10-mini", Split(*parts["train"]), Split(*parts["test"]), CIFAR10_CLASSES,
                   source=str(path), info={"format": "npz", "jpeg": True})


def _synthetic(root=None, download=False, n_train=2048, n_test=512, shape=(3, 32, 32),
               num_classes=10, seed=0) -> Dataset:
    """Random images labelled by a fixed random linear teacher on 4x4 average-pooled
    pixels, so that the task is learnable but needs no files."""
    gen = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    x = torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)
    feats = F.avg_pool2d(x.float() / 255 - 0.5, 4).flatten(1)
    teacher = torch.randn(feats.shape[1], num_classes, generator=gen)
    y = (feats @ teacher).argmax(1)
    classes = tuple(f"class{i}" for i in range(num_classes))
    return Dataset("synthetic", Split(x[:n_train], y[:n_train]), Split(x[n_train:], y[n_train:]),
                   classes, mean=(0.5,) * shape[0], std=(0.289,) * shape[0], source="generated")


_REGISTRY = {"cifar10": _cifar10, "cifar10-mini": _mini, "synthetic": _synthetic}


def names() -> list[str]:
    """The names :func:`load` accepts."""
    return sorted(_REGISTRY)


def load(name: str = "cifar10-mini", root=None, *, download: bool = False, device=None,
         **kwargs) -> Dataset:
    """Load a dataset by name (see :func:`names`); ``device`` moves its tensors there."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; valid names are: {', '.join(names())}")
    ds = _REGISTRY[name](root=root, download=download, **kwargs)
    return ds.to(device) if device is not None else ds


def _as_images(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 4:
        raise ValueError(f"{name} must be images shaped (N, C, H, W), got shape "
                         f"{tuple(x.shape)}; add the channel axis with x[:, None] for "
                         "grey-scale images")
    if x.dtype == torch.uint8:
        return x.cpu()
    if not x.is_floating_point():
        raise ValueError(f"{name} must be uint8 (0-255) or float (0-1), got {x.dtype}")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"float {name} must lie in [0, 1] (got {lo:.3g} to {hi:.3g}); pass "
                         "the raw images and let nbkit standardise them with mean and std")
    return (x.detach().cpu() * 255).round_().to(torch.uint8)


def _as_labels(y, n: int, name: str) -> torch.Tensor:
    y = torch.as_tensor(y).cpu()
    if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D tensor of integer class indices, got "
                         f"{y.dtype} with shape {tuple(y.shape)}")
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} labels for {n} images")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{name} holds negative class indices")
    return y.long()


def from_tensors(x_train, y_train, x_test, y_test, *, classes=None, mean=None, std=None,
                 name: str = "tensors") -> Dataset:
    """A :class:`Dataset` from your own images, for :func:`nbkit.train.fit`, pruning data
    and the rules.

    Args:
        x_train, x_test: images shaped (N, C, H, W), uint8 in 0-255 or float in [0, 1]
            (stored as uint8, as every nbkit dataset is; float images are rounded to
            1/255).
        y_train, y_test: integer class indices, shaped (N,).
        classes: class names (default ``"0"``, ``"1"``, ... up to the largest label).
        mean, std: per-channel statistics for standardising, in [0, 1] units (default:
            measured on the training images).
        name: shown in reprs and histories.

    Training batches get nbkit's augmentation (random 4-pixel crop and horizontal flip);
    pass ``augment=False`` to :func:`nbkit.train.fit` for images where a flip changes
    the class, such as digits.
    """
    train_x, test_x = _as_images(x_train, "x_train"), _as_images(x_test, "x_test")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(f"x_train images are {tuple(train_x.shape[1:])} but x_test images "
                         f"are {tuple(test_x.shape[1:])}")
    if len(train_x) == 0:
        raise ValueError("x_train holds no images")
    train_y = _as_labels(y_train, len(train_x), "y_train")
    test_y = _as_labels(y_test, len(test_x), "y_test")
    top = int(max(train_y.max(), test_y.max() if len(test_y) else 0)) + 1
    classes = tuple(str(i) for i in range(top)) if classes is None else tuple(classes)
    if len(classes) < top:
        raise ValueError(f"the labels go up to {top - 1} but only {len(classes)} class names "
                         "were given")
    c = train_x.shape[1]
    scaled = train_x.float().div_(255)
    mean = tuple(scaled.mean((0, 2, 3)).tolist()) if mean is None else tuple(mean)
    std = tuple(scaled.std((0, 2, 3)).clamp_min(1e-3).tolist()) if std is None else tuple(std)
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean and std need one value per channel ({c}), got {len(mean)} "
                         f"and {len(std)}")
    return Dataset(name, Split(train_x, train_y), Split(test_x, test_y), classes, mean, std,
                   source="tensors")


def find() -> dict:
    """Which datasets are available here without downloading: {name: source or None}."""
    found = _find_cifar10(_search_dirs(None))
    mini = next((str(d / MINI_FILE) for d in _search_dirs(None) if (d / MINI_FILE).is_file()),
                None)
    return {"cifar10": str(found[1]) if found else None, "cifar10-mini": mini,
            "synthetic": "generated"}


def make_mini(source, out=DATA_DIR / MINI_FILE, per_class_train=500, per_class_test=100,
              seed=0) -> Path:
    """Write the cifar10-mini subset: ``per_class_*`` images per class drawn with ``seed``
    from the CIFAR-10 JPEG archive or folder ``source``, kept as their original JPEG bytes."""
    source = Path(source)
    if source.is_file():
        parts = _read_archive(source)
    else:
        parts = {s: _read_image_folder(source / s) for s in ("train", "test")}
    arrays = {}
    for split, per in (("train", per_class_train), ("test", per_class_test)):
        blobs, labels = parts[split]
        idx = _balanced_indices(torch.tensor(labels), per * len(CIFAR10_CLASSES), seed).tolist()
        chosen = [blobs[i] for i in idx]
        arrays[f"{split}_jpeg"] = np.frombuffer(b"".join(chosen), dtype=np.uint8)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in chosen]).astype(np.int64)
        arrays[f"{split}_labels"] = np.array([labels[i] for i in idx], dtype=np.uint8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return out
