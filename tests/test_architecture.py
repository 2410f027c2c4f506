"""The design's rules, checked on the source itself: imports run one way (data -> models ->
pruning/rules -> train -> probes -> studies -> viz -> widgets, with the experiment runner
beside the widgets), no module imports itself back, widgets hold no science, and facts
about a pruner, rule or objective live on its registry entry, not in name checks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import nbkit
from nbkit import probes, pruning, rules

PACKAGE = Path(nbkit.__file__).parent
# The order of the data flow; a module may import from its own layer or a lower one.
LAYERS = {"": 0, "device": 0, "data": 0, "models": 1, "layers": 1, "pruning": 2, "rules": 2,
          "train": 3, "step": 3, "probes": 4, "studies": 5, "viz": 6, "widgets": 7,
          "experiments": 7, "gallery": 8}
# The registries themselves may compare names: that is where the facts live.
REGISTRIES = {"nbkit.pruning.scores", "nbkit.rules.registry", "nbkit.probes.saliency"}


def _name(path: Path) -> str:
    parts = ["nbkit", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return SOURCES.get(name, Path()).name == "__init__.py"


def _imports(name: str) -> set[str]:
    """The nbkit modules ``name`` imports, at module level or inside functions."""
    tree = ast.parse(SOURCES[name].read_text())
    here = name if _is_package(name) else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "nbkit")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = here.split(".")
                parent = parent[:len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base.split(".")[0] != "nbkit":
                continue
            for a in node.names:
                target = f"{base}.{a.name}"
                out.add(target if target in SOURCES else base)
    return {m for m in out if m in SOURCES and m != name}


def _top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_import_runs_down_the_data_flow():
    upward = []
    for name in SOURCES:
        for target in _imports(name):
            a, b = _top(name), _top(target)
            if a != b and LAYERS[a] < LAYERS[b]:
                upward.append(f"{name} imports {target}")
    assert not upward, upward


def test_studies_never_import_viz_or_widgets_and_the_runner_never_imports_apps():
    bad = [f"{n} imports {t}" for n in SOURCES for t in _imports(n)
           if (_top(n) == "studies" and _top(t) in ("viz", "widgets", "experiments"))
           or (_top(n) == "experiments" and _top(t) in ("viz", "widgets"))]
    assert not bad, bad
    for name in SOURCES:
        if _top(name) == "studies":
            for node in ast.walk(ast.parse(SOURCES[name].read_text())):
                modules = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                           [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for m in modules:
                    assert m.split(".")[0] not in ("ipywidgets", "plotly"), (name, m)


def find_cycle(graph: dict) -> list | None:
    """One cycle of ``graph`` ({node: set of nodes}) as a list of nodes, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle():
    # a submodule importing its own package's __init__ is how Python loads packages,
    # not a cycle of the design; leave those edges out
    graph = {name: {t for t in _imports(name) if not name.startswith(f"{t}.")}
             for name in SOURCES}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_one():
    graph = {name: _imports(name) for name in SOURCES}
    graph["nbkit.experiments.spec"] = graph["nbkit.experiments.spec"] | {
        "nbkit.experiments.runner"}  # the runner already imports spec
    assert "nbkit.experiments.spec" in graph["nbkit.experiments.runner"]
    assert find_cycle(graph) is not None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


# ------------------------------------------------------------------ widgets hold no science

WIDGETS = [n for n in SOURCES if _top(n) == "widgets"]
ALLOWED_NBKIT = ("studies", "viz", "widgets", "device")
TRAINING_CALLS = {"backward", "fit", "iter_fit", "zero_grad", "step"}
READING_CALLS = {"read_text", "read_bytes", "open", "load", "loads"}


@pytest.mark.parametrize("name", WIDGETS)
def test_a_widget_module_only_wires_controls_to_a_study_and_a_figure(name):
    tree = ast.parse(SOURCES[name].read_text())
    for target in _imports(name):
        assert _top(target) in ALLOWED_NBKIT, f"{name} imports {target}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                assert a.name.split(".")[0] not in ("torch", "json", "pickle"), \
                    f"{name} imports {a.name}"
        elif isinstance(node, ast.ImportFrom) and not node.level:
            assert (node.module or "").split(".")[0] not in ("torch", "json", "pickle"), \
                f"{name} imports from {node.module}"
        elif isinstance(node, ast.ClassDef):
            bases = {getattr(b, "attr", getattr(b, "id", "")) for b in node.bases}
            assert "Module" not in bases, f"{name} defines an nn.Module: {node.name}"
        elif isinstance(node, ast.Call):
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            assert called not in TRAINING_CALLS, f"{name} calls {called}() (a training loop)"
            assert called not in READING_CALLS, f"{name} calls {called}() (reads a file)"


# ------------------------------------------------------------------ facts on registry entries

NAMES = set(pruning.methods()) | set(rules.names()) | set(probes.OBJECTIVES)


def _name_checks(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        if not all(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
            continue
        for side in [node.left, *node.comparators]:
            items = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
            for item in items:
                if isinstance(item, ast.Constant) and item.value in NAMES:
                    found.append(f"line {node.lineno}: compares with {item.value!r}")
    return found


@pytest.mark.parametrize("name", [n for n in SOURCES if n not in REGISTRIES])
def test_no_name_check_outside_the_registries(name):
    assert not _name_checks(SOURCES[name].read_text()), name


def test_the_name_check_finds_one():
    assert _name_checks('its = 100 if method == "synflow" else 1')
    assert _name_checks('if r not in ("backprop", "sign_symmetry"): pass')
    assert not _name_checks('its = scorer.iterations if scorer.iterations > 1 else 1')
