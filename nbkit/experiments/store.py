"""One JSON file per finished run: written atomically, checked when read back.

A result file holds the run's exact configuration, its result, and the provenance of the
run (git commit, device, torch version, date). It is written to a temporary file in the
same folder, flushed to disk and then renamed over its final name, so a reader sees
either no file or a complete one. A file that does not parse, lacks a field, holds another
run's configuration, or whose digest does not match its content (a torn or edited file)
is reported as invalid, and the sweep redoes that run.
"""

from __future__ import annotations

import datetime as _dt
import glob
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["SCHEMA", "canonical", "config_hash", "run_filename", "jsonable", "write_record",
           "read_record", "scan", "provenance", "provenance_date", "device_name",
           "clean_temporaries", "temporaries", "write_text_atomic", "slug"]

SCHEMA = "nbkit.experiments/1"
REQUIRED = ("schema", "experiment", "kind", "run_id", "config", "result", "provenance", "digest")
_TMP_SUFFIX = ".partial"
_REPO = Path(__file__).resolve().parent.parent.parent


def jsonable(value):
    """``value`` as plain JSON types: tensors and NumPy values become lists and numbers,
    tuples become lists, and non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # torch tensors, NumPy arrays and scalars
        return jsonable(value.tolist())
    if hasattr(value, "item"):
        return jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a JSON result; return plain "
                    "numbers, strings, lists and dicts from a run kind")


def canonical(value) -> str:
    """The canonical JSON text of ``value``: sorted keys, no spaces."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(experiment: str, kind: str, config: dict) -> str:
    """A short stable hash of what defines a run: experiment, run kind and configuration."""
    text = canonical({"experiment": experiment, "kind": kind, "config": config})
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _digest(record: dict) -> str:
    body = {k: record[k] for k in ("experiment", "kind", "run_id", "config", "result")}
    return hashlib.sha256(canonical(body).encode()).hexdigest()[:16]


def run_filename(run_id: str) -> str:
    return f"{run_id}.json"


def write_text_atomic(path: Path, text: str, prefix: str | None = None) -> Path:
    """Write ``text`` to ``path`` atomically: to a temporary file in the same folder,
    flushed to disk, then renamed over ``path``. A failed or interrupted write leaves
    ``path`` as it was (and removes its temporary file when it can)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.",
                               suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_record(folder: Path, record: dict) -> Path:
    """Write ``record`` (which must hold every field of :data:`REQUIRED` but ``digest``)
    as ``<run_id>.json`` in ``folder``, atomically. Returns the path."""
    folder = Path(folder)
    record = jsonable(record)
    record["digest"] = _digest(record)
    text = json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n"
    return write_text_atomic(folder / run_filename(record["run_id"]), text,
                             prefix=f".{record['run_id']}.")


def read_record(path: Path, expect_config: dict | None = None) -> tuple[dict | None, str]:
    """Read and check one result file. Returns ``(record, "")`` when it is valid and
    ``(None, reason)`` when it is missing, truncated, incomplete, edited, or (with
    ``expect_config``) holds a different configuration."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "missing"
    except OSError as e:
        return None, f"unreadable ({e})"
    except UnicodeDecodeError:
        return None, "not valid JSON (not UTF-8 text)"
    try:
        record = json.loads(text)
    except ValueError as e:
        return None, f"not valid JSON ({e.msg} at character {e.pos} of {len(text)})"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        return None, f"missing fields {missing}"
    if record["schema"] != SCHEMA:
        return None, f"schema {record['schema']!r}, expected {SCHEMA!r}"
    try:
        digest = _digest(record)
    except (TypeError, ValueError) as e:
        return None, f"content cannot be re-encoded ({e})"
    if digest != record["digest"]:
        return None, "digest does not match the content (torn or edited file)"
    if path.name != run_filename(record["run_id"]):
        return None, f"file name does not match its run_id {record['run_id']!r}"
    if expect_config is not None and canonical(record["config"]) != canonical(expect_config):
        return None, "holds a different configuration than this run's"
    return record, ""


def scan(folder: Path) -> tuple[list[dict], dict[str, str]]:
    """Every valid record in ``folder`` (sorted by run_id) and ``{file name: reason}`` for
    the invalid ones."""
    good, bad = [], {}
    folder = Path(folder)
    if not folder.is_dir():
        return good, bad
    for path in sorted(folder.glob("*.json")):
        record, reason = read_record(path)
        if record is None:
            bad[path.name] = reason
        else:
            good.append(record)
    return good, bad


def temporaries(folder: Path) -> list[Path]:
    """The temporary files of unfinished writes in ``folder`` (a write in flight, or one
    that a kill interrupted), sorted by name."""
    folder = Path(folder)
    return sorted(folder.glob(f".*{_TMP_SUFFIX}")) if folder.is_dir() else []


def clean_temporaries(folder: Path, run_ids=None) -> int:
    """Delete the temporary files that a write interrupted by a kill left in ``folder``
    (only those of ``run_ids`` when given, so that a sweep never touches the write in
    flight of another shard); returns how many there were."""
    patterns = ([f".{glob.escape(r)}.*{_TMP_SUFFIX}" for r in run_ids] if run_ids is not None
                else [f".*{_TMP_SUFFIX}"])
    n = 0
    for pattern in patterns:
        for path in Path(folder).glob(pattern):
            path.unlink(missing_ok=True)
            n += 1
    return n


# ------------------------------------------------------------------------- provenance

def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=_REPO, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def device_name(device) -> str:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        name = platform.processor() or platform.machine()
        if sys.platform.startswith("linux"):
            try:
                for line in Path("/proc/cpuinfo").read_text().splitlines():
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
            except OSError:
                pass
        return f"{name} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return str(dev)


def provenance(device) -> dict:
    """Where and with what a run was made: git commit (and whether the tree had local
    changes), device and its name, torch, Python and nbkit versions, and the UTC date.
    ``$NBKIT_GIT_COMMIT``, when set, names the commit and wins over any git metadata
    beside the code: a copy of the tree sent to another machine may carry none, or a
    stale one. Whether that tree had local changes is then unknown (None), unless the
    local git metadata names the same commit."""
    import torch

    import nbkit

    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    given = os.environ.get("NBKIT_GIT_COMMIT") or None
    if given is not None and not (commit and commit.startswith(given)):
        commit, status = given, None
    return {
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "nbkit": nbkit.__version__,
        "date": provenance_date(),
    }


def provenance_date() -> str:
    """The current UTC date and time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def slug(text: str) -> str:
    """A file-name-safe form of ``text``."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-")
