"""The README's "Using it" commands, run as a user copies them: in order, in a fresh folder, each as its own
process, with only the Prefect server the commands talk to (no local stack: ``calmops run`` decides in process).
A command of that block that fails as written fails this test."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NEEDS_A_PROMOTION_OR_THE_STACK = ("rollback", "up", "serve", "viewer", "delete")  # run elsewhere, or never ends


def using_it() -> list[list[str]]:
    """The commands of the README's "Using it" block, without their comments, in order."""
    block = re.search(r"## Using it\s+```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL).group(1)
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


def test_the_readmes_using_it_commands_work_as_written(prefect_server, calmops_home, tmp_path):
    from prefect.settings import PREFECT_API_URL

    shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
    env = {**os.environ, "CALMOPS_HOME": str(calmops_home), "PREFECT_API_URL": PREFECT_API_URL.value()}
    calmops = str(Path(sys.executable).with_name("calmops"))
    ran = []
    for argv in using_it():
        assert argv[0] == ".venv/bin/calmops", argv
        if argv[1] in NEEDS_A_PROMOTION_OR_THE_STACK:
            continue
        done = subprocess.run([calmops, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-3000:])
        ran.append(argv[1:3])
    assert ["report", "sea-gradual"] in ran and ["run", "sea-gradual"] in ran, ran
    assert list(tmp_path.glob("*.report.html")), "the report command wrote no page"


def _kinds_ipip_block() -> list[list[str]]:
    """The commands of docs/kinds.md's IPIP example, as written (comments dropped)."""
    text = (ROOT / "docs" / "kinds.md").read_text()
    section = text[text.index("## ipip"):]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


def test_the_ipip_example_of_the_kinds_page_works_as_written(prefect_server, calmops_home, tmp_path):
    from prefect.settings import PREFECT_API_URL

    shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
    env = {**os.environ, "CALMOPS_HOME": str(calmops_home), "PREFECT_API_URL": PREFECT_API_URL.value()}
    calmops = str(Path(sys.executable).with_name("calmops"))
    commands = _kinds_ipip_block()
    assert [argv[1] for argv in commands] == ["create", "generate", "run", "run"], commands
    for argv in commands:
        done = subprocess.run([calmops, *argv[1:], *(["--json"] if argv[1] == "run" else [])], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-3000:])
        if argv[1] == "run":
            outcome = json.loads(done.stdout)
            assert outcome["kind"] == "ipip"
            # what the comment beside the command says it decides
            said = next(line for line in (ROOT / "docs" / "kinds.md").read_text().splitlines()
                        if argv[-1] in line and "#" in line).split("#", 1)[1].split(":")[0].strip()
            assert outcome["decision"] == said, (argv[-1], outcome["decision"], outcome["reason"])
    made = sorted(p.name for p in (tmp_path / "data" / "rare").iterdir())
    assert made == [f"rare_{i:04d}.csv" for i in range(1, 7)], made  # --no-report: data files only
