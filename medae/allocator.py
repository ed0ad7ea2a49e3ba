"""Keep freed memory in the process for the next batch instead of handing it back to the OS.

A batch stage allocates and frees buffers of the same large sizes again and again: every
training step's and every export batch's activations, a 4,096-row input array. glibc's
default ``malloc`` serves blocks over a moving threshold (128 KiB to 32 MiB) with fresh
``mmap`` pages and trims freed memory at the top of its heaps, so the next batch faults each
page in again, zero-filled by the kernel. Measured on the 2-core CI-class machine: the
multimodal model's forward pass on 4,096-row batches took 0.29 s of kernel time for 0.76 s in
all (150,000 page faults per 32,768 rows); with the settings below, 0.01 s of 0.47-0.56 s
(7,000 faults). Figures and commands: docs/refresh.md, "Allocator".

:func:`keep_freed_memory` sets, through ``mallopt`` (glibc; on Linux only):

- ``M_MMAP_THRESHOLD`` 32 MiB, glibc's largest: blocks up to 32 MiB come from the heap, and
  the threshold no longer moves;
- ``M_TRIM_THRESHOLD`` 1 GiB and ``M_TOP_PAD`` 64 MiB: freed memory stays mapped for reuse;
- ``M_ARENA_MAX`` 1: every thread allocates from the main heap, which keeps what it frees;
  glibc's per-thread arenas (up to 8 per core) are heaps of at most 64 MiB that hand freed
  memory back on their own. EHR export with 2 worker threads (and the mimalloc setting below):
  0.05-0.08 s of kernel time per 40,000 windows instead of 0.41-0.52 s, 57-61k rows/s instead
  of 47-51k. The large buffers are few
  (Polars and Arrow bring their own allocators), so one arena's lock costs nothing measurable.

It also asks Arrow's allocator (mimalloc, where Parquet pages are decoded) to keep the pages
it frees (``MIMALLOC_PURGE_DELAY=-1``, unless the environment sets it): by default it returns
idle pages within 10 ms, and export faulted them in again every batch (EHR export: 0.05 s of
kernel time per 40,000 windows instead of 0.16-0.18 s).

Call it before numpy, torch, Polars or Arrow are imported: they start threads on import, and
glibc fixes the number of arenas when the second thread allocates (called after them, 5 arenas
remain). ``medae run`` and ``medae evaluate`` call it first thing.

Cost: the process keeps up to its peak heap until it exits, which a stage process does when
the stage ends. Environment ``MEDAE_KEEP_FREED_MEMORY=0`` leaves the defaults (glibc's and
mimalloc's).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

OPT_OUT = "MEDAE_KEEP_FREED_MEMORY"
# glibc <malloc.h> parameter numbers and the values set
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -2, -3, -8
SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20),
            (M_ARENA_MAX, 1))

# libraries that start threads (so arenas) when imported: the arena limit must come first
THREADED_LIBRARIES = ("numpy", "torch", "polars", "pyarrow")

_applied: bool | None = None
_late: list[str] = []


def keep_freed_memory() -> bool:
    """Apply :data:`SETTINGS` once per process; True when glibc took them all (tested in
    tests/foundation/test_allocator.py: page faults per batch before and after)."""
    global _applied
    if _applied is None:
        _late.extend(m for m in THREADED_LIBRARIES if m in sys.modules)
        _applied = _apply()
        if _applied and _late:
            log.debug("allocator: applied after %s; their threads keep their own arenas",
                      ", ".join(_late))
    return _applied


def _apply() -> bool:
    if os.environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        log.debug("allocator: %s set, glibc defaults kept", OPT_OUT)
        return False
    if not sys.platform.startswith("linux"):
        return False
    # read by mimalloc when Arrow first allocates: only in time before pyarrow is imported
    os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no settable mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)


def describe() -> str:
    """One line for benchmark output: whether this process keeps freed memory."""
    if keep_freed_memory():
        late = f"; applied after {', '.join(_late)} (extra arenas)" if _late else ""
        return f"allocator: freed memory kept for reuse (medae.allocator, as in `medae run`){late}"
    return f"allocator: system defaults ({OPT_OUT}=0, or not glibc)"
