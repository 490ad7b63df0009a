"""The package's layering, as pyproject.toml's import-linter contracts state it, holds, and the check catches a
module that imports upward (so a green run means something)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    """lint-imports over the ``calmops`` package found in ``tree``, with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300, check=False)


def _copy_package(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "calmops", tree / "calmops", ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def test_the_package_keeps_its_layers():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "source", "broken"), [
    # a function-local import counts as much as a module-level one
    ("calmops/core/upward.py", "def f():\n    from calmops.flows import stream\n    return stream\n",
     "calmops.core is not allowed to import calmops.flows"),
    ("calmops/tasks/upward.py", "import calmops.deployments.watcher\n",
     "calmops.tasks is not allowed to import calmops.deployments"),
    ("calmops/detectors/orchestrated.py", "import prefect\n", "calmops.detectors is not allowed to import prefect"),
    ("calmops/generators/tracked.py", "import mlflow\n", "calmops.generators is not allowed to import mlflow"),
    ("calmops/dashboards/sideways.py", "from calmops.deployments import watcher\n",
     "calmops.dashboards is not allowed to import calmops.deployments"),
])
def test_an_import_against_the_layers_breaks_the_contract(tmp_path, module, source, broken):
    tree = _copy_package(tmp_path)
    (tree / module).write_text(source)
    result = _lint(tree)
    assert result.returncode != 0
    assert broken in " ".join(result.stdout.split())
