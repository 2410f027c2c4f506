"""nbkit.data refuses what it would otherwise get silently wrong: channels-last arrays,
NaN pixels, std <= 0, labels out of range; it survives a cache folder it cannot write,
and names the file when an archive, a JPEG, a cache file or the mini npz is corrupt."""

from __future__ import annotations

import io
import math
import shutil
import tarfile
import warnings

import numpy as np
import pytest
import torch

import nbkit
from nbkit import data
from nbkit.data import CIFAR10_CLASSES, CorruptDataError, from_tensors, load

pytestmark = pytest.mark.usefixtures("one_thread")


def _labels(n, k=2):
    return torch.arange(n) % k


# ------------------------------------------------------------------ channels-last

@pytest.mark.parametrize("shape", [(6, 32, 32, 3), (6, 28, 28, 1), (6, 16, 16, 4)])
def test_channels_last_input_is_refused_naming_its_shape_and_the_fix(shape):
    x = torch.rand(shape)
    with pytest.raises(ValueError) as info:
        from_tensors(x, _labels(6), x, _labels(6))
    msg = str(info.value)
    assert f"x_train has shape {shape}" in msg and "channels-last" in msg
    assert "layout='NHWC'" in msg and "permute(0, 3, 1, 2)" in msg


def test_channels_last_numpy_uint8_converts_with_layout_nhwc():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    ds = from_tensors(x, _labels(6), x[:2], _labels(2), layout="NHWC")
    assert ds.input_shape == (3, 8, 8)
    assert torch.equal(ds.train.x, torch.from_numpy(x).permute(0, 3, 1, 2))
    # each channel's statistics are measured on that channel
    assert ds.mean == pytest.approx(tuple(x.mean((0, 1, 2)) / 255), abs=1e-5)


def test_channels_first_input_is_unchanged_and_an_ambiguous_shape_can_be_forced():
    x = torch.rand(6, 3, 8, 8)
    assert from_tensors(x, _labels(6), x, _labels(6)).input_shape == (3, 8, 8)
    odd = torch.rand(6, 8, 8, 3)  # 8 channels of 8 x 3 pixels, if you say so
    assert from_tensors(odd, _labels(6), odd, _labels(6), layout="NCHW").input_shape == (8, 8, 3)
    with pytest.raises(ValueError, match="layout must be 'NCHW', 'NHWC' or None"):
        from_tensors(x, _labels(6), x, _labels(6), layout="HWC")


# ------------------------------------------------------------------ NaN pixels

def test_nan_and_infinite_pixels_are_refused_with_their_count_and_images():
    x = torch.rand(8, 1, 4, 4)
    x[2, 0, 1, 1] = math.nan
    x[2, 0, 2, 2] = math.nan
    x[5, 0, 0, 0] = math.inf
    with pytest.raises(ValueError) as info:
        from_tensors(x, _labels(8), torch.rand(2, 1, 4, 4), _labels(2))
    msg = str(info.value)
    assert "x_train holds 2 NaN and 1 infinite pixel values, in 2 of its 8 images" in msg
    assert "indices 2, 5" in msg and "isfinite" in msg
    xt = torch.rand(2, 1, 4, 4)
    xt[1] = math.nan
    with pytest.raises(ValueError, match="x_test holds 16 NaN"):
        from_tensors(torch.rand(8, 1, 4, 4), _labels(8), xt, _labels(2))


# ------------------------------------------------------------------ mean and std

@pytest.mark.parametrize("kwargs, match", [
    ({"std": (0.0,)}, "std must be > 0 for every channel"),
    ({"std": (-0.2,)}, "std must be > 0"),
    ({"std": 0}, "std must be > 0"),
    ({"std": (math.nan,)}, "std must be finite"),
    ({"mean": (math.inf,)}, "mean must be finite"),
    ({"mean": (0.5, 0.5)}, "mean needs one value per channel \\(1\\), got 2"),
    ({"std": "wide"}, "std must be one number per channel"),
])
def test_bad_mean_or_std_is_refused(kwargs, match):
    x = torch.rand(4, 1, 4, 4)
    with pytest.raises(ValueError, match=match):
        from_tensors(x, _labels(4), x, _labels(4), **kwargs)


def test_one_number_serves_every_channel():
    x = torch.rand(4, 3, 4, 4)
    ds = from_tensors(x, _labels(4), x, _labels(4), mean=0.5, std=0.25)
    assert ds.mean == (0.5,) * 3 and ds.std == (0.25,) * 3


