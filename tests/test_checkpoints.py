"""Training checkpoints: a run stopped after epoch k and started again resumes from its
checkpoint and ends with the weights, history and logs of an uninterrupted run (CPU);
the file loads with ``torch.load(weights_only=True)``; the runner records the resume."""

from __future__ import annotations

import dataclasses
import json

import exec_kinds
import pytest
import torch
from helpers import Stop, StopAt

import nbkit
from nbkit import experiments as E
from nbkit import models, pruning, rules, train
from nbkit.studies import learning_rules, pruned_training
from nbkit.studies.common import clear_cache


def _train(path, stop_at=None, epochs=4):
    """A pruned MLP with dropout trained with noisy updates: masks, the global RNG, the
    loader's RNG, momentum and a callback all have to come back for an equal result."""
    nbkit.seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 32), nn.ReLU(), nn.Dropout(0.1),
                          nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    pruning.prune(model, "magnitude", 0.2)
    try:
        history = train.fit(model, "synthetic", epochs=epochs, batch_size=128, lr=0.05,
                            seed=3, progress=False, checkpoint=path,
                            callbacks=[rules.NoisyUpdates(0.02), StopAt(stop_at)])
    except Stop:
        return None, None
    return model.state_dict(), history


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_stopped_fit_resumes_and_ends_as_an_uninterrupted_one(tmp_path):
    ref, ref_hist = _train(None)
    path = tmp_path / "ck.pt"
    assert _train(path, stop_at=3) == (None, None)  # stopped in epoch 3's end
    assert train.checkpoint_epoch(path) == 2
    saved = torch.load(path, weights_only=True)  # plain tensors and containers
    assert saved["epoch"] == 2 and any(k.endswith("weight_mask") for k in saved["model"])
    weights, hist = _train(path)
    assert hist["time"][:2] == saved["history"]["time"]  # epochs 1-2 were not trained again
    _same(ref, weights)
    for key in ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr"):
        assert hist[key] == ref_hist[key], key


