"""The runnable examples in the generator's docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["items", "cohort", "events", "csvgz", "generate", "wfdb_write", "waveforms"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"medae.synth.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
