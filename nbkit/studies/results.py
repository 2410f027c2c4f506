"""Every results file nbkit ships or collects, read in one place with one policy.

- ``data/reference/<name>.json``: the papers' published numbers (Fig. 1, Fig. 6). They
  ship with nbkit; :func:`published` raises ``FileNotFoundError`` (saying to restore
  the file) when one is missing, since nothing can be drawn against it.
- ``data/results/<experiment>[.<variant>].json``: full-scale runs collected by
  ``python -m nbkit.experiments ... --collect``.

The policy for collected files: a file that is not there is ``None`` (the figure or
table simply has no nbkit line); a file that is there but cannot be read, or holds
another experiment, comes back as a :class:`ResultFile` whose ``error`` names the file,
what is wrong and what to do. Callers show that error where the numbers would be, so
nothing is skipped silently and nothing raises.

>>> found = collected("learning_rules")          # the best variant shipped, or None
>>> found.doc["summary"] if found and found.ok else None
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import data as _data

__all__ = ["RESULTS_DIR", "REFERENCE_DIR", "ResultFile", "read", "published", "path_for",
           "collected", "all_collected", "made_text"]

RESULTS_DIR = _data.DATA_DIR / "results"
REFERENCE_DIR = _data.DATA_DIR / "reference"
VARIANT_ORDER = ("full", "short")  # which collected variant a figure prefers


@dataclass
class ResultFile:
    """One results file: its parsed JSON (``doc``), or why it could not be read."""

    path: Path
    doc: dict | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def variant(self) -> str:
        return (self.doc or {}).get("variant", "?")


def read(path, experiment: str | None = None) -> ResultFile:
    """``path`` parsed, or a :class:`ResultFile` with the reason it could not be: not
    JSON, not a dict, no ``summary``, or (when ``experiment`` is given) another
    experiment's file. Never raises for the file's content."""
    path = Path(path)
    fix = (f"run `python -m nbkit.experiments collect {experiment}` again, or restore "
           f"{path.name} from the repository" if experiment else
           f"restore {path.name} from the repository")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return ResultFile(path, error=f"{path.name} could not be read ({type(e).__name__}: "
                                      f"{e}); {fix}")
    if not isinstance(doc, dict) or not isinstance(doc.get("summary"), dict):
        return ResultFile(path, error=f"{path.name} holds no collected summary; {fix}")
    if experiment and doc.get("experiment", experiment) != experiment:
        return ResultFile(path, error=f"{path.name} holds results of "
                                      f"{doc.get('experiment')!r}, not {experiment!r}; {fix}")
    return ResultFile(path, doc)


def published(name: str, folder=None) -> dict:
    """The published numbers ``data/reference/<name>.json`` (``"synflow_fig1"``,
    ``"synflow_fig6"``)."""
    path = Path(folder or REFERENCE_DIR) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; it ships with nbkit in data/reference/ "
                                "(restore it from the repository)")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it from the repository"
                         ) from e


def path_for(experiment: str, variant: str = "full", folder=None) -> Path:
    """Where the collected ``variant`` of ``experiment`` lives: data/results/<name>.json
    for the full variant, data/results/<name>.<variant>.json for the others."""
    suffix = "" if variant == "full" else f".{variant}"
    return Path(folder or RESULTS_DIR) / f"{experiment}{suffix}.json"


def _variant_of(path: Path, experiment: str) -> str:
    rest = path.name[len(experiment):-len(".json")]
    return rest[1:] if rest.startswith(".") else "full"


def all_collected(experiment: str, folder=None) -> list[ResultFile]:
    """Every collected file of ``experiment`` in ``folder`` (default data/results/),
    the preferred variants first (full, short, then the others by name)."""
    folder = Path(folder or RESULTS_DIR)
    if not folder.is_dir():
        return []
    paths = [p for p in folder.glob(f"{experiment}*.json")
             if p.name == f"{experiment}.json" or p.name.startswith(f"{experiment}.")]

    def rank(p):
        v = _variant_of(p, experiment)
        return (VARIANT_ORDER.index(v) if v in VARIANT_ORDER else len(VARIANT_ORDER), p.name)

    return [read(p, experiment) for p in sorted(paths, key=rank)]


def collected(experiment: str, variant: str | None = None, folder=None,
              variants=None) -> ResultFile | None:
    """The collected results of ``experiment``: the file of ``variant`` when given, else
    the first of ``variants`` that exists (default: any variant, full first, then short,
    then the others by name). None when there is none; a file that exists but cannot be
    read is returned with its ``error`` (see the module's policy)."""
    if variant is None and variants is None:
        found = all_collected(experiment, folder)
        return found[0] if found else None
    for v in [variant] if variant else variants:
        path = path_for(experiment, v, folder)
        if path.is_file():
            return read(path, experiment)
    return None


def made_text(provenance: dict, noun: str = "runs") -> str:
    """"N <noun> on <devices>, <date>" from a collected file's provenance."""
    devices = ", ".join(provenance.get("devices", [])) or "?"
    return (f"{provenance.get('runs', '?')} {noun} on {devices}, "
            f"{str(provenance.get('last_date', '?'))[:10]}")
