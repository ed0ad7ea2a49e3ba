"""The stages through the command line, as DVC calls them."""

from __future__ import annotations

import gzip
import json
import logging

import pytest
from typer.testing import CliRunner

from medae.cli import app

from .conftest import ROOT
from .test_layouts import mimic3_source


@pytest.fixture(autouse=True)
def _restore_medae_logger():
    """The CLI attaches a handler to CliRunner's temporary stderr; drop it afterwards so later
    tests do not log into a closed stream."""
    logger = logging.getLogger("medae")
    before = list(logger.handlers)
    yield
    for handler in logger.handlers[:]:
        if handler not in before:
            logger.removeHandler(handler)


def test_medae_run_ingest_with_set_overrides(tmp_path):
    source = mimic3_source(tmp_path / "src")
    out = tmp_path / "raw"
    result = CliRunner().invoke(app, [
        "run", "ingest_ehr", "--params", str(ROOT / "params.yaml"),
        "--set", f"ehr.source={source}", "--set", f"ingest_ehr.out={out}",
        "--set", "ingest_ehr.shards=3", "--set", "executor.workers=1",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["stage"] == "ingest_ehr" and summary["layout"] == "mimic3"
    assert sorted(p.name for p in (out / "chartevents").iterdir()) == [
        "shard_0000.parquet", "shard_0001.parquet", "shard_0002.parquet"]


def test_medae_run_reports_bad_source_in_one_line(tmp_path):
    source = mimic3_source(tmp_path / "src", drop_intime=True)
    result = CliRunner().invoke(app, [
        "run", "ingest_ehr", "--params", str(ROOT / "params.yaml"),
        "--set", f"ehr.source={source}", "--set", f"ingest_ehr.out={tmp_path / 'raw'}",
    ])
    assert result.exit_code == 1
    assert "ICUSTAYS.csv.gz: missing required column 'intime'" in result.stderr


def test_a_truncated_dictionary_table_is_named(tmp_path):
    """d_items is sunk outside the subject tables' sharding: its failure names it too."""
    source = mimic3_source(tmp_path / "src")
    rows = b"ROW_ID,ITEMID,LABEL,UNITNAME\n" + b"1,211,Heart Rate,bpm\n" * 5000
    (source / "D_ITEMS.csv.gz").write_bytes(gzip.compress(rows, mtime=0)[:300])
    result = CliRunner().invoke(app, [
        "run", "ingest_ehr", "--params", str(ROOT / "params.yaml"),
        "--set", f"ehr.source={source}", "--set", f"ingest_ehr.out={tmp_path / 'raw'}",
        "--set", "executor.workers=1",
    ])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {source / 'D_ITEMS.csv.gz'}: cannot be read as table 'd_items': "
        "unexpected end of file (truncated?)")
