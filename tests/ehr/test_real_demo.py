"""Concrete numbers on the real MIMIC-IV demo (../shared/realdata/mimic-iv-demo-2.2)."""

from __future__ import annotations

import json
from datetime import datetime

import polars as pl

from medae.ehr.dq import REMOVALS
from medae.ehr.events import MEDS_SCHEMA
from medae.ehr.stays import load_stays

RAW_LABEVENTS = 107_727  # rows in hosp/labevents.csv.gz (README of the real data)


def _store(params) -> pl.DataFrame:
    return pl.read_parquet(params.path(params.clean_ehr.out) / "data" / "*.parquet")


def _report(params) -> dict:
    return json.loads(params.path(params.clean_ehr.report).read_text())


def test_store_has_all_subjects_and_stays(demo_run):
    params, _ = demo_run
    store = _store(params)
    assert store["subject_id"].n_unique() == 100
    assert store.filter(pl.col("code") == "ICU_ADMISSION")["stay_id"].n_unique() == 140
    assert store["stay_id"].drop_nulls().n_unique() == 140


def test_store_schema_and_order_follow_meds(demo_run):
    params, _ = demo_run
    meds = params.path(params.clean_ehr.out)
    for shard in sorted((meds / "data").glob("shard_*.parquet")):
        df = pl.read_parquet(shard)
        assert df.schema == MEDS_SCHEMA, shard.name
        keys = df.select("subject_id", pl.col("time").fill_null(pl.datetime(1, 1, 1)))
        assert keys.equals(keys.sort("subject_id", "time")), f"{shard.name} not sorted"
    meta = json.loads((meds / "metadata" / "dataset.json").read_text())
    assert meta["meds_version"] == "0.4.0" and meta["etl_name"] == "medae"


def test_lab_counts_equal_raw_minus_reported_removals(demo_run):
    params, _ = demo_run
    labs = _report(params)["tables"]["labevents"]
    assert labs["rows_seen"] == RAW_LABEVENTS
    removed = sum(labs[reason] for reason in REMOVALS)
    assert removed > 0  # the demo has exact duplicate lab rows
    store = _store(params)
    lab_codes = pl.col("code").str.starts_with("LAB//")
    assert store.filter(lab_codes).height == RAW_LABEVENTS - removed == labs["rows_written"]


def test_every_real_lab_unit_is_understood(demo_run):
    params, _ = demo_run
    report = _report(params)
    assert report["tables"]["labevents"]["removed_unknown_unit"] == 0
    assert len(report["variables"]) >= 40  # most dictionary labs occur in the demo


def test_every_code_has_a_description(demo_run):
    params, _ = demo_run
    codes = pl.read_parquet(params.path(params.clean_ehr.out) / "metadata" / "codes.parquet")
    present = set(_store(params)["code"].unique())
    assert present == set(codes["code"])
    assert codes.filter(pl.col("description").str.len_chars() == 0).height == 0
    labels = dict(codes.select("code", "description").iter_rows())
    assert labels["LAB//CREATININE"] == "Creatinine (blood)"
    assert labels["LAB//52033//UNK"] == "Specimen Type (Blood)"  # from d_labitems
    assert labels["OUTPUT//226588//ml"].startswith("Chest Tube #1")  # from d_items


def test_splits_exact_and_disjoint(demo_run):
    params, _ = demo_run
    cfg = params.clean_ehr
    splits = pl.read_parquet(params.path(cfg.out) / "metadata" / "subject_splits.parquet")
    assert splits["subject_id"].is_unique().all() and splits.height == 100
    sizes = dict(splits.group_by("split").len().iter_rows())
    expected = {"train": cfg.train_fraction, "tuning": cfg.tuning_fraction,
                "held_out": 1 - cfg.train_fraction - cfg.tuning_fraction}
    for split, fraction in expected.items():
        assert abs(sizes[split] - fraction * 100) <= 1, split


def test_text_and_comparison_values(demo_run):
    params, _ = demo_run
    store = _store(params)
    # 51492 urine protein ">300" is parsed (the dictionary allows comparisons for it)
    protein = store.filter(pl.col("code") == "LAB//URINE_PROTEIN")
    assert 300.0 in protein["numeric_value"].to_list()
    # free-text results of unmapped items are kept as text, not dropped
    specimen = store.filter(pl.col("code") == "LAB//52033//UNK")
    assert specimen["text_value"].null_count() == 0 and specimen.height > 1000
    assert specimen["numeric_value"].null_count() == specimen.height


