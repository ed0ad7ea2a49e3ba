"""A second refresh while one runs fails fast, with a clear message, and changes nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.lock import RefreshBusy, lock_path, refresh_lock
from flows.nightly import run_refresh
from medae.config import load_params
from tests.flows.project import ROOT

HOLD = """
import sys, time
from pathlib import Path
from flows.lock import refresh_lock
with refresh_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_second_refresh_fails_fast_and_touches_nothing(tmp_path: Path):
    project = tmp_path / "proj"
    project.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        (project / name).write_bytes((ROOT / name).read_bytes())
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(project)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.relative_to(project) for p in project.rglob("*"))
        t0 = time.perf_counter()
        with pytest.raises(RefreshBusy, match=r"another refresh is already running .*pid \d+"):
            run_refresh(load_params(project / "params.yaml"))
        assert time.perf_counter() - t0 < 2.0
        assert sorted(p.relative_to(project) for p in project.rglob("*")) == before
    finally:
        holder.kill()
        holder.wait()
    with refresh_lock(project):  # the kernel released the dead holder's lock
        assert lock_path(project).exists()


def test_lock_is_reentrant_within_one_process(tmp_path: Path):
    with refresh_lock(tmp_path), refresh_lock(tmp_path):
        pass
