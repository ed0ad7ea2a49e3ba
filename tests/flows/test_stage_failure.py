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

    # once the stage succeeds, the failure's log is gone
    from tests.ehr.test_layouts import mimic3_source

    (source / "notes.txt").unlink()
    mimic3_source(source)
    assert reproduce(root, "ingest_ehr") is True
    assert not kept.exists()


def test_flow_modules_doctests():
    from tests.doctests import assert_examples_pass

    for module in ("flows.console", "flows.groups", "flows.pipeline"):
        assert_examples_pass(module)


def test_an_unknown_stage_is_refused_before_prefect_starts(tmp_path: Path):
    from flows.nightly import run_refresh
    from medae.config import load_params
    from medae.errors import UsageError
    from tests.flows.project import ROOT

    project = tmp_path / "proj"
    project.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        (project / name).write_bytes((ROOT / name).read_bytes())
    with pytest.raises(UsageError, match=r"^unknown stage\(s\) ingest; dvc.yaml has: "
                                         r"ingest_ehr, clean_ehr, "):
        run_refresh(load_params(project / "params.yaml"), stages=["ingest", "ingest_ehr"])
    assert sorted(p.name for p in project.iterdir()) == ["dvc.yaml", "params.yaml"]


def test_medae_errors_reach_the_console_in_one_line():
    """Prefect's console handler (on the root logger, as Prefect's logging config puts it)
    drops a medae error's traceback; other exceptions keep theirs, and so do other handlers."""
    import io

    from prefect.logging.handlers import PrefectConsoleHandler

    from flows.console import MedaeErrorsInOneLine, medae_errors_in_one_line
    from medae.errors import MedaeError

    console_out, file_out = io.StringIO(), io.StringIO()
    console, other = PrefectConsoleHandler(stream=console_out), logging.StreamHandler(file_out)
    root = logging.getLogger()
    root.addHandler(console)
    root.addHandler(other)  # after the console, as a file handler of a cron job would be
    try:
        medae_errors_in_one_line()
        medae_errors_in_one_line()  # once is enough: not wrapped twice
        assert isinstance(console.formatter, MedaeErrorsInOneLine)
        assert not isinstance(console.formatter.inner, MedaeErrorsInOneLine)
        log = logging.getLogger("medae_test.console")
        for error in (MedaeError("stage x: error: bad file"), ValueError("a bug")):
            try:
                raise error
            except Exception:
                log.error("task failed: %r", error, exc_info=True)
    finally:
        root.removeHandler(console)
        root.removeHandler(other)
    out = console_out.getvalue()
    assert "task failed: MedaeError('stage x: error: bad file')" in out
    assert out.count("Traceback") == 1 and "ValueError: a bug" in out
    assert file_out.getvalue().count("Traceback") == 2
