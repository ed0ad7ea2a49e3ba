"""Session fixtures of the hardening tests: the valid project, run once."""

from __future__ import annotations

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