def test_checkpoint_every_sets_the_interval_and_another_setup_is_refused(tmp_path):
    path = tmp_path / "ck.pt"
    nbkit.seed(0)
    model = models.build("mlp", num_classes=10, input_shape=(3, 32, 32), depth=2, width=16)
    with pytest.raises(Stop):
        train.fit(model, "synthetic", epochs=5, batch_size=128, progress=False,
                  checkpoint=path, checkpoint_every=2, callbacks=[StopAt(4)])
    assert train.checkpoint_epoch(path) == 2  # saved after epoch 2, not 3
    with pytest.raises(ValueError, match=r"different training setup \(lr: 0\.1 then, 0\.2 now"):
        train.fit(model, "synthetic", epochs=5, batch_size=128, lr=0.2, progress=False,
                  checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    assert train.checkpoint_epoch(path) is None
    with pytest.raises(ValueError, match="delete it"):
        train.fit(model, "synthetic", epochs=5, batch_size=128, progress=False,
                  checkpoint=path)
    with pytest.raises(ValueError, match="checkpoint_every"):
        train.fit(model, "synthetic", epochs=1, checkpoint=path, checkpoint_every=0)


RULE_SETTINGS = dataclasses.replace(
    learning_rules.QUICK, data="synthetic", eval_samples=128, angle_batch=32, log_every=8,
    train={"epochs": 3, "batch_size": 128, "lr": 0.05, "momentum": 0.9,
           "weight_decay": 5e-4, "schedule": "cosine", "augment": True})


@pytest.mark.parametrize("rule", ["feedback_alignment", "kolen_pollack", "weight_mirror"])
def test_a_learning_rule_run_resumed_from_its_checkpoint_is_the_same_run(tmp_path, rule):
    """A finished run leaves its last checkpoint (after epoch 2); starting it again
    resumes there and must give back the same weights' angles, logs and accuracies."""
    path = tmp_path / f"{rule}.pt"
    clear_cache()
    first = learning_rules.train_rule(rule, RULE_SETTINGS, device="cpu", checkpoint=path)
    assert train.checkpoint_epoch(path) == 2
    clear_cache()
    again = learning_rules.train_rule(rule, RULE_SETTINGS, device="cpu", checkpoint=path)
    clear_cache()
    assert again["history"]["time"][:2] == first["history"]["time"][:2]  # not trained again
    for key in ("steps", "train_loss", "train_acc", "test_loss", "test_acc", "alignment",
                "gradient", "gradient_local", "norm_ratio", "finite"):
        assert again[key] == first[key], key
    assert again["history"]["test_acc"] == first["history"]["test_acc"]


def test_a_pruned_training_run_resumed_from_its_checkpoint_is_the_same_run(tmp_path):
    s = dataclasses.replace(pruned_training.QUICK, data="synthetic",
                            train={**pruned_training.QUICK.train, "epochs": 3})
    path = tmp_path / "p.pt"
    clear_cache()
    first = pruned_training.train_pruned("synflow", 1.0, s, device="cpu", checkpoint=path)
    assert train.checkpoint_epoch(path) == 2
    clear_cache()
    again = pruned_training.train_pruned("synflow", 1.0, s, device="cpu", checkpoint=path)
    clear_cache()
    assert again["history"]["time"][:2] == first["history"]["time"][:2]  # not trained again
    assert again["history"]["test_acc"] == first["history"]["test_acc"]
    assert again["history"]["train_loss"] == first["history"]["train_loss"]


def _records(out):
    """Records by run (x): the marker folder, part of a run's config, differs."""
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    return {r["config"]["x"]: r for r in records}


def _uninterrupted(tmp_path, markers_name="done"):
    markers = tmp_path / markers_name
    markers.mkdir()
    for x in range(2):
        (markers / f"{x}.stopped").write_text("never stop")
    exp = exec_kinds.training_experiment(markers)
    E.sweep(exp, "full", tmp_path / "ref", device="cpu", progress=False)
    return _records(tmp_path / "ref")


def test_a_killed_training_run_resumes_in_a_fresh_worker(tmp_path):
    """The process executor's worker is SIGKILLed at the end of epoch 2; the run is
    started again, resumes after epoch 1 and ends as the uninterrupted run did."""
    ref = _uninterrupted(tmp_path)
    markers = tmp_path / "markers"
    markers.mkdir()
    exp = exec_kinds.training_experiment(markers)
    report = E.sweep(exp, "full", tmp_path / "out", device="cpu", progress=False,
                     executor="process", workers=2, max_retries=2)
    assert report.ran == 2 and not report.failed
    assert sorted(p.name for p in markers.iterdir()) == ["0.stopped", "1.stopped"]
    records = _records(tmp_path / "out")
    assert records.keys() == ref.keys()
    for name, record in records.items():
        assert record["provenance"]["resumed_from_epoch"] == 1
        assert "resumed_from_epoch" not in ref[name]["provenance"]
        assert record["result"] == ref[name]["result"]
    assert not list((tmp_path / "out" / ".checkpoints").iterdir())  # deleted once written


def test_a_failed_run_resumes_when_the_sweep_is_run_again(tmp_path):
    ref = _uninterrupted(tmp_path)
    markers = tmp_path / "markers"
    markers.mkdir()
    exp = exec_kinds.training_experiment(markers, raise_instead=True)
    first = E.sweep(exp, "full", tmp_path / "out", device="cpu", progress=False,
                    on_error="continue")
    assert first.ran == 0 and len(first.failed) == 2
    assert len(list((tmp_path / "out" / ".checkpoints").iterdir())) == 2
    again = E.sweep(exp, "full", tmp_path / "out", device="cpu", progress=False)
    assert again.ran == 2
    for name, record in _records(tmp_path / "out").items():
        assert record["provenance"]["resumed_from_epoch"] == 1
        assert record["result"] == ref[name]["result"]
    none = E.sweep(exp, "full", tmp_path / "fresh", device="cpu", progress=False,
                   checkpoint_every=0)  # markers now exist: runs straight through
    assert none.ran == 2 and not (tmp_path / "fresh" / ".checkpoints").exists()
