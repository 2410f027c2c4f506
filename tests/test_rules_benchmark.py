"""The rule-overhead benchmark runs end to end (a tiny CPU configuration)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "rule_overhead.py"


def _load():
    spec = importlib.util.spec_from_file_location("rule_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_benchmark_times_rules_against_backprop(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "r.json"
    results = bench.main(["--quick", "--device", "cpu", "--models", "resnet20", "--batch", "2",
                          "--steps", "1", "--warmup", "0", "--json", str(out),
                          "--rules", "feedback_alignment", "information_alignment"])
    rows = {r["rule"]: r for r in results}
    assert set(rows) == {"backprop", "feedback_alignment", "information_alignment"}
    assert rows["backprop"]["ratio"] == 1.0
    assert all(r["ms"] > 0 and r["size"] == 32 for r in results)
    assert out.exists() and "resnet20 @ 32px" in capsys.readouterr().out


def test_benchmark_rejects_unknown_rule():
    with pytest.raises(ValueError, match="valid rules"):
        _load().main(["--quick", "--device", "cpu", "--rules", "nope"])
