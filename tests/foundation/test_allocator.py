"""medae.allocator: freed memory is kept for the next batch (fewer page faults), opt-out works.

Each case runs in a fresh interpreter: glibc's settings are per process and cannot be undone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

# A batch stage's pattern: the same model run on 4,096-row batches (31.5 MB input tensors and
# their normalised copies), page faults per batch counted before and after the settings.
PROBE = textwrap.dedent("""
    import resource, sys
    import torch
    from medae.allocator import keep_freed_memory

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = torch.nn.Sequential(torch.nn.Linear(1926, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 32))
    x = torch.randn(4096, 1926)

    def faults_per_batch():
        # the least of 3 rounds: the kernel's own reclaim (DAMON runs on these VMs) only adds
        rounds = []
        with torch.inference_mode():
            net(torch.nan_to_num((x - 1.0) / 2.0))  # warm-up
            for _ in range(3):
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                for _ in range(5):
                    net(torch.nan_to_num((x - 1.0) / 2.0))
                rounds.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5)
        return min(rounds)

    before = faults_per_batch()
    applied = keep_freed_memory()
    print(before, applied, faults_per_batch())
""")

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")


def probe(**env: str) -> tuple[float, bool, float]:
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, **env}, timeout=120)
    assert res.returncode == 0, res.stderr
    before, applied, after = res.stdout.split()
    return float(before), applied == "True", float(after)


@linux_only
def test_settings_cut_the_page_faults_of_repeated_batches():
    before, applied, after = probe(MEDAE_KEEP_FREED_MEMORY="1")
    assert applied
    pages_of_input = 4096 * 1926 * 4 / 4096
    # kept memory: under a quarter of an input tensor's pages a batch, at most half of
    # glibc's defaults (seen: 4,600-23,000 before, 0-1,500 after)
    assert after < pages_of_input / 4 and after <= before / 2, (before, after)


# Called first, as `medae run` does: every thread then allocates from the one main heap. The
# libraries' own threads (imports) and a pool of workers, as export runs them.
ARENAS = textwrap.dedent("""
    import ctypes, os, re, sys, tempfile
    from medae.allocator import keep_freed_memory
    applied = keep_freed_memory()
    from concurrent.futures import ThreadPoolExecutor
    import numpy as np, polars as pl, pyarrow as pa, torch

    def work(i):
        return float(np.ones((512, 512)).sum() + (torch.ones(256, 256) @ torch.ones(256, 4)).sum())

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(8)))
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    fd, path = tempfile.mkstemp()
    os.close(fd)
    stream = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    print(applied, len(re.findall(r"<heap nr=", open(path).read())),
          os.environ.get("MIMALLOC_PURGE_DELAY", "unset"))
""")


def arenas(**env: str) -> tuple[bool, int, str]:
    base = {k: v for k, v in os.environ.items() if k != "MIMALLOC_PURGE_DELAY"}
    res = subprocess.run([sys.executable, "-c", ARENAS], capture_output=True, text=True,
                         cwd=ROOT, env={**base, **env}, timeout=120)
    assert res.returncode == 0, res.stderr
    applied, count, purge = res.stdout.split()
    return applied == "True", int(count), purge


@linux_only
def test_all_threads_share_one_heap_when_applied_first():
    # one heap, and Arrow's mimalloc keeps its pages too
    assert arenas(MEDAE_KEEP_FREED_MEMORY="1") == (True, 1, "-1")
    # glibc's defaults: arenas for the threads; mimalloc left alone
    applied, count, purge = arenas(MEDAE_KEEP_FREED_MEMORY="0")
    assert not applied and count > 1 and purge == "unset"
    # a purge delay the user set is kept
    assert arenas(MEDAE_KEEP_FREED_MEMORY="1", MIMALLOC_PURGE_DELAY="100")[2] == "100"
