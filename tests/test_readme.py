"""The README's package example runs as written and prints what the README says it
prints: SynFlow keeps every layer at ρ = 10³, magnitude pruning empties one, the SynFlow
layer totals are equal, and the feedback-alignment ResNet learns; and its table of [TR]'s
depth gaps is the shipped study's."""

from __future__ import annotations

import contextlib
import io
import re
import statistics
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
LINE = re.compile(r"^\s*(\w+): a layer is empty: (True|False), weights on an input-output "
                  r"path: ([0-9.e+-]+)$")


def _section() -> str:
    text = README.read_text()
    return text[text.index("## The package"):]


def _blocks(section: str) -> tuple[str, str]:
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    printed = re.search(r"which prints\n\n```\n(.*?)```", section, re.S).group(1)
    return code, printed


def _parse(text: str) -> dict:
    out = {}
    for line in text.strip().splitlines():
        m = LINE.match(line)
        assert m, f"unexpected line {line!r}"
        out[m.group(1)] = (m.group(2) == "True", float(m.group(3)))
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_readme_package_example_runs_and_prints_what_it_says():
    code, printed = _blocks(_section())
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), namespace)
    got, want = _parse(out.getvalue()), _parse(printed)
    assert got.keys() == want.keys() == {"synflow", "magnitude", "snip"}
    for name, (collapsed, effective) in want.items():
        assert got[name][0] is collapsed, name
        assert got[name][1] == pytest.approx(effective, rel=0.1, abs=1e-12), name
    totals = list(namespace["totals"].values())
    assert max(totals) / min(totals) - 1 < 1e-6  # conserved across all 14 layers
    assert namespace["history"]["test_acc"][-1] > 0.15  # above chance (0.10) after 2 epochs
    angles = list(namespace["angles"].values())
    assert len(angles) == 22 and all(0 <= a <= 180 for a in angles)  # 19 convs + 2 shortcuts + fc
    assert statistics.mean(angles) > 60  # feedback alignment: B stays far from Wᵀ


def test_readme_studies_example_runs_as_written():
    """The ``nbkit.studies`` snippet of the package list: Fig. 1's quick grid on a
    1/8-width VGG-16-BN, where SynFlow outlasts magnitude pruning."""
    section = _section()
    snippet = section[section.index("- `nbkit.studies`"):]
    code = re.search(r"```python\n(.*?)```", snippet, re.S).group(1)
    code = "\n".join(line[2:] if line.startswith("  ") else line for line in code.splitlines())
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    pruners = namespace["sweep"]["pruners"]
    assert pruners["synflow"]["critical"] > pruners["magnitude"]["critical"]


def test_readme_two_routes_table_is_the_shipped_depth_study():
    """Every gap in the README's [TR] table is backprop's top-1 minus the rule's in the
    shipped two_routes_depth study, to the printed 0.1 point."""
    from nbkit import rules
    from nbkit.studies import two_routes

    text = README.read_text()
    table = text[text.index("| | resnet20 | resnet32 | resnet56 |"):].split("\n\n")[0]
    labels = {rules.get(r).label.lower(): r for r in rules.names()}
    rows, found = two_routes.shipped("two_routes_depth")
    assert rows is not None, found and found.error
    gaps = two_routes.gaps(rows, "depth")
    checked = 0
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rule = labels[cells[0]]
        for depth, cell in zip((20, 32, 56), cells[1:], strict=True):
            assert float(cell.replace("−", "-")) == pytest.approx(gaps[rule][depth], abs=0.051)
            checked += 1
    assert checked == 12
