"""The runnable examples in the foundation modules' docstrings (atomic writes, scratch
folders, fan-out, configuration)."""

from __future__ import annotations

import doctest

import pytest

from tests.doctests import assert_examples_pass

MODULES = ["io", "executor", "config"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    assert_examples_pass(f"medae.{name}", flags=doctest.ELLIPSIS)
