"""The docstring examples of every generators module run (they are part of the documentation)."""

import doctest
import importlib

import pytest

MODULES = ["files", "synthetic", "real", "clinic", "inject", "dynamics", "report", "scenarios"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"calmops.generators.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