# ------------------------------------------------------------------ labels

def test_labels_beyond_the_named_classes_are_refused_with_the_first_offender():
    x = torch.rand(4, 1, 4, 4)
    with pytest.raises(ValueError) as info:
        from_tensors(x, torch.tensor([0, 1, 2, 1]), x, _labels(4), classes=("a", "b"))
    assert "y_train holds 1 labels outside [0, 2) (the first, 2, at index 2)" in str(info.value)
    with pytest.raises(ValueError, match="y_test holds 2 labels outside \\[0, 2\\)"):
        from_tensors(x, _labels(4), x, torch.tensor([0, 5, 1, 2]), classes=("a", "b"))
    with pytest.raises(ValueError, match="2 negative class indices \\(the first, -1, at "
                                         "index 1\\)"):
        from_tensors(x, torch.tensor([0, -1, 1, -3]), x, _labels(4))
    with pytest.raises(ValueError, match="sequence of class names"):
        from_tensors(x, _labels(4), x, _labels(4), classes="ab")


def test_labels_within_the_classes_pass_and_unnamed_classes_cover_the_largest_label():
    x = torch.rand(4, 1, 4, 4)
    ds = from_tensors(x, torch.tensor([0, 1, 3, 1]), x, torch.tensor([0, 1, 2, 3]))
    assert ds.classes == ("0", "1", "2", "3")
    ds = from_tensors(x, _labels(4), x, _labels(4), classes=["no", "yes", "maybe"])
    assert ds.num_classes == 3


def test_an_empty_test_split_is_refused():
    x = torch.rand(4, 1, 4, 4)
    with pytest.raises(ValueError, match="x_test holds no images"):
        from_tensors(x, _labels(4), x[:0], _labels(0))


# ------------------------------------------------------------------ the cache folder

@pytest.fixture
def fresh_memory(monkeypatch):
    """No decoded dataset kept in memory from earlier tests."""
    monkeypatch.setattr(data, "_MEMORY_CACHE", {})


def test_an_uncreatable_cache_folder_falls_back_to_memory_with_a_warning(
        tmp_path, monkeypatch, mini, fresh_memory):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = blocker / "nbkit"  # mkdir fails here, even for root
    monkeypatch.setenv("NBKIT_CACHE", str(cache))
    with pytest.warns(UserWarning) as caught:
        ds = load("cifar10-mini")
    msg = " ".join(str(w.message) for w in caught)
    assert str(cache) in msg and "NBKIT_CACHE" in msg and "writable folder" in msg
    assert torch.equal(ds.train.x, mini.train.x) and torch.equal(ds.test.y, mini.test.y)
    # a second load comes from memory: no decoding, no second warning
    monkeypatch.setattr(data, "_decode_jpegs", _must_not_decode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load("cifar10-mini")
    assert torch.equal(again.train.x, mini.train.x)


def _must_not_decode(*args, **kwargs):
    raise AssertionError("decoded again")


def test_a_cache_write_refused_by_permissions_falls_back_to_memory(
        tmp_path, monkeypatch, mini, fresh_memory):
    def refuse(path, value):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path / "ro"))
    monkeypatch.setattr(data, "_write_cache", refuse)
    with pytest.warns(UserWarning, match="cannot write the nbkit cache folder .*ro.*Permission"):
        ds = load("cifar10-mini")
    assert torch.equal(ds.test.x, mini.test.x)
    assert not list((tmp_path).rglob("*.pt"))


def test_a_corrupt_cache_file_is_named_and_rebuilt(tmp_path, monkeypatch, mini, fresh_memory):
    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path))
    load("cifar10-mini")
    (cached,) = tmp_path.glob("*.pt")
    cached.write_bytes(cached.read_bytes()[:1000])  # torn
    with pytest.warns(UserWarning, match=f"cache file {cached} is corrupt"):
        ds = load("cifar10-mini")
    assert torch.equal(ds.train.x, mini.train.x)
    torch.save({"train": 1}, cached)  # loads, but is not a dataset
    with pytest.warns(UserWarning, match="does not hold a decoded dataset"):
        ds = load("cifar10-mini")
    assert torch.equal(ds.train.x, mini.train.x)
    assert torch.equal(torch.load(cached, weights_only=True)["train"][0], mini.train.x)


