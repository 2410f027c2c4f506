"""Claims: so that several drivers sharing one results folder never run the same run.

Before a driver starts a run it creates ``<folder>/.claims/<run_id>`` exclusively
(``O_CREAT | O_EXCL``, atomic on a local or NFS v3+ file system); a driver that finds the
claim taken skips the run. The claim names its host and process and is removed when the
run's result is written or the run fails. A claim left by a driver that died (killed,
preempted) is taken over by the next driver: at once on the same host, where it can see
that the process is gone, and after ``NBKIT_CLAIM_TTL`` seconds (default 12 hours) from
another host.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

__all__ = ["claim", "release", "held", "tidy", "CLAIM_DIR"]

CLAIM_DIR = ".claims"


def _ttl() -> float:
    return float(os.environ.get("NBKIT_CLAIM_TTL", 12 * 3600))


def _stale(path: Path) -> bool:
    try:
        held = json.loads(path.read_text())
    except (OSError, ValueError):  # half written: its writer died at once, or is writing
        try:
            return time.time() - path.stat().st_mtime > 60
        except OSError:
            return False
    if held.get("host") == socket.gethostname():
        try:
            os.kill(int(held["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, KeyError, TypeError):
            return False
        return False
    return time.time() - float(held.get("time", 0)) > _ttl()


def claim(folder, run_id: str) -> bool:
    """Take ``run_id`` for this process; False when another live driver holds it."""
    claims = Path(folder) / CLAIM_DIR
    claims.mkdir(parents=True, exist_ok=True)
    path = claims / run_id
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _stale(path):
                return False
            # take the stale claim over: one rename wins, the others find it gone
            grave = path.with_name(f"{run_id}.stale.{os.getpid()}")
            try:
                os.replace(path, grave)
            except FileNotFoundError:
                return False
            grave.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                       "time": time.time()}, f)
        return True
    return False


def release(folder, run_id: str) -> None:
    """Give ``run_id`` back (its result is written, or it failed)."""
    (Path(folder) / CLAIM_DIR / run_id).unlink(missing_ok=True)


def held(folder, run_id: str) -> bool:
    """Whether a live driver holds ``run_id`` now."""
    path = Path(folder) / CLAIM_DIR / run_id
    return path.exists() and not _stale(path)


def tidy(folder) -> None:
    """Remove the claims folder when no claim is left in it."""
    try:
        (Path(folder) / CLAIM_DIR).rmdir()
    except OSError:  # missing, or another driver still holds a run
        pass
