"""catalog_waveforms on every real record: rates, channels, segments, subjects, bad headers."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from medae.waveforms.catalog import build_catalog
from medae.waveforms.headers import read_header

PATTERN = r"^[ps](\d{5,})(?:[-_].*)?$"
MITDB = ["100", "101", "103", "105", "106", "108", "109", "111", "118", "119"]

# path -> (channels, native rate per channel) straight from the headers (frame rate x samples
# per frame: 03700181's MCL1 is stored 4 samples per frame, i.e. 500 Hz).
EXPECTED = {
    "mimic3wdb/03700181": (["MCL1", "ABP", "RESP"], [500.0, 125.0, 125.0]),
    "mimic3wdb/3000003_0003": (["II", "V"], [125.0, 125.0]),
    "mimic3wdb/mixedsignals": (["II", "III", "V", "ABP", "Pleth", "Resp"],
                               [249.89, 249.89, 249.89, 124.945, 124.945, 62.4725]),
    "mimic3wdb/p000878/p000878-2137-10-26-16-57": (["PLETH", "II", "V", "ABP"], [125.0] * 4),
    "mimic3wdb/s00001/s00001-2896-10-10-00-31": (["II", "V", "MCL1", "ABP"], [125.0] * 4),
    "mitdb/100": (["MLII", "V5"], [360.0, 360.0]),
}


@pytest.fixture(scope="module")
def catalog(physionet):
    cat, quarantine = build_catalog(physionet, PATTERN)
    assert quarantine.height == 0
    return {row["path"]: row for row in cat.iter_rows(named=True)}


def test_every_real_record_listed_once_segments_excluded(catalog):
    expected = {f"mitdb/{n}" for n in MITDB} | {
        "mimic3wdb/03700181", "mimic3wdb/3000003_0003", "mimic3wdb/mixedsignals",
        "mimic3wdb/p000878/p000878-2137-10-26-16-57",
        "mimic3wdb/s00001/s00001-2896-10-09-01-56", "mimic3wdb/s00001/s00001-2896-10-09-01-56n",
        "mimic3wdb/s00001/s00001-2896-10-10-00-31", "mimic3wdb/s00001/s00001-2896-10-10-00-31n"}
    assert set(catalog) == expected


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_rates_and_channels(catalog, path):
    channels, rates = EXPECTED[path]
    assert catalog[path]["channels"] == channels
    assert catalog[path]["fs"] == pytest.approx(rates)


def test_mitdb_rows(catalog):
    for name in MITDB:
        row = catalog[f"mitdb/{name}"]
        assert (row["frame_fs"], row["n_frames"], row["annotations"]) == (360.0, 650000, ["atr"])
        assert row["canonical"][0] == "ecg_ii" and row["subject_id"] is None
        assert row["segments"] == [{"name": name, "start_frame": 0, "n_frames": 650000,
                                    "has_data": True, "reason": None}]


def test_subjects_and_base_times(catalog):
    p878 = catalog["mimic3wdb/p000878/p000878-2137-10-26-16-57"]
    assert p878["subject_id"] == 878
    assert p878["base_datetime"] == dt.datetime(2137, 10, 26, 16, 57, 9)
    assert catalog["mimic3wdb/s00001/s00001-2896-10-10-00-31"]["subject_id"] == 1
    assert catalog["mimic3wdb/03700181"]["base_datetime"] == dt.datetime(1994, 8, 15, 17, 27, 45)
    only_time = catalog["mimic3wdb/3000003_0003"]
    assert only_time["base_datetime"] is None and only_time["base_time"] == "19:46:25.757000"
    assert catalog["mimic3wdb/s00001/s00001-2896-10-10-00-31n"]["fs"][0] == pytest.approx(1 / 60)


def test_missing_segments_are_listed_not_fatal(catalog):
    p878 = catalog["mimic3wdb/p000878/p000878-2137-10-26-16-57"]
    present = [s["name"] for s in p878["segments"] if s["has_data"]]
    assert present == ["3269321_0001", "3269321_0002"]
    assert (p878["n_segments"], p878["n_segments_missing"]) == (32, 30)
    assert {s["reason"] for s in p878["segments"] if not s["has_data"]} == {"header missing"}
    s1 = catalog["mimic3wdb/s00001/s00001-2896-10-10-00-31"]
    missing = {s["name"]: s["reason"] for s in s1["segments"] if not s["has_data"]}
    assert missing == {f"3975656_00{n}": "data file missing" for n in ("09", "10", "11")}
    assert s1["n_segments"] == 16


def _copy_record(src: Path, dest: Path, record_line: str | None = None) -> None:
    """Copy a real record's header (optionally with another record line) and link its data."""
    dest.mkdir(parents=True, exist_ok=True)
    lines = src.with_suffix(".hea").read_text().splitlines()
    if record_line is not None:
        lines[0] = record_line
    (dest / (src.name + ".hea")).write_text("\n".join(lines) + "\n")
    for data in src.parent.glob(src.name + "*.dat"):
        (dest / data.name).symlink_to(data)


def test_date_before_time_is_repaired_and_garbage_is_quarantined(physionet, tmp_path):
    _copy_record(physionet / "mimic3wdb" / "03700181", tmp_path / "p012345",
                 "03700181 3 125 75000 15/08/1994 17:27:45")
    _copy_record(physionet / "mitdb" / "100", tmp_path / "bad", "100 two 360 650000")
    cat, quarantine = build_catalog(tmp_path, PATTERN)
    row = cat.row(0, named=True)
    assert cat.height == 1 and row["header_repair"] == "date before time swapped"
    assert row["base_datetime"] == dt.datetime(1994, 8, 15, 17, 27, 45)
    assert row["subject_id"] == 12345 and row["fs"] == [500.0, 125.0, 125.0]
    assert quarantine.to_dicts()[0]["path"] == "bad/100"
    assert "malformed header" in quarantine.to_dicts()[0]["reason"]
    header, repair = read_header(tmp_path / "p012345" / "03700181")
    assert header.sig_name == ["MCL1", "ABP", "RESP"] and repair == "date before time swapped"


def test_records_file_is_honoured(physionet, tmp_path):
    for name in ("100", "101"):
        _copy_record(physionet / "mitdb" / name, tmp_path)
    (tmp_path / "RECORDS").write_text("100\n999\n")
    cat, quarantine = build_catalog(tmp_path, PATTERN)
    assert cat["path"].to_list() == ["100"]
    assert quarantine.to_dicts() == [{"path": "999",
                                      "reason": "listed in RECORDS but header missing"}]


def test_cli_runs_catalog_stage(physionet, tmp_path):
    out = tmp_path / "cat.parquet"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "medae.cli", "run", "catalog_waveforms",
         "--set", f"waveforms.source={physionet / 'mitdb'}",
         "--set", f"catalog_waveforms.out={out}",
         "--set", f"catalog_waveforms.quarantine={tmp_path / 'q.parquet'}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["records"], summary["quarantined"]) == (10, 0)
    assert pl.read_parquet(out)["record_name"].to_list() == MITDB


def test_cli_reports_missing_source(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "medae.cli", "run", "catalog_waveforms",
         "--set", f"waveforms.source={tmp_path / 'nowhere'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert "waveform source folder not found" in proc.stderr
