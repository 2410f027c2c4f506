import warnings

import pytest
import torch

import nbkit
from nbkit.device import get


def test_default_device_is_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get().type == expected
    assert get("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu0", "tpu", "banana"])
def test_bad_device_names(bad):
    with pytest.raises(ValueError, match="device"):
        get(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_says_so():
    with pytest.raises(ValueError, match="CUDA is not available"):
        get("cuda")


def test_entry_points_reject_a_bad_device():
    with pytest.raises(ValueError, match="device"):
        nbkit.models.build("mlp", device="gpu0")
    with pytest.raises(ValueError, match="device"):
        nbkit.train.fit(nbkit.models.build("mlp"), "synthetic", steps=1, device="gpu0",
                        progress=False)


def test_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("NBKIT_MODE", "full")
    monkeypatch.setenv("NBKIT_FULL_ON_CPU", "yes")  # no question on a machine without a GPU
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert nbkit.mode() == "full"
    monkeypatch.setenv("NBKIT_MODE", "fast")
    with pytest.raises(ValueError, match="quick"):
        nbkit.mode()


def test_cpu_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    with nbkit.device.cpu_threads(1, "cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), nbkit.device.cpu_threads(1, "cpu"):
        raise RuntimeError("the setting is restored after an error too")
    assert torch.get_num_threads() == before
    with nbkit.device.cpu_threads(None, "cpu"):
        assert torch.get_num_threads() == before


def test_full_mode_on_a_cpu_warns_with_an_estimate(monkeypatch):
    """What notebook 00 shows when NBKIT_MODE=full and there is no GPU."""
    monkeypatch.setenv("NBKIT_MODE", "full")
    monkeypatch.setenv("NBKIT_FULL_ON_CPU", "yes")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="no GPU") as caught:
        assert nbkit.mode("quick") == "full"
    text = str(caught[0].message)
    assert "about 9 minutes per model" in text and "quick mode" in text
    monkeypatch.setenv("NBKIT_MODE", "quick")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nbkit.mode() == "quick"  # quick mode never warns



@pytest.mark.parametrize(("answer", "expected"), [("y", "full"), ("yes", "full"), ("", "quick"),
                                                  ("n", "quick")])
def test_full_mode_on_a_cpu_asks_before_it_starts(monkeypatch, capsys, answer, expected):
    monkeypatch.setenv("NBKIT_MODE", "full")
    monkeypatch.delenv("NBKIT_FULL_ON_CPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    asked = []
    monkeypatch.setattr("builtins.input", lambda q: asked.append(q) or answer)
    with pytest.warns(UserWarning, match="no GPU"):
        assert nbkit.mode() == expected
    assert asked and "[y/N]" in asked[0]
    if expected == "quick":
        assert "Staying in quick mode" in capsys.readouterr().out


def test_full_mode_on_a_cpu_with_nobody_to_answer_says_so_and_runs_quick(monkeypatch, capsys):
    monkeypatch.setenv("NBKIT_MODE", "full")
    monkeypatch.delenv("NBKIT_FULL_ON_CPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def no_stdin(_question):
        raise EOFError

    monkeypatch.setattr("builtins.input", no_stdin)
    with pytest.warns(UserWarning, match="no GPU"):
        assert nbkit.mode() == "quick"
    assert "NBKIT_FULL_ON_CPU=yes" in capsys.readouterr().out