# ------------------------------------------------------------------ corrupt files

def _jpeg(seed: int) -> bytes:
    from torchvision.io import encode_jpeg

    img = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8,
                        generator=torch.Generator().manual_seed(seed))
    return encode_jpeg(img).numpy().tobytes()


def _members(bad: str | None = None):
    """{member name: bytes} of a tiny CIFAR-10 archive: 2 train and 1 test image per
    class, 8 x 8 pixels; the member ``bad`` holds garbage."""
    out, seed = {}, 0
    for split, n in (("train", 2), ("test", 1)):
        for cls in CIFAR10_CLASSES:
            for i in range(n):
                name = f"cifar10-jpeg/{split}/{cls}/{i:04d}.jpg"
                out[name] = b"this is not a JPEG" if name == bad else _jpeg(seed)
                seed += 1
    return out


def _archive(folder, members) -> object:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar10-jpeg.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch, fresh_memory):
    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path / "cache"))


def test_a_tiny_archive_loads(tmp_path, cache):
    _archive(tmp_path / "good", _members())
    ds = load("cifar10", root=tmp_path / "good")
    assert ds.train.x.shape == (20, 3, 8, 8) and ds.test.x.shape == (10, 3, 8, 8)
    assert ds.train.y.bincount().tolist() == [2] * 10


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.05])
def test_a_truncated_archive_names_the_file_and_what_to_do(tmp_path, cache, keep):
    good = _archive(tmp_path / "good", _members())
    blob = good.read_bytes()
    bad = tmp_path / "bad" / "cifar10-jpeg.tar.gz"
    bad.parent.mkdir()
    bad.write_bytes(blob[:int(len(blob) * keep)])
    with pytest.raises(CorruptDataError) as info:
        load("cifar10", root=tmp_path / "bad")
    msg = str(info.value)
    assert str(bad) in msg and "download cifar10-jpeg.tar.gz again" in msg
    assert info.value.path == bad
    assert not list((tmp_path / "cache").glob("*.pt"))  # nothing half-made was cached


def test_an_archive_that_is_not_gzip_names_the_file(tmp_path, cache):
    path = tmp_path / "junk" / "cifar10-jpeg.tar.gz"
    path.parent.mkdir()
    path.write_bytes(b"<html>404 not found</html>" * 20)
    with pytest.raises(CorruptDataError, match=f"cannot read the CIFAR-10 archive {path}"):
        load("cifar10", root=path.parent)


def test_a_bad_jpeg_inside_the_archive_names_the_member(tmp_path, cache):
    member = "cifar10-jpeg/train/cat/0001.jpg"
    path = _archive(tmp_path / "badjpeg", _members(bad=member))
    with pytest.raises(CorruptDataError) as info:
        load("cifar10", root=path.parent)
    msg = str(info.value)
    assert f"cannot decode the JPEG image {member} in {path}" in msg
    assert "download cifar10-jpeg.tar.gz again" in msg


def test_a_bad_jpeg_in_an_image_folder_names_the_file(tmp_path, cache):
    root = tmp_path / "tree"
    for name, blob in _members().items():
        f = root / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(blob)
    bad = root / "cifar10-jpeg" / "test" / "dog" / "0000.jpg"
    bad.write_bytes(_jpeg(0)[:40])  # truncated
    with pytest.raises(CorruptDataError, match=f"cannot decode the JPEG image {bad}"):
        load("cifar10", root=root)


def test_a_corrupt_mini_npz_names_the_file_and_how_to_restore_it(tmp_path, cache):
    shipped = nbkit.data.DATA_DIR / "cifar10-mini.npz"
    bad = tmp_path / "cifar10-mini.npz"
    bad.write_bytes(shipped.read_bytes()[:100_000])
    with pytest.raises(CorruptDataError) as info:
        load("cifar10-mini", root=tmp_path)
    msg = str(info.value)
    assert f"cannot read {bad}" in msg and "git checkout" in msg and "make_mini" in msg
    shutil.copy(shipped, bad)
    assert len(load("cifar10-mini", root=tmp_path).train) == 5000


def test_damaged_torchvision_batches_name_the_folder(tmp_path, cache):
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (batches / name).write_bytes(b"truncated")
    with pytest.raises(CorruptDataError, match="cifar-10-batches-py .*download=True"):
        load("cifar10", root=tmp_path)
