"""Concrete numbers on the real MIMIC-IV demo (../shared/realdata/mimic-iv-demo-2.2)."""

from __future__ import annotations

import json

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
