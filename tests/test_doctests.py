"""The docstring examples of the library layers run: they are part of the documentation, and each module that
has examples is listed here (a module that loses all of its examples fails)."""

import doctest
import importlib

import pytest

MODULES = [
    *(f"calmops.generators.{name}" for name in
      ("files", "synthetic", "real", "clinic", "inject", "dynamics", "report", "scenarios")),
    *(f"calmops.detectors.{name}" for name in ("columns", "comparison", "concept", "decay", "estimation", "policy")),
    *(f"calmops.core.{name}" for name in ("awaiting", "blockwise", "errors", "frozen", "ipip", "kinds", "metrics", "names", "spec")),
    "calmops.tasks.validate",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
