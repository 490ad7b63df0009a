"""Every Python example of docs/generators.md runs as written, each on its own (a reader copies one section,
not the page): names it uses are defined in it or imported by it. Only the pacing between files is set to 0."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "generators.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_page_has_its_examples():
    assert len(SNIPPETS) >= 6


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"example-{i + 1}" for i in range(len(SNIPPETS))])
def test_each_example_runs_on_its_own(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write into relative folders
    exec(compile(code.replace("pace_seconds=5", "pace_seconds=0"), str(DOC), "exec"), {})  # noqa: S102
