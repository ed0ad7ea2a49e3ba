"""The runnable examples in the training modules' docstrings stay true."""

from __future__ import annotations

import pytest

from tests.doctests import assert_examples_pass

MODULES = ["encode", "pairs", "loop", "train", "tracking", "evaluate"]


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name):
    assert_examples_pass(f"medae.training.{name}")
