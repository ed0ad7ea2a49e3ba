"""Source layouts: MIMIC-III flat upper-case files, parquet sources, header and table errors."""

from __future__ import annotations

import gzip
import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from medae.ehr.tables import detect_layout
from medae.errors import DataError
from medae.stages import run_stage

from .conftest import ehr_params, run_all, write_csv

T0 = datetime(2150, 3, 1, 8, 0)


def mimic3_source(root: Path, *, drop_intime: bool = False) -> Path:
    """A tiny MIMIC-III-shaped source: upper-case names and headers, ROW_ID, ICUSTAY_ID,
    CareVue (211 HR, 678 temp °F, 646 SpO2) and MetaVision (220045 HR) itemids."""
    def ts(hours: float) -> str:
        return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S")

    write_csv(pl.DataFrame({"ROW_ID": [1, 2], "SUBJECT_ID": [3, 4], "GENDER": ["M", "F"],
                            "DOB": ["2090-01-01 00:00:00", "2100-06-01 00:00:00"],
                            "DOD": [None, None], "EXPIRE_FLAG": [0, 0]},
                           schema_overrides={"DOD": pl.String}), root / "PATIENTS.csv.gz")
    write_csv(pl.DataFrame({"ROW_ID": [1, 2], "SUBJECT_ID": [3, 4], "HADM_ID": [30, 40],
                            "ADMITTIME": [ts(-2), ts(-1)], "DISCHTIME": [ts(100), ts(80)],
                            "DEATHTIME": [None, ts(80)], "HOSPITAL_EXPIRE_FLAG": [0, 1]},
                           schema_overrides={"DEATHTIME": pl.String}),
              root / "ADMISSIONS.csv.gz")
    stays = {"ROW_ID": [1, 2], "SUBJECT_ID": [3, 4], "HADM_ID": [30, 40],
             "ICUSTAY_ID": [300, 400], "DBSOURCE": ["carevue", "metavision"],
             "INTIME": [ts(0), ts(0)], "OUTTIME": [ts(48), ts(30)]}
    if drop_intime:
        del stays["INTIME"]
    write_csv(pl.DataFrame(stays), root / "ICUSTAYS.csv.gz")
    write_csv(pl.DataFrame({  # the last row is charted in error (ERROR=1): removed
        "ROW_ID": [1, 2, 3, 4, 5, 6], "SUBJECT_ID": [3, 3, 3, 4, 4, 4],
        "HADM_ID": [30, 30, 30, 40, 40, 40], "ICUSTAY_ID": [300, 300, 300, 400, 400, 400],
        "ITEMID": [211, 678, 646, 220045, 220045, 220045],
        "CHARTTIME": [ts(1), ts(1), ts(2), ts(1), ts(1), ts(3)],
        "VALUE": ["88", "100.4", "97", "70", "70", "30"],
        "VALUENUM": [88.0, 100.4, 97.0, 70.0, 70.0, 30.0],
        "VALUEUOM": ["BPM", "Deg. F", "%", "bpm", "bpm", "bpm"], "ERROR": [0, 0, 0, 0, 0, 1],
    }), root / "CHARTEVENTS.csv.gz")
    write_csv(pl.DataFrame({"ROW_ID": [1], "SUBJECT_ID": [3], "HADM_ID": [30], "ITEMID": [50912],
                            "CHARTTIME": [ts(3)], "VALUE": ["1.4"], "VALUENUM": [1.4],
                            "VALUEUOM": ["mg/dL"], "FLAG": ["abnormal"]}),
              root / "LABEVENTS.csv")
    return root


