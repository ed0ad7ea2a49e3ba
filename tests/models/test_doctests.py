"""The runnable examples in the model modules' docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["base", "build", "config", "conv1d"]


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name):
    result = doctest.testmod(importlib.import_module(f"medae.models.{name}"))
    assert result.attempted > 0 and result.failed == 0