def test_load_stays(demo_run, tmp_path):
    params, _ = demo_run
    stays = load_stays(params)
    assert stays.height == 140
    assert stays.schema == pl.Schema({"subject_id": pl.Int64, "hadm_id": pl.Int64,
                                      "stay_id": pl.Int64, "intime": pl.Datetime("us"),
                                      "outtime": pl.Datetime("us")})
    assert (stays["outtime"] > stays["intime"]).all()
    fresh = params.model_copy(update={"ingest_ehr": params.ingest_ehr.model_copy(
        update={"out": str(tmp_path / "nothing")})})
    assert load_stays(fresh) is None


def test_windows_on_demo(demo_run):
    params, summaries = demo_run
    stats = json.loads(params.path(params.featurize_ehr.stats).read_text())
    windows = pl.read_parquet(params.path(params.featurize_ehr.out) / "*.parquet")
    assert windows["stay_id"].n_unique() == 140
    width = stats["n_bins"] * len(stats["variables"])
    assert (windows["values"].list.len() == width).all()
    assert windows["label_mortality"].is_in([0, 1]).all()
    assert summaries["featurize_ehr"]["windows_written"] == windows.height


def _admissions(mimic_demo) -> pl.DataFrame:
    return pl.read_csv(mimic_demo / "hosp" / "admissions.csv.gz", infer_schema=False).select(
        pl.col("hadm_id").cast(pl.Int64), pl.col("admittime").str.to_datetime(time_unit="us"),
        pl.col("dischtime").str.to_datetime(time_unit="us"))


def _source_events(store: pl.DataFrame) -> pl.DataFrame:
    structural = pl.col("code").str.starts_with("GENDER//") | pl.col("code").is_in(
        ["MEDS_BIRTH", "MEDS_DEATH", "HOSPITAL_ADMISSION", "HOSPITAL_DISCHARGE",
         "ICU_ADMISSION", "ICU_DISCHARGE"])
    return store.filter(~structural)


def test_before_admission_and_future_counts(demo_run, mimic_demo):
    """Counted from the source independently: kept in the store, so no removal changes."""
    params, _ = demo_run
    report = _report(params)
    admissions = _admissions(mimic_demo)
    latest = admissions["dischtime"].max()
    assert report["time_reference"] == {"max_event_time": latest.isoformat(),
                                        "source": "latest admissions.dischtime"}
    events = _source_events(_store(params)).join(admissions, on="hadm_id", how="left")
    early = events.filter(pl.col("time") < pl.col("admittime")).height
    late = events.filter(pl.col("time") > latest).height
    tables = report["tables"].values()
    assert sum(t["before_admission"] for t in tables) == early > 1000  # ED labs, mostly
    assert sum(t["time_in_future"] for t in tables) == late == 2
    assert report["tables"]["labevents"]["time_in_future"] == 2
    md = params.path(params.clean_ehr.report).with_suffix(".md").read_text()
    assert "before_admission" in md and "later than the latest admissions.dischtime" in md
    assert latest.isoformat() not in md  # a patient's discharge time stays out of the markdown


def test_max_event_time_param_moves_the_reference(demo_run, tmp_path):
    """A configured bound replaces the latest discharge; only the report changes."""
    from medae.stages import run_stage

    params, _ = demo_run
    bound = "2150-01-01T00:00:00"
    fresh = params.model_copy(update={"clean_ehr": params.clean_ehr.model_copy(update={
        "out": str(tmp_path / "meds"), "report": str(tmp_path / "dq_ehr.json"),
        "max_event_time": datetime.fromisoformat(bound)})})
    run_stage("clean_ehr", fresh)
    report = json.loads((tmp_path / "dq_ehr.json").read_text())
    assert report["time_reference"] == {"max_event_time": bound,
                                        "source": "clean_ehr.max_event_time"}
    store = _source_events(_store(params))
    late = store.filter(pl.col("time") > datetime.fromisoformat(bound)).height
    assert sum(t["time_in_future"] for t in report["tables"].values()) == late > 2
    assert _store(fresh).equals(_store(params))
