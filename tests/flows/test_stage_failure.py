"""A failing stage: Prefect's logs get its one-line error, the owner gets its whole output."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from flows.pipeline import StageFailed, reproduce, stage_log
from tests.flows.project import make_project


def test_failed_stage_keeps_its_whole_output_in_an_owner_only_file(tmp_path: Path, caplog):
    root = make_project(tmp_path / "proj")
    source = root / "data" / "source" / "ehr"
    source.mkdir(parents=True)
    (source / "notes.txt").write_text("no tables here\n")  # ingest_ehr runs, then fails
    caplog.set_level(logging.WARNING, logger="medae.refresh")
    old = os.umask(0o022)  # as a shell would have it: the file is owner-only all the same
    try:
        with pytest.raises(StageFailed) as caught:
            reproduce(root, "ingest_ehr")
    finally:
        os.umask(old)
    error = str(caught.value)
    assert error.startswith("stage ingest_ehr: error: ") and "cannot tell the layout" in error

    kept = stage_log(root, "ingest_ehr")
    assert kept == root / "reports" / "logs" / "ingest_ehr.log"
    output = kept.read_text()
    assert error.removeprefix("stage ingest_ehr: ") in output
    assert "Running stage 'ingest_ehr'" in output  # DVC's own lines are kept too
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    warnings = [r.getMessage() for r in caplog.records if r.name == "medae.refresh"]
    assert warnings == [f"ingest_ehr failed: {error.removeprefix('stage ingest_ehr: ')} "
                        f"(its whole output: {kept})"]
