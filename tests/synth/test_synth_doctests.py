"""The runnable examples in the generator's docstrings stay true."""

from __future__ import annotations

import doctest

import pytest

from tests.doctests import assert_examples_pass

MODULES = ["items", "cohort", "events", "csvgz", "generate", "wfdb_write", "waveforms"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    assert_examples_pass(f"medae.synth.{name}", flags=doctest.ELLIPSIS)
