"""The real MIMIC-IV demo with the damage a real export can carry, through all three EHR
stages: an unreadable itemid, admissions rows missing, icustays rows duplicated or claimed by
two subjects. Each is counted and reported; nothing crashes, nothing is mislabelled."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import polars as pl
import pytest

from medae.ehr.stays import load_stays

from .conftest import ehr_params, run_all, write_csv

TABLES = ("hosp/patients", "hosp/admissions", "hosp/labevents", "hosp/d_labitems",
          "icu/icustays", "icu/outputevents", "icu/d_items")
POTASSIUM = "50971"


def _copy_demo(mimic_demo: Path, dest: Path) -> Path:
    for table in TABLES:
        target = dest / f"{table}.csv.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mimic_demo / f"{table}.csv.gz", target)
    return dest


def _read(source: Path, table: str) -> pl.DataFrame:
    return pl.read_csv(source / f"{table}.csv.gz", infer_schema=False)


@pytest.fixture(scope="module")
def damaged(mimic_demo: Path, tmp_path_factory) -> dict:
    """One run of ingest, clean and featurize on a damaged copy, with what was damaged."""
    root = tmp_path_factory.mktemp("damaged")
    source = _copy_demo(mimic_demo, root / "source")
    labs = _read(source, "hosp/labevents")
    potassium = int((labs["itemid"] == POTASSIUM).sum())
    write_csv(labs.with_columns(itemid=pl.when(pl.col("itemid") == POTASSIUM)
                                .then(pl.lit("5O971")).otherwise(pl.col("itemid"))),
              source / "hosp/labevents.csv.gz")
    stays = _read(source, "icu/icustays")
    admissions = _read(source, "hosp/admissions")
    died = admissions.filter(pl.col("hospital_expire_flag") == "1")["hadm_id"].head(2)
    write_csv(admissions.filter(~pl.col("hadm_id").is_in(died.implode())),
              source / "hosp/admissions.csv.gz")
    unlabelled = set(stays.filter(pl.col("hadm_id").is_in(died.implode()))["stay_id"].cast(int))
    # two exact copies, and one stay claimed by a second subject (another shard, likely)
    other = stays.filter(pl.col("subject_id") != stays["subject_id"][0])["subject_id"][0]
    claimed = stays.head(1).with_columns(subject_id=pl.lit(other))
    write_csv(pl.concat([stays, stays.slice(5, 2), claimed]), source / "icu/icustays.csv.gz")
    params = ehr_params(root / "work", source, "ingest_ehr.shards=4")
    logger = logging.getLogger("medae")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        results = run_all(params)
    finally:
        logger.removeHandler(handler)
    return {"params": params, "results": results, "potassium": potassium,
            "unlabelled": unlabelled, "claimed": int(stays["stay_id"][0]),
            "duplicated": set(stays.slice(5, 2)["stay_id"].cast(int)),
            "messages": [r.getMessage() for r in records]}


def _windows(params) -> pl.DataFrame:
    return pl.read_parquet(params.path(params.featurize_ehr.out) / "part_*.parquet")


def test_an_unreadable_itemid_is_counted_and_its_rows_removed(damaged):
    params, n = damaged["params"], damaged["potassium"]
    report = json.loads(params.path(params.clean_ehr.report).read_text())
    assert report["unparseable_cells"] == {"labevents": {"itemid": n}}
    labs = report["tables"]["labevents"]
    assert labs["removed_no_item"] == n
    store = pl.read_parquet(params.path(params.clean_ehr.out) / "data" / "*.parquet")
    assert store["code"].null_count() == 0
    assert any(f"{n} cell(s) of column 'itemid' are not an integer" in m
               for m in damaged["messages"])


def test_stays_without_an_admissions_row_have_no_label(damaged):
    windows = _windows(damaged["params"])
    unknown = windows.filter(pl.col("label_mortality").is_null())
    assert set(unknown["stay_id"].unique()) == damaged["unlabelled"]
    assert windows["label_mortality"].drop_nulls().is_in([0, 1]).all()
    assert damaged["results"]["featurize_ehr"]["unknown_label_stays"] == len(
        damaged["unlabelled"])
    assert any("whose hadm_id has no admissions row" in m for m in damaged["messages"])


def test_duplicated_and_ambiguous_stays(damaged):
    params, results = damaged["params"], damaged["results"]["featurize_ehr"]
    windows = _windows(params)
    assert windows.select("stay_id", "window_start").is_duplicated().sum() == 0
    assert damaged["duplicated"] <= set(windows["stay_id"])  # the copy dropped, the stay kept
    assert damaged["claimed"] not in set(windows["stay_id"])
    assert results["stays_left_out"] == {"duplicate_rows": 2, "claimed_by_two_subjects": 1}
    assert windows.group_by("stay_id").agg(pl.col("split").n_unique())["split"].max() == 1
    linked = load_stays(params)
    assert damaged["claimed"] not in set(linked["stay_id"])
    assert linked["stay_id"].is_duplicated().sum() == 0
    assert not any(str(damaged["claimed"]) in m for m in damaged["messages"])
