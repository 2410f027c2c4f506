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
``~/.cache/nbkit``), so JPEG decoding happens once per machine. When that folder cannot be
created or written, the decoded images are kept in memory for the session instead, with
a warning. A corrupt archive, image folder, JPEG or ``cifar10-mini.npz`` raises
:class:`CorruptDataError`, which names the file; a corrupt cache file is rebuilt, with a
warning.
"""

from __future__ import annotations

import hashlib
import math
import os
import tarfile
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .device import get as get_device

__all__ = ["load", "names", "from_tensors", "Dataset", "Split", "Batches", "augment",
           "draw_augment", "apply_augment",
           "make_mini", "CorruptDataError",
           "CIFAR10_CLASSES", "DATA_DIR"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MINI_FILE = "cifar10-mini.npz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


# ----------------------------------------------------------------------------- types

class CorruptDataError(ValueError):
    """A data file (archive, JPEG, npz) could not be read; ``path`` names it."""

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = path


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
    return apply_augment(x, draw_augment(x, pad, flip, generator), pad)


def draw_augment(x: torch.Tensor, pad: int = 4, flip: bool = True, generator=None):
    """The random part of :func:`augment` for the batch ``x``: each image's crop offsets
    ``(dy, dx)``, shape (n, 1), and whether it is mirrored (shape (n,), or None without
    flips). Drawn apart from :func:`apply_augment` so that a compiled training step can
    apply them inside its graph while the draws stay those of ``generator``."""
    n, dev = x.shape[0], x.device
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=dev, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=dev, generator=generator)
    mirror = torch.rand(n, device=dev, generator=generator) < 0.5 if flip else None
    return dy, dx, mirror


def apply_augment(x: torch.Tensor, draws, pad: int = 4) -> torch.Tensor:
    """Crop and mirror the batch ``x`` as ``draws`` (from :func:`draw_augment`) say."""
    n, c, h, w = x.shape
    dy, dx, mirror = draws
    dev = x.device
    xp = F.pad(x, (pad, pad, pad, pad))
    rows = (dy + torch.arange(h, device=dev)).view(n, 1, h, 1)
    cols = (dx + torch.arange(w, device=dev)).view(n, 1, 1, w)
    out = xp[torch.arange(n, device=dev).view(n, 1, 1, 1),
             torch.arange(c, device=dev).view(1, c, 1, 1), rows, cols]
    if mirror is not None:
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
        for x, y, draws in self.raw():
            yield self.finish(x, draws), y

    def raw(self):
        """The batches before :meth:`finish`: ``(uint8 images, labels, augmentation
        draws or None)``, drawing from the loader's generator exactly as iterating does."""
        n = len(self.data)
        if self.shuffle:
            order = torch.randperm(n, device=self.device, generator=self.generator)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.data.x[idx]
            draws = draw_augment(x, generator=self.generator) if self.augment else None
            yield x, self.data.y[idx], draws

    def finish(self, x: torch.Tensor, draws=None) -> torch.Tensor:
        """uint8 images from :meth:`raw` -> the augmented, normalised float batch (no
        random draws of its own, so a compiled step can run it in its graph)."""
        if draws is not None:
            x = apply_augment(x, draws)
        x = (x.float().div_(255) - self._mean) / self._std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


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


# Decoded datasets kept for the session when the cache folder cannot be written.
_MEMORY_CACHE: dict = {}


def _cache_dir() -> Path:
    """The cache folder ``$NBKIT_CACHE`` (default ``~/.cache/nbkit``); not created here."""
    return Path(os.environ.get("NBKIT_CACHE", Path.home() / ".cache" / "nbkit")).expanduser()


def _valid_parts(value) -> bool:
    """Whether a cached value is {split: (uint8 images, int64 labels)} of matching sizes."""
    if not isinstance(value, dict) or set(value) != {"train", "test"}:
        return False
    for pair in value.values():
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2
                and all(isinstance(t, torch.Tensor) for t in pair)):
            return False
        x, y = pair
        if x.dtype != torch.uint8 or x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
            return False
    return True