def test_mimic3_layout_detected_and_cleaned(tmp_path):
    source = mimic3_source(tmp_path / "mimic3")
    assert detect_layout(source) == "mimic3"
    params = ehr_params(tmp_path / "work", source, "ingest_ehr.shards=2")
    summaries = run_all(params)
    assert summaries["ingest_ehr"]["layout"] == "mimic3"
    store = pl.read_parquet(params.path(params.clean_ehr.out) / "data" / "*.parquet")
    hr = store.filter(pl.col("code") == "VITAL//HEART_RATE").sort("subject_id")
    # CareVue 211 and MetaVision 220045 are one variable; the MetaVision duplicate is dropped
    assert hr.select("subject_id", "numeric_value", "stay_id").rows() == [
        (3, 88.0, 300), (4, 70.0, 400)]
    report = json.loads(params.path(params.clean_ehr.report).read_text())
    assert report["variables"]["VITAL//HEART_RATE"]["removed_error"] == 1
    assert report["variables"]["VITAL//HEART_RATE"]["duplicates"] == 1
    temp = store.filter(pl.col("code") == "VITAL//TEMPERATURE")["numeric_value"].item()
    assert temp == pytest.approx(38.0, abs=1e-3)
    creat = store.filter(pl.col("code") == "LAB//CREATININE")
    assert creat["stay_id"].to_list() == [300]  # lab row attached to the stay it falls in
    births = store.filter(pl.col("code") == "MEDS_BIRTH").sort("subject_id")["time"].to_list()
    assert births == [datetime(2090, 1, 1), datetime(2100, 6, 1)]
    windows = pl.read_parquet(params.path(params.featurize_ehr.out) / "*.parquet")
    assert windows.group_by("stay_id").len().sort("stay_id").rows() == [(300, 5), (400, 2)]
    assert windows.filter(pl.col("stay_id") == 400)["label_mortality"].unique().to_list() == [1]


def test_missing_required_column_names_file_and_column(tmp_path):
    source = mimic3_source(tmp_path / "mimic3", drop_intime=True)
    params = ehr_params(tmp_path / "work", source)
    with pytest.raises(DataError, match=r"ICUSTAYS\.csv\.gz: missing required column 'intime'"):
        run_stage("ingest_ehr", params)


def test_missing_optional_table_warns(tmp_path, caplog):
    source = mimic3_source(tmp_path / "mimic3")
    (source / "LABEVENTS.csv").unlink()
    params = ehr_params(tmp_path / "work", source, "ingest_ehr.shards=1")
    with caplog.at_level(logging.WARNING, logger="medae"):
        summary = run_stage("ingest_ehr", params)
    assert "labevents" not in summary["tables"]
    assert "optional table 'labevents' not found" in caplog.text


def test_parquet_source_with_extra_and_mixed_case_columns(tmp_path):
    source = mimic3_source(tmp_path / "mimic3")
    stays = pl.read_csv(source / "ICUSTAYS.csv.gz").rename({"INTIME": "InTime"})
    stays.with_columns(EXTRA=pl.lit("x")).write_parquet(source / "ICUSTAYS.parquet")
    (source / "ICUSTAYS.csv.gz").unlink()
    params = ehr_params(tmp_path / "work", source, "ingest_ehr.shards=1")
    run_stage("ingest_ehr", params)
    got = pl.read_parquet(params.path(params.ingest_ehr.out) / "icustays" / "*.parquet")
    assert got.columns == ["subject_id", "hadm_id", "stay_id", "intime", "outtime"]
    assert got["intime"].dtype == pl.Datetime("us") and got["intime"].null_count() == 0


def test_unknown_layout_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot tell the layout"):
        detect_layout(tmp_path / "empty")


def test_rows_without_subject_are_counted_not_lost(tmp_path):
    source = mimic3_source(tmp_path / "mimic3")
    labs = pl.read_csv(source / "LABEVENTS.csv", infer_schema=False)
    broken = pl.concat([labs, labs.with_columns(SUBJECT_ID=pl.lit(None, pl.String))])
    write_csv(broken, source / "LABEVENTS.csv")
    params = ehr_params(tmp_path / "work", source, "ingest_ehr.shards=2")
    run_stage("ingest_ehr", params)
    run_stage("clean_ehr", params)
    labs_dq = json.loads(params.path(params.clean_ehr.report).read_text())["tables"]["labevents"]
    assert (labs_dq["rows_seen"], labs_dq["removed_no_subject"], labs_dq["rows_written"]) == (
        2, 1, 1)


