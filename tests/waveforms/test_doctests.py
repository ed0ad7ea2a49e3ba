"""The runnable examples in the waveform modules' docstrings stay true."""

from __future__ import annotations

import pytest

from tests.doctests import assert_examples_pass

MODULES = ["beats", "catalog", "channels", "dsp", "headers", "reader", "windows"]


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name):
    assert_examples_pass(f"medae.waveforms.{name}", may_be_empty=name == "reader")
