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
        with torch.inference_mode():
            net(torch.nan_to_num((x - 1.0) / 2.0))  # warm-up
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(5):
                net(torch.nan_to_num((x - 1.0) / 2.0))
            return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5

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
    # glibc's defaults fault in at least half an input tensor's pages every batch ...
    assert before > pages_of_input / 2, before
    # ... kept memory: under a quarter of one, and at most half of before
    assert after < pages_of_input / 4 and after <= before / 2, (before, after)


@linux_only
def test_opt_out_keeps_glibc_defaults():
    before, applied, after = probe(MEDAE_KEEP_FREED_MEMORY="0")
    assert not applied
    assert after > 4096 * 1926 * 4 / 4096 / 2, after
