"""The package's layering, as pyproject.toml's import-linter contracts state it, holds, and the check catches a
module that imports upward (so a green run means something)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
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


def _imports_of_own_modules() -> tuple[int, Counter]:
    """Imports of the package's own modules (one per ``from calmops… import`` statement, one per name of an
    ``import calmops…``): how many sit at module level, and how many inside functions per module path."""
    at_top, inside = 0, Counter()
    for path in sorted((ROOT / "calmops").rglob("*.py")):
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["calmops"]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            own = sum(1 for name in names if name == "calmops" or name.startswith("calmops."))
            scope = parents.get(node)
            while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scope = parents.get(scope)
            if scope is None:
                at_top += own
            elif own:
                inside[path.relative_to(ROOT / "calmops").as_posix()] += own
    return at_top, inside


def test_the_architecture_page_counts_the_imports_inside_functions_and_says_why():
    """docs/architecture.md states how many imports sit inside functions and lists every module that has them,
    with its count and a reason: a new function-level import must be added there (or moved to the top)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    at_top, inside = _imports_of_own_modules()
    said = re.search(r"Of the (\d+) imports between the package's own modules, (\d+) are at module level; the "
                     r"(\d+) inside functions", text)
    assert said, "docs/architecture.md lost its sentence on import counts"
    assert tuple(map(int, said.groups())) == (at_top + sum(inside.values()), at_top, sum(inside.values()))
    rows = re.findall(r"^\| ((?:`[^`]+`,? ?)+) \| (\d+) \| [^|]+ \|$", text, flags=re.MULTILINE)
    listed = {}
    for modules, count in rows:
        names = re.findall(r"`([^`]+)`", modules)
        assert sum(inside[n] for n in names) == int(count), f"{names}: {[inside[n] for n in names]} vs {count}"
        listed.update(dict.fromkeys(names))
    assert set(listed) == set(inside), f"not listed: {set(inside) - set(listed)}; no longer: {set(listed) - set(inside)}"
