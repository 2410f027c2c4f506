"""The README's full-mode command works after `make lab`: papermill is installed with the
package, and on a machine without a GPU the run says what it did instead of failing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_papermill_is_installed_with_the_package():
    import importlib.metadata as md

    requires = " ".join(md.requires("nbkit") or [])
    assert "papermill" in requires, "make lab installs the package only: list papermill there"


def test_the_readme_full_mode_command_on_a_cpu_runs_and_says_so(tmp_path):
    readme = (REPO / "README.md").read_text()
    assert "papermill notebooks/01_layer_collapse.ipynb out.ipynb -p MODE full" in readme
    out = tmp_path / "out.ipynb"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    for key in ("NBKIT_FULL_ON_CPU", "NBKIT_MODE"):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "00_welcome.ipynb"),
         str(out), "-p", "MODE", "full", "--cwd", str(REPO / "notebooks"), "--no-progress-bar"],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    nb = json.loads(out.read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []))
    assert "nobody can answer here, so this run uses quick mode" in text
    assert "NBKIT_FULL_ON_CPU=yes" in text and "mode: quick" in text


def test_every_notebook_takes_papermill_parameters():
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"
                 and "".join(c["source"]).startswith("# parameters")]
        assert len(cells) == 1, f"{path.name}: one '# parameters' cell"
        assert "parameters" in cells[0].get("metadata", {}).get("tags", []), \
            f"{path.name}: tag its parameters cell, or papermill -p MODE full changes nothing"