def test_cells_that_are_not_their_type_are_counted_per_column(tmp_path, caplog):
    """A European decimal comma, a typo in an id, a day-first date and a broken itemid in the
    dictionary: each read as empty, counted per file and column, the values never shown."""
    source = mimic3_source(tmp_path / "mimic3")
    events = pl.read_csv(source / "CHARTEVENTS.csv.gz", infer_schema=False).with_columns(
        VALUENUM=pl.Series(["88", "100,4", "97", "70", "7O", "30"]),
        HADM_ID=pl.Series(["30", "30", "3O", "40", " ", "40"]),  # blank is empty, not bad
        CHARTTIME=pl.when(pl.int_range(6) == 5).then(pl.lit("03/01/2150 11:00"))
        .otherwise(pl.col("CHARTTIME")))
    write_csv(events, source / "CHARTEVENTS.csv.gz")
    write_csv(pl.DataFrame({"ROW_ID": [1, 2], "ITEMID": ["211", "67B"],
                            "LABEL": ["Heart Rate", "Temperature F"]}), source / "D_ITEMS.csv")
    params = ehr_params(tmp_path / "work", source, "ingest_ehr.shards=2")
    with caplog.at_level("WARNING", logger="medae.ehr.ingest"):
        run_stage("ingest_ehr", params)
    by_column = {"hadm_id": 1, "charttime": 1, "valuenum": 2}
    assert sorted(m for m in caplog.messages if "read as empty" in m) == sorted([
        *(f"{source / 'CHARTEVENTS.csv.gz'}: {n} cell(s) of column '{c}' are not "
          f"{'a date-time' if c == 'charttime' else 'an integer' if c == 'hadm_id' else 'a number'}"
          "; read as empty" for c, n in by_column.items()),
        f"{source / 'D_ITEMS.csv'}: 1 cell(s) of column 'itemid' are not an integer; "
        "read as empty"])
    assert not any(v in m for m in caplog.messages for v in ("100,4", "7O", "3O", "67B", "03/01"))
    run_stage("clean_ehr", params)
    report = json.loads(params.path(params.clean_ehr.report).read_text())
    assert report["unparseable_cells"] == {"chartevents": by_column, "d_items": {"itemid": 1}}
    markdown = params.path(params.clean_ehr.report).with_suffix(".md").read_text()
    assert "- chartevents.valuenum: 2\n" in markdown
    raw = pl.read_parquet(tmp_path / "work/raw/chartevents/*.parquet")
    assert (raw.height, raw["valuenum"].null_count(), raw["hadm_id"].null_count()) == (6, 2, 2)
    assert "_unparsed" not in raw.columns
    # a second ingest reads nothing and keeps the counts; a clean source has none
    run_stage("ingest_ehr", params)
    assert json.loads((tmp_path / "work/raw/_fingerprints.json").read_text())["unparsed"][
        "chartevents"] == by_column
    write_csv(events.with_columns(VALUENUM=pl.lit("1.5"), HADM_ID=pl.lit("30"),
                                  CHARTTIME=pl.lit("2150-03-01 09:00:00")),
              source / "CHARTEVENTS.csv.gz")
    run_stage("ingest_ehr", params)
    run_stage("clean_ehr", params)
    report = json.loads(params.path(params.clean_ehr.report).read_text())
    assert report["unparseable_cells"] == {"d_items": {"itemid": 1}}


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda blob: blob[: len(blob) // 2], "unexpected end of file"),
    (gzip.decompress, "not a gzip file"),
])
def test_unreadable_gzip_is_an_error_naming_the_file(tmp_path, damage, problem):
    source = mimic3_source(tmp_path / "mimic3")
    events = source / "CHARTEVENTS.csv.gz"
    events.write_bytes(damage(events.read_bytes()))
    params = ehr_params(tmp_path / "work", source)
    with pytest.raises(DataError, match=rf"CHARTEVENTS\.csv\.gz: .*{problem}"):
        run_stage("ingest_ehr", params)


