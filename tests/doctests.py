"""One way to run a module's docstring examples (the tiny runnable examples on transforms)."""

from __future__ import annotations

import doctest
import importlib


def assert_examples_pass(module_name: str, *, flags: int = 0, may_be_empty: bool = False) -> None:
    """Run the examples of ``module_name``: none may fail, and there must be some unless
    ``may_be_empty`` (a module whose examples moved elsewhere)."""
    result = doctest.testmod(importlib.import_module(module_name), optionflags=flags)
    assert result.failed == 0, f"{module_name}: {result}"
    assert result.attempted > 0 or may_be_empty, f"{module_name} has no examples"
