"""The runnable examples in the EHR modules' docstrings (golden pairs of the transforms)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["dictionary", "dq", "events", "featurize", "meds", "shards", "tables"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"medae.ehr.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"medae.ehr.{name} has no examples"
    assert result.failed == 0
