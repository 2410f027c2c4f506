import numpy as np
import pytest
import torch

import nbkit
from nbkit.data import CIFAR10_CLASSES, augment, load, names


def test_mini_loads_offline_with_the_right_shapes(mini):
    assert mini.train.x.shape == (5000, 3, 32, 32) and mini.train.x.dtype == torch.uint8
    assert mini.test.x.shape == (1000, 3, 32, 32) and mini.test.y.dtype == torch.int64
    assert mini.train.y.bincount().tolist() == [500] * 10
    assert mini.test.y.bincount().tolist() == [100] * 10
    assert mini.classes == CIFAR10_CLASSES and mini.num_classes == 10


def test_mini_is_real_cifar(mini):
    # Natural images: neighbouring pixels are strongly correlated, unlike noise.
    x = mini.train.x.float()
    a, b = x[..., :, :-1].flatten(), x[..., :, 1:].flatten()
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    assert corr > 0.8
    mean = (x / 255).mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor(mini.mean), atol=0.05)


def test_mini_fits_in_five_megabytes():
    assert (nbkit.data.DATA_DIR / "cifar10-mini.npz").stat().st_size < 5e6


def test_batches_are_normalised_and_cover_the_split(mini):
    batches = mini.loader("test", 128, device="cpu")
    seen = torch.cat([y for _, y in batches])
    assert len(seen) == 1000 and torch.equal(seen, mini.test.y)   # no shuffle, no drop
    x, _ = next(iter(mini.loader("train", 256, device="cpu", seed=0)))
    assert x.dtype == torch.float32 and x.shape == (256, 3, 32, 32)
    assert abs(x.mean().item()) < 0.4 and 0.7 < x.std().item() < 1.4


def test_training_batches_are_shuffled_and_repeatable(mini):
    a = [y for _, y in mini.loader("train", 500, device="cpu", seed=1)]
    b = [y for _, y in mini.loader("train", 500, device="cpu", seed=1)]
    c = [y for _, y in mini.loader("train", 500, device="cpu", seed=2)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(torch.cat(a), mini.train.y)


def test_augment_crops_and_flips():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    outs = [augment(x, pad=2, generator=gen) for _ in range(20)]
    assert all(o.shape == x.shape for o in outs)
    # every output row is a shifted (maybe mirrored) window of the padded input
    assert any(not torch.equal(o, x) for o in outs)
    # some crops reach into the zero padding
    assert any((o == 0).sum() > (x == 0).sum() for o in outs)
    no_shift = augment(x, pad=0, flip=False)
    assert torch.equal(no_shift, x)


def test_pruning_batches_are_balanced(mini):
    batches = mini.pruning_batches(100, batch_size=64, device="cpu")
    y = torch.cat([b[1] for b in batches])
    assert [len(b[1]) for b in batches] == [64, 36]
    assert y.bincount().tolist() == [10] * 10


def test_synthetic_is_learnable_shape_data():
    ds = load("synthetic")
    assert ds.train.x.shape[1:] == (3, 32, 32) and len(ds.classes) == 10
    assert len(ds.train.y.unique()) > 5


def test_unknown_dataset_lists_names():
    with pytest.raises(ValueError, match="valid names are: cifar10, cifar10-mini, synthetic"):
        load("imagenet")
    assert names() == ["cifar10", "cifar10-mini", "synthetic"]


def test_missing_data_folder_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="looked in: .*NBKIT_DATA"):
        load("cifar10", root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="make_mini"):
        load("cifar10-mini", root=tmp_path)


def test_cached_decoding_survives_a_corrupt_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path))
    first = load("cifar10-mini")
    for f in tmp_path.glob("*.pt"):
        f.write_bytes(b"not a tensor file")
    again = load("cifar10-mini")
    assert torch.equal(first.train.x, again.train.x)


def test_make_mini_is_deterministic(tmp_path, full_cifar_dir):
    out = nbkit.data.make_mini(full_cifar_dir / "cifar10-jpeg.tar.gz", tmp_path / "m.npz",
                               per_class_train=500, per_class_test=100, seed=0)
    shipped = np.load(nbkit.data.DATA_DIR / "cifar10-mini.npz")
    rebuilt = np.load(out)
    assert all(np.array_equal(shipped[k], rebuilt[k]) for k in shipped.files)


def test_full_cifar10_loads_from_the_archive(full_cifar_dir):
    ds = load("cifar10", root=full_cifar_dir)
    assert ds.train.x.shape == (50000, 3, 32, 32) and ds.test.x.shape == (10000, 3, 32, 32)
    assert ds.train.y.bincount().tolist() == [5000] * 10
    assert ds.test.y.bincount().tolist() == [1000] * 10
    assert ds.info["jpeg"]


# ---------------------------------------------------------------- your own tensors

def _bright_or_dark(n, seed, size=12):
    """Grey-scale images whose class is whether they are bright (1) or dark (0)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    base = torch.where(y.bool(), 0.7, 0.3).view(n, 1, 1, 1)
    x = (base + 0.15 * torch.randn(n, 1, size, size, generator=gen)).clamp(0, 1)
    return x, y


def test_from_tensors_trains_with_fit():
    x, y = _bright_or_dark(512, 0)
    xt, yt = _bright_or_dark(256, 1)
    ds = nbkit.data.from_tensors(x, y, xt, yt, classes=("dark", "bright"))
    assert ds.train.x.dtype == torch.uint8 and ds.input_shape == (1, 12, 12)
    assert ds.num_classes == 2 and ds.classes == ("dark", "bright")
    assert ds.mean[0] == pytest.approx(float(x.mean()), abs=0.01)
    assert ds.std[0] == pytest.approx(float(x.std()), abs=0.01)
    nbkit.seed(0)
    model = nbkit.models.build("mlp", num_classes=2, input_shape=ds.input_shape, depth=2,
                               width=16)
    history = nbkit.train.fit(model, ds, epochs=5, batch_size=64, lr=0.05, progress=False)
    assert history["test_acc"][-1] > 0.9
    # the same tensors as uint8 give the same dataset
    same = nbkit.data.from_tensors((x * 255).round().to(torch.uint8), y, xt, yt)
    assert torch.equal(same.train.x, ds.train.x) and same.classes == ("0", "1")


@pytest.mark.parametrize("args, match", [
    ((torch.rand(4, 8, 8), torch.zeros(4, dtype=torch.long)), "shaped \\(N, C, H, W\\)"),
    ((torch.rand(4, 1, 8, 8) * 2, torch.zeros(4, dtype=torch.long)), "must lie in \\[0, 1\\]"),
    ((torch.rand(4, 1, 8, 8), torch.zeros(4)), "integer class indices"),
    ((torch.rand(4, 1, 8, 8), torch.zeros(3, dtype=torch.long)), "3 labels for 4 images"),
    ((torch.rand(4, 1, 8, 8), -torch.ones(4, dtype=torch.long)), "negative"),
])
def test_from_tensors_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        nbkit.data.from_tensors(*args, torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))


def test_fit_points_to_from_tensors_for_other_data():
    model = nbkit.models.build("mlp", input_shape=(3, 8, 8), depth=1, width=4)
    with pytest.raises(ValueError, match="from_tensors"):
        nbkit.train.fit(model, (torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)))
