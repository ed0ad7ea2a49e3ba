"""Session fixtures of the hardening tests: the valid project, run once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.hardening import corpus, harness

ALL_STAGES = ("ingest_ehr", "clean_ehr", "featurize_ehr", "catalog_waveforms",
              "window_waveforms")


def available(stages) -> tuple[str, ...]:
    return tuple(s for s in stages if not harness.missing_stages((s,)))


@pytest.fixture(scope="session")
def valid_project(tmp_path_factory, mimic_demo, physionet) -> Path:
    """Valid real data with every available data stage run once: the 'previous outputs'."""
    project = corpus.build_valid_project(tmp_path_factory.mktemp("valid") / "project",
                                         mimic_demo, physionet)
    for run in harness.run_chain(project, available(ALL_STAGES)):
        assert run.returncode == 0, f"valid data failed in {run.stage}: {run.stderr[-2000:]}"
    return project


@pytest.fixture(scope="session", autouse=True)
def _sentinel_refresh_in_background(request, tmp_path_factory):
    """Start the sentinel refresh (a minute of mostly single-core work) when the session
    starts, so that it overlaps the corpus and crash tests instead of running after them."""
    wanted = any(item.path.name == "test_sentinel.py" for item in request.session.items)
    if not wanted:
        yield
        return
    try:
        from tests.hardening.test_sentinel import sentinel_refresh
    except pytest.skip.Exception:  # the refresh flow is not there yet
        yield
        return
    pool = ThreadPoolExecutor(max_workers=1)
    request.config._medae_sentinel = pool.submit(sentinel_refresh,
                                                 tmp_path_factory.mktemp("sentinel"))
    yield
    pool.shutdown(wait=True)  # never leave a refresh running behind the session