def _write_cache(path: Path, value) -> None:
    """Save ``value`` to ``path`` atomically (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(value, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cached(key: str, make):
    """Load ``key`` from the tensor cache, or build it with ``make()`` and store it.

    A corrupt cache file is rebuilt (with a warning naming it). When the cache folder
    cannot be created or written, the value is kept in memory for this session instead,
    with a warning that names the folder and how to fix it."""
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    folder = _cache_dir()
    path = folder / f"{key}.pt"
    try:
        present = path.is_file()
    except OSError:  # an unreadable folder: treated as an unwritable one below
        present = False
    if present:
        try:
            value = torch.load(path, weights_only=True)
            problem = None if _valid_parts(value) else "it does not hold a decoded dataset"
        except Exception as e:  # a torn or stale cache file: rebuild it
            problem = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        if problem is None:
            return value
        warnings.warn(f"the nbkit cache file {path} is corrupt ({problem}); decoding the "
                      "images again and replacing it", stacklevel=4)
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only folder: the write below fails too and says so
    value = make()
    try:
        _write_cache(path, value)
    except (OSError, RuntimeError) as e:  # torch.save raises RuntimeError on a full disk
        _MEMORY_CACHE[key] = value
        warnings.warn(f"cannot write the nbkit cache folder {folder} ({type(e).__name__}: "
                      f"{e}); keeping the decoded images in memory for this session only, "
                      "so they will be decoded again next time. Set the NBKIT_CACHE "
                      "environment variable to a writable folder (for example "
                      "NBKIT_CACHE=/tmp/nbkit-cache) to cache them on disk.", stacklevel=4)
    return value


def _decode_jpegs(blobs: list, names=None, source=None, fix: str = "") -> torch.Tensor:
    """Decode a list of JPEG byte strings to one uint8 (N, 3, H, W) tensor.

    A JPEG that does not decode raises :class:`CorruptDataError` naming it (its entry in
    ``names``, else its index) and ``source``, with ``fix`` as the advice."""
    from torchvision.io import ImageReadMode, decode_jpeg

    fix = fix or "replace or delete that image"
    where = f" in {source}" if source is not None else ""

    def one(j, b):
        try:
            if not b:
                raise RuntimeError("the file is empty")
            return decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8),
                               mode=ImageReadMode.RGB)
        except RuntimeError as e:
            what = names[j] if names is not None else f"number {j}"
            reason = str(e).rsplit(", ", 1)[-1]  # without torchvision's source location
            raise CorruptDataError(f"cannot decode the JPEG image {what}{where} ({reason}); "
                                   f"{fix}", path=source if source is not None else what
                                   ) from None

    out = []
    for i in range(0, len(blobs), 4096):
        chunk = blobs[i:i + 4096]
        try:
            if not all(chunk):
                raise RuntimeError("an empty file")
            out.extend(decode_jpeg([torch.frombuffer(bytearray(b), dtype=torch.uint8)
                                    for b in chunk], mode=ImageReadMode.RGB))
        except RuntimeError:  # find the culprit, one image at a time
            out.extend(one(j, b) for j, b in enumerate(chunk, start=i))
    shapes = sorted({tuple(t.shape) for t in out})
    if len(shapes) > 1:
        raise CorruptDataError(f"the images{where} are not all the same size (found "
                               f"{shapes[:4]}); {fix}", path=source)
    return torch.stack(out)


def _read_image_folder(split_dir: Path):
    """(jpeg byte strings, labels, file names) of an ImageFolder split, classes sorted by
    name."""
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if tuple(classes) != CIFAR10_CLASSES:
        raise FileNotFoundError(f"{split_dir} does not hold the 10 CIFAR-10 class folders "
                                f"(found {classes[:12]})")
    blobs, labels, files = [], [], []
    for label, name in enumerate(classes):
        for f in sorted((split_dir / name).iterdir()):
            blobs.append(f.read_bytes())
            labels.append(label)
            files.append(str(f))
    return blobs, labels, files


_ARCHIVE_FIX = ("the archive is truncated or damaged: download cifar10-jpeg.tar.gz again, or "
                "restore it from a backup (and delete the damaged copy)")


def _read_archive(path: Path):
    """{split: (jpeg byte strings, labels, member names)} from the CIFAR-10 JPEG tar.gz
    archive. A truncated or corrupt archive raises :class:`CorruptDataError`."""
    out = {"train": ([], [], []), "test": ([], [], [])}
    index = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = sorted((m for m in tar.getmembers()
                              if m.isfile() and m.name.endswith(".jpg")), key=lambda m: m.name)
            for m in members:
                parts = Path(m.name).parts
                if len(parts) < 3:
                    continue
                split, cls = parts[-3], parts[-2]
                if split in out and cls in index:
                    out[split][0].append(tar.extractfile(m).read())
                    out[split][1].append(index[cls])
                    out[split][2].append(m.name)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CorruptDataError(f"cannot read the CIFAR-10 archive {path} ({type(e).__name__}: "
                               f"{e}); {_ARCHIVE_FIX}", path=path) from e
    if not out["train"][0] or not out["test"][0]:
        raise FileNotFoundError(f"{path} does not hold train/<class>/*.jpg and "
                                "test/<class>/*.jpg images")
    return out


def _from_blobs(parts, source=None, fix: str = "") -> dict:
    return {split: (_decode_jpegs(blobs, names, source, fix),
                    torch.tensor(labels, dtype=torch.int64))
            for split, (blobs, labels, names) in parts.items()}


def _from_torchvision(folder: Path) -> dict:
    from torchvision.datasets import CIFAR10

    out = {}
    for split in ("train", "test"):
        try:
            ds = CIFAR10(str(folder), train=split == "train", download=False)
        except Exception as e:  # torchvision's integrity check, or an unreadable batch
            raise CorruptDataError(
                f"cannot read the CIFAR-10 batches in {folder / 'cifar-10-batches-py'} "
                f"({type(e).__name__}: {e}); they are incomplete or damaged: delete that "
                "folder and load with download=True, or restore it from a backup",
                path=folder / "cifar-10-batches-py") from e
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
                                              for s in ("train", "test")}, path,
                                             "replace or delete that image file"),
               "archive": lambda: _from_blobs(_read_archive(path), path, _ARCHIVE_FIX),
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

    fix = (f"restore {path} (it ships with the repository: git checkout -- "
           f"data/{MINI_FILE}), or rebuild it from the full archive with "
           f"nbkit.data.make_mini(source, {str(path)!r})")

    def decode():
        out = {}
        try:
            with np.load(path) as z:
                arrays = {k: z[k] for k in (f"{s}_{part}" for s in ("train", "test")
                                            for part in ("jpeg", "offsets", "labels"))}
        except Exception as e:  # a truncated zip, a missing array, a damaged member
            raise CorruptDataError(f"cannot read {path} ({type(e).__name__}: {e}); it is "
                                   f"truncated or damaged: {fix}", path=path) from e
        for split in ("train", "test"):
            buf, off = arrays[f"{split}_jpeg"], arrays[f"{split}_offsets"]
            blobs = [buf[off[i]:off[i + 1]].tobytes() for i in range(len(off) - 1)]
            labels = torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))
            names = [f"{split} image {i}" for i in range(len(blobs))]
            out[split] = (_decode_jpegs(blobs, names, path, fix), labels)
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


_LAYOUTS = (None, "NCHW", "NHWC")


def _looks_channels_last(shape) -> bool:
    """Whether an (N, a, b, c) shape reads as (N, H, W, C) rather than (N, C, H, W): the
    last axis is a plausible channel count (1, 3 or 4) and the second one is not."""
    return shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4)


def _as_images(x, name: str, layout=None) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 4:
        raise ValueError(f"{name} must be images shaped (N, C, H, W), got shape "
                         f"{tuple(x.shape)}; add the channel axis with x[:, None] for "
                         "grey-scale images")
    if layout == "NHWC":
        x = x.permute(0, 3, 1, 2)
    elif layout is None and _looks_channels_last(x.shape):
        n, h, w, c = x.shape
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}, which looks channels-last (N, H, W, C) = "
            f"({n}, {h}, {w}, {c}): nbkit wants (N, C, H, W). Pass layout='NHWC' to "
            "from_tensors to convert it (or convert it yourself with x.permute(0, 3, 1, 2) "
            "in torch, np.transpose(x, (0, 3, 1, 2)) in NumPy); if it really is "
            f"channels-first with {x.shape[1]} channels, pass layout='NCHW'")
    if x.dtype == torch.uint8:
        return x.cpu().contiguous()
    if not x.is_floating_point():
        raise ValueError(f"{name} must be uint8 (0-255) or float (0-1), got {x.dtype}")
    x = x.detach().cpu()
    bad = ~torch.isfinite(x)
    if bad.any():
        n_nan, n_inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
        images = torch.nonzero(bad.flatten(1).any(1)).flatten().tolist()
        shown = ", ".join(str(i) for i in images[:10]) + (", ..." if len(images) > 10 else "")
        raise ValueError(f"{name} holds {n_nan} NaN and {n_inf} infinite pixel values, in "
                         f"{len(images)} of its {len(x)} images (indices {shown}); find them "
                         "with (~torch.isfinite(x)).flatten(1).any(1) and fix or drop "
                         "those images (and their labels)")
    lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
    if lo < 0 or hi > 1:
        raise ValueError(f"float {name} must lie in [0, 1] (got {lo:.3g} to {hi:.3g}); pass "
                         "the raw images and let nbkit standardise them with mean and std")
    return (x * 255).round_().to(torch.uint8).contiguous()


def _as_labels(y, n: int, name: str) -> torch.Tensor:
    y = torch.as_tensor(y).cpu()
    if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D tensor of integer class indices, got "
                         f"{y.dtype} with shape {tuple(y.shape)}")
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} labels for {n} images")
    y = y.long()
    if len(y) and int(y.min()) < 0:
        where = torch.nonzero(y < 0).flatten()
        raise ValueError(f"{name} holds {len(where)} negative class indices (the first, "
                         f"{int(y[where[0]])}, at index {int(where[0])}); labels must be "
                         "integers from 0 to the number of classes - 1")
    return y


def _check_in_range(y: torch.Tensor, name: str, num_classes: int):
    out = torch.nonzero(y >= num_classes).flatten()
    if len(out):
        raise ValueError(f"{name} holds {len(out)} labels outside [0, {num_classes}) (the "
                         f"first, {int(y[out[0]])}, at index {int(out[0])}), but only "
                         f"{num_classes} class names were given in classes=; labels must be "
                         "class indices from 0 to the number of classes - 1 (subtract 1 "
                         "from 1-based labels, or pass every class name in classes=)")


def _channel_stats(value, name: str, c: int, positive: bool) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,) * c
    try:
        value = tuple(float(v) for v in torch.as_tensor(value, dtype=torch.float64).flatten())
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be one number per channel ({c}), got {value!r}"
                         ) from None
    if len(value) != c:
        raise ValueError(f"{name} needs one value per channel ({c}), got {len(value)}: "
                         f"{value}")
    if not all(math.isfinite(v) for v in value):
        raise ValueError(f"{name} must be finite numbers, got {value}")
    if positive and not all(v > 0 for v in value):
        raise ValueError(f"{name} must be > 0 for every channel (images are divided by it), "
                         f"got {value}; leave std=None to measure it on the training images")
    return value


def from_tensors(x_train, y_train, x_test, y_test, *, classes=None, mean=None, std=None,
                 name: str = "tensors", layout: str | None = None) -> Dataset:
    """A :class:`Dataset` from your own images, for :func:`nbkit.train.fit`, pruning data
    and the rules.

    Args:
        x_train, x_test: images shaped (N, C, H, W), uint8 in 0-255 or float in [0, 1]
            (stored as uint8, as every nbkit dataset is; float images are rounded to
            1/255). NaN or infinite pixels are refused.
        y_train, y_test: integer class indices in [0, number of classes), shaped (N,).
        classes: class names (default ``"0"``, ``"1"``, ... up to the largest label); the
            labels must be below ``len(classes)``.
        mean, std: per-channel statistics for standardising, in [0, 1] units (default:
            measured on the training images); finite, std > 0. One number is used for
            every channel.
        name: shown in reprs and histories.
        layout: ``"NCHW"`` or ``"NHWC"`` (channels-last images, as NumPy, PIL and
            TensorFlow keep them: converted to channels-first). By default (None) images
            are taken as (N, C, H, W), and a shape that looks channels-last (the last axis
            1, 3 or 4 long and the second axis not) raises an error that asks for
            ``layout``.

    Training batches get nbkit's augmentation (random 4-pixel crop and horizontal flip);
    pass ``augment=False`` to :func:`nbkit.train.fit` for images where a flip changes
    the class, such as digits.
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be 'NCHW', 'NHWC' or None (detect), got {layout!r}")
    train_x = _as_images(x_train, "x_train", layout)
    test_x = _as_images(x_test, "x_test", layout)
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(f"x_train images are {tuple(train_x.shape[1:])} but x_test images "
                         f"are {tuple(test_x.shape[1:])}")
    for x, which in ((train_x, "x_train"), (test_x, "x_test")):
        if len(x) == 0:
            raise ValueError(f"{which} holds no images; nbkit trains on x_train and "
                             "evaluates on x_test, so both need some (hold out part of the "
                             "training images as a test split if you have no other)")
    train_y = _as_labels(y_train, len(train_x), "y_train")
    test_y = _as_labels(y_test, len(test_x), "y_test")
    if classes is None:
        top = int(max(train_y.max(), test_y.max() if len(test_y) else 0)) + 1
        classes = tuple(str(i) for i in range(top))
    else:
        if isinstance(classes, str):
            raise ValueError(f"classes must be a sequence of class names, got the string "
                             f"{classes!r}")
        classes = tuple(classes)
    for y, label_name in ((train_y, "y_train"), (test_y, "y_test")):
        _check_in_range(y, label_name, len(classes))
    c = train_x.shape[1]
    scaled = train_x.float().div_(255)
    mean = (tuple(scaled.mean((0, 2, 3)).tolist()) if mean is None
            else _channel_stats(mean, "mean", c, positive=False))
    std = (tuple(scaled.std((0, 2, 3)).nan_to_num_(1.0).clamp_min(1e-3).tolist()) if std is None
           else _channel_stats(std, "std", c, positive=True))
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
        blobs, labels = parts[split][:2]
        idx = _balanced_indices(torch.tensor(labels), per * len(CIFAR10_CLASSES), seed).tolist()
        chosen = [blobs[i] for i in idx]
        arrays[f"{split}_jpeg"] = np.frombuffer(b"".join(chosen), dtype=np.uint8)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in chosen]).astype(np.int64)
        arrays[f"{split}_labels"] = np.array([labels[i] for i in idx], dtype=np.uint8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return out
