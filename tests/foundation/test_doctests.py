"""The runnable examples in the foundation modules' docstrings (atomic writes, scratch
folders, fan-out, configuration)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["io", "executor", "config"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"medae.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"medae.{name} has no examples"
    assert result.failed == 0
