"""The registry of pipeline stages: ``medae run <stage>`` is the only entry point to them.

Each area of the library lists its stages as ``name -> "module:function"`` strings; the
function is imported only when the stage runs, so listing stages costs nothing.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from typing import Any

from medae import ehr, export, training, waveforms
from medae.allocator import keep_freed_memory
from medae.errors import UsageError

log = logging.getLogger(__name__)


def registry() -> dict[str, str]:
    """All registered stages, in pipeline order."""
    merged: dict[str, str] = {}
    for area in (ehr, waveforms, training, export):
        merged.update(area.STAGES)
    return merged


def resolve(name: str) -> Callable[[Any], dict[str, Any]]:
    """The function behind stage ``name``; unknown names list the valid ones."""
    stages = registry()
    if name not in stages:
        valid = ", ".join(stages) or "(none registered)"
        raise UsageError(f"unknown stage '{name}'; valid stages: {valid}")
    module, _, func = stages[name].partition(":")
    return getattr(importlib.import_module(module), func)


def run_stage(name: str, params: Any) -> dict[str, Any]:
    """Run one stage and return its summary with the wall time added.

    A stage is a batch process: freed memory is kept for its next batch (medae.allocator),
    set before ``resolve`` imports the stage's libraries, whose threads would come too early.
    """
    keep_freed_memory()
    fn = resolve(name)
    t0 = time.perf_counter()
    log.info("stage %s: starting", name)
    summary = dict(fn(params) or {})
    summary.setdefault("stage", name)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    log.info("stage %s: done in %.1fs", name, summary["seconds"])
    return summary
