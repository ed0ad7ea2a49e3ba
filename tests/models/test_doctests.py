"""The runnable examples in the model modules' docstrings stay true."""

from __future__ import annotations

import pytest

from tests.doctests import assert_examples_pass

MODULES = ["base", "build", "config", "conv1d"]


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name):
    assert_examples_pass(f"medae.models.{name}")
