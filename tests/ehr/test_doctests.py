"""The runnable examples in the EHR modules' docstrings (golden pairs of the transforms)."""

from __future__ import annotations

import doctest

import pytest

from tests.doctests import assert_examples_pass

MODULES = ["dictionary", "dq", "events", "featurize", "meds", "shards", "tables"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    assert_examples_pass(f"medae.ehr.{name}", flags=doctest.ELLIPSIS)