def test_iso_times_and_integral_floats_are_read_but_a_fractional_id_is_not(tmp_path):
    """Other exports write ``2150-03-01T09:00:00`` and ``3.0``; ``3.5`` is no subject (cut to
    3 it would name someone else): read as empty, counted, the row dropped at ingest."""
    source = mimic3_source(tmp_path / "mimic3")
    params = ehr_params(tmp_path / "plain", source)
    run_stage("ingest_ehr", params)
    plain = pl.read_parquet(tmp_path / "plain/raw/chartevents/*.parquet").sort("charttime",
                                                                                "itemid")
    events = pl.read_csv(source / "CHARTEVENTS.csv.gz", infer_schema=False)
    write_csv(events.with_columns(pl.col("CHARTTIME").str.replace(" ", "T"),
                                  SUBJECT_ID=pl.col("SUBJECT_ID") + ".0"),
              source / "CHARTEVENTS.csv.gz")
    labs = pl.read_csv(source / "LABEVENTS.csv", infer_schema=False)
    write_csv(pl.concat([labs, labs.with_columns(SUBJECT_ID=pl.lit("3.5"))]),
              source / "LABEVENTS.csv")
    params = ehr_params(tmp_path / "iso", source)
    run_stage("ingest_ehr", params)
    iso = pl.read_parquet(tmp_path / "iso/raw/chartevents/*.parquet").sort("charttime", "itemid")
    assert iso.equals(plain)
    state = json.loads((tmp_path / "iso/raw/_fingerprints.json").read_text())
    assert state["unparsed"] == {"labevents": {"subject_id": 1}}
    assert state["removed_no_subject"]["labevents"] == 1
    assert pl.read_parquet(tmp_path / "iso/raw/labevents/*.parquet")["subject_id"].to_list() == [3]


def test_a_failed_ingest_publishes_no_table(tmp_path):
    """New admissions beside a truncated chartevents: nothing is published, not even the
    admissions that were read fine, so clean_ehr never sees new admissions beside old charts."""
    source = mimic3_source(tmp_path / "mimic3")
    params = ehr_params(tmp_path / "work", source, "ingest_ehr.shards=2")
    run_stage("ingest_ehr", params)
    raw = tmp_path / "work/raw"
    before = {p: p.read_bytes() for p in sorted(raw.rglob("*")) if p.is_file()}
    admissions = pl.read_csv(source / "ADMISSIONS.csv.gz", infer_schema=False)
    write_csv(admissions.head(1), source / "ADMISSIONS.csv.gz")
    events = source / "CHARTEVENTS.csv.gz"
    events.write_bytes(events.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"CHARTEVENTS\.csv\.gz: .*unexpected end of file"):
        run_stage("ingest_ehr", params)
    after = {p: p.read_bytes() for p in sorted(raw.rglob("*")) if p.is_file()}
    assert after == before
    run_stage("clean_ehr", params)  # the previous, consistent tables


def test_a_table_in_two_files_is_read_from_one_and_the_other_named(tmp_path, caplog):
    from medae.ehr.tables import TABLES, find_table

    source = mimic3_source(tmp_path / "mimic3")  # LABEVENTS.csv
    (source / "LABEVENTS.csv.gz").write_bytes(gzip.compress((source / "LABEVENTS.csv")
                                                            .read_bytes(), mtime=0))
    with caplog.at_level("WARNING", logger="medae.ehr.tables"):
        found = find_table(source, TABLES["labevents"], "mimic3")
    assert found == source / "LABEVENTS.csv.gz"  # SUFFIXES order: .parquet, .csv.gz, .csv
    assert caplog.messages == [
        f"{source}: table 'labevents' read from LABEVENTS.csv.gz; not read: LABEVENTS.csv"]
    assert find_table(source, TABLES["icustays"], "mimic3") == source / "ICUSTAYS.csv.gz"
    assert len(caplog.messages) == 1
