"""The generated MIMIC-IV tables: layout equal to the real demo, realism, artifacts, determinism."""

from __future__ import annotations

import functools
import gzip
import json
import re
from pathlib import Path

import polars as pl
import pytest

from medae.synth.events import ARTIFACT_RATES, CHARTEVENTS_COLUMNS
from medae.synth.generate import generate
from medae.synth.items import LABS, VITALS

TABLES = ["hosp/patients", "hosp/admissions", "hosp/labevents", "hosp/d_labitems",
          "icu/icustays", "icu/d_items"]
TIMESTAMP = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"


@pytest.fixture(scope="session")
def synth200(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth200")
    generate(out, subjects=200, seed=7, waveforms=False)
    return out


@functools.cache
def read(folder: Path, table: str) -> pl.DataFrame:
    """A table as strings (cached: polars frames are immutable, tests only derive new ones)."""
    return pl.read_csv(folder / f"{table}.csv.gz", infer_schema_length=0)


def header(path: Path) -> str:
    with gzip.open(path, "rt") as f:
        return f.readline().rstrip("\n")


@pytest.mark.parametrize("table", TABLES)
def test_header_equals_real_demo(synth200, mimic_demo, table):
    assert header(synth200 / f"{table}.csv.gz") == header(mimic_demo / f"{table}.csv.gz")


def test_chartevents_header_is_mimic_iv(synth200):
    assert header(synth200 / "icu/chartevents.csv.gz").split(",") == CHARTEVENTS_COLUMNS
    assert CHARTEVENTS_COLUMNS == ["subject_id", "hadm_id", "stay_id", "caregiver_id",
                                   "charttime", "storetime", "itemid", "value", "valuenum",
                                   "valueuom", "warning"]


@pytest.mark.parametrize("table", ["icu/d_items", "hosp/d_labitems"])
def test_dictionary_rows_are_real_rows(synth200, mimic_demo, table):
    ours, real = read(synth200, table), read(mimic_demo, table)
    missing = ours.join(real, on=ours.columns, how="anti", nulls_equal=True)
    assert missing.is_empty(), missing


def test_itemids_are_real_and_enough(synth200):
    chart = read(synth200, "icu/chartevents")
    d_items = set(read(synth200, "icu/d_items")["itemid"])
    charted = set(chart["itemid"])
    assert charted <= d_items
    assert len(charted) >= 15 and {str(v.itemid) for v in VITALS.values()} <= charted
    assert {"223761", "223762", "220739", "223900", "223901", "223835", "226512"} <= charted
    labs = read(synth200, "hosp/labevents")
    assert set(labs["itemid"]) <= set(read(synth200, "hosp/d_labitems")["itemid"])
    assert labs["itemid"].n_unique() == len(LABS) >= 20


def test_lab_units_match_real_labevents(synth200, mimic_demo):
    def units(folder):
        return dict(read(folder, "hosp/labevents").group_by("itemid")
                    .agg(pl.col("valueuom").mode().first()).iter_rows())
    ours, real = units(synth200), units(mimic_demo)
    assert {k: real[k] for k in ours} == ours


def test_lab_medians_close_to_real_demo(synth200, mimic_demo):
    def medians(folder):
        return dict(read(folder, "hosp/labevents")
                    .with_columns(pl.col("valuenum").cast(pl.Float64, strict=False))
                    .filter(pl.col("valuenum").is_between(0, 90_000))
                    .group_by("itemid").agg(pl.col("valuenum").median()).iter_rows())
    ours, real = medians(synth200), medians(mimic_demo)
    ratios = {item: ours[item] / real[item] for item in ours}
    assert all(0.5 <= r <= 2.0 for r in ratios.values()), ratios
    assert abs(ours["50820"] - real["50820"]) < 0.05  # pH


def test_value_formats(synth200):
    adm = read(synth200, "hosp/admissions")
    stays = read(synth200, "icu/icustays")
    chart = read(synth200, "icu/chartevents").head(5000)
    for frame, col in ((adm, "admittime"), (stays, "intime"), (chart, "charttime")):
        assert frame[col].str.contains(TIMESTAMP).all(), col
    years = adm["admittime"].str.slice(0, 4).cast(pl.Int64)
    assert years.min() >= 2110 and years.max() <= 2200
    los = stays["los"].cast(pl.Float64)
    assert (los > 0).all() and los.median() == pytest.approx(2.3, abs=1.0)
    patients = read(synth200, "hosp/patients")
    assert patients["dod"].drop_nulls().str.contains(r"^\d{4}-\d{2}-\d{2}$").all()
    assert patients["anchor_age"].cast(pl.Int64).is_between(18, 91).all()
    hr = chart.filter(pl.col("itemid") == "220045", pl.col("valuenum").is_not_null())
    assert (hr["value"] == hr["valuenum"]).all() and hr["value"].str.contains(r"^-?\d+$").all()


def test_death_is_consistent(synth200):
    adm = read(synth200, "hosp/admissions")
    died = adm.filter(pl.col("hospital_expire_flag") == "1")
    assert (died["deathtime"] == died["dischtime"]).all()
    assert (died["discharge_location"] == "DIED").all()
    assert adm.filter(pl.col("hospital_expire_flag") == "0")["deathtime"].null_count() == \
        adm.height - died.height
    dod = read(synth200, "hosp/patients").select("subject_id", "dod")
    joined = died.join(dod, on="subject_id")
    assert (joined["dod"] == joined["deathtime"].str.slice(0, 10)).all()
    # nobody is admitted after their in-hospital death
    last = adm.group_by("subject_id").agg(pl.col("admittime").max())
    assert died.join(last, on="subject_id").filter(
        pl.col("admittime") < pl.col("admittime_right")).is_empty()


def numeric_chart(folder: Path) -> pl.DataFrame:
    return read(folder, "icu/chartevents").with_columns(
        pl.col("valuenum").cast(pl.Float64), pl.col("stay_id", "hadm_id").cast(pl.Int64))


def test_severity_drives_mortality_and_vitals(synth200):
    adm = read(synth200, "hosp/admissions").with_columns(pl.col("hadm_id").cast(pl.Int64))
    stays = read(synth200, "icu/icustays").with_columns(pl.col("hadm_id").cast(pl.Int64))
    icu_adm = adm.join(stays, on="hadm_id")
    mortality = icu_adm["hospital_expire_flag"].cast(pl.Int64).mean()
    assert 0.07 <= mortality <= 0.22
    chart = numeric_chart(synth200).filter(pl.col("valuenum").is_between(0, 1000))
    per_stay = chart.group_by("hadm_id").agg(
        hr=pl.col("valuenum").filter(pl.col("itemid") == "220045").mean(),
        sbp=pl.col("valuenum").filter(pl.col("itemid") == "220179").mean(),
        gcs_motor=pl.col("valuenum").filter(pl.col("itemid") == "223901").mean(),
    ).join(adm, on="hadm_id").group_by("hospital_expire_flag").agg(
        pl.col("hr", "sbp", "gcs_motor").mean())
    by = {r["hospital_expire_flag"]: r for r in per_stay.iter_rows(named=True)}
    assert by["1"]["hr"] > by["0"]["hr"] + 8
    assert by["1"]["sbp"] < by["0"]["sbp"] - 5
    assert by["1"]["gcs_motor"] < by["0"]["gcs_motor"]
    labs = read(synth200, "hosp/labevents").filter(pl.col("itemid") == "50813").with_columns(
        pl.col("valuenum").cast(pl.Float64), pl.col("hadm_id").cast(pl.Int64)).join(
        adm, on="hadm_id").group_by("hospital_expire_flag").agg(pl.col("valuenum").median())
    lactate = dict(labs.iter_rows())
    assert lactate["1"] > 1.5 * lactate["0"]


def test_row_counts_and_charting_intervals(synth200):
    chart = numeric_chart(synth200)
    stays = read(synth200, "icu/icustays")
    assert 200 <= chart.height / stays.height <= 1500
    hr = (chart.filter(pl.col("itemid") == "220045").unique(["stay_id", "charttime"])
          .with_columns(pl.col("charttime").str.to_datetime())
          .sort("stay_id", "charttime")
          .with_columns(gap=pl.col("charttime").diff().over("stay_id").dt.total_minutes()))
    gaps = hr["gap"].drop_nulls()
    assert 45 <= gaps.median() <= 75 and gaps.std() > 10  # about hourly, irregular


def test_artifact_rates(synth200):
    chart = numeric_chart(synth200)
    n = chart.height
    stays = read(synth200, "icu/icustays").with_columns(pl.col("stay_id").cast(pl.Int64))
    gcs = pl.col("itemid").is_in(["220739", "223900", "223901"])
    numeric_share = chart.filter(~gcs).height / n

    def rate(mask) -> float:
        return chart.filter(mask).height / n

    expected = {
        "chart_absurd": (rate(pl.col("valuenum") >= 99_999), numeric_share),
        "chart_negative": (rate(pl.col("valuenum") < 0), numeric_share),
        "chart_missing": (rate(pl.col("value").is_null()), 1.0),
        "chart_duplicate": (chart.is_duplicated().sum() / 2 / n, 1.0),
    }
    fio2 = chart.filter(pl.col("itemid") == "223835", pl.col("valuenum").is_not_null())
    expected["chart_fio2_fraction"] = (
        fio2.filter(pl.col("valuenum").is_between(0.2, 1.0)).height / fio2.height, 1.0)
    outside = chart.join(stays, on="stay_id").filter(
        (pl.col("charttime") < pl.col("intime").str.slice(0, 16) + ":00")
        | (pl.col("charttime") > pl.col("outtime")))
    expected["chart_outside_stay"] = (outside.height / n, 1.0)
    for name, (observed, share) in expected.items():
        assert observed == pytest.approx(ARTIFACT_RATES[name] * share, rel=0.5), name
    labs = read(synth200, "hosp/labevents")
    text_only = labs.filter(pl.col("valuenum").is_null() & pl.col("value").is_not_null())
    assert text_only.height / labs.height == pytest.approx(ARTIFACT_RATES["lab_text_only"],
                                                            rel=0.3)
    assert set(text_only["value"]) >= {"___", "<0.1", "NEG"}
    # a duplicated lab row gets its own labevent_id, as a re-sent result would
    assert labs.drop("labevent_id").is_duplicated().sum() / 2 / labs.height == pytest.approx(
        ARTIFACT_RATES["lab_duplicate"], rel=0.5)


def test_same_seed_gives_identical_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in ((a, 3), (b, 3), (c, 4)):
        generate(folder, subjects=20, seed=seed, waveforms=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 8  # 7 tables and the .medae-synth.json marker
    assert sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) == files
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    chart = "icu/chartevents.csv.gz"
    assert (a / chart).read_bytes() != (c / chart).read_bytes()
    raw = (a / "icu/chartevents.csv.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0" and raw[3] & 0x08 == 0  # mtime 0, no file name


def test_labs_have_consistent_panels(synth200):
    labs = read(synth200, "hosp/labevents").filter(pl.col("valuenum").is_not_null())
    wide = (labs.filter(pl.col("itemid").is_in(["51222", "51221"]))
            .unique(["specimen_id", "itemid"])
            .pivot(on="itemid", index="specimen_id", values="valuenum")
            .drop_nulls().with_columns(pl.col("51222", "51221").cast(pl.Float64)))
    ratio = (wide["51221"] / wide["51222"]).median()
    assert ratio == pytest.approx(3.0, abs=0.2)
    assert labs["labevent_id"].cast(pl.Int64).n_unique() == labs.height
    assert (labs["charttime"] <= labs["storetime"]).all()


def test_outpatient_labs_have_no_admission(synth200):
    labs = read(synth200, "hosp/labevents")
    adm = read(synth200, "hosp/admissions").select("subject_id", "hadm_id", "admittime",
                                                   "dischtime")
    assert labs["hadm_id"].null_count() / labs.height == pytest.approx(0.25, abs=0.07)
    inpatient = labs.filter(pl.col("hadm_id").is_not_null()).join(adm, on="hadm_id")
    assert inpatient.height == labs["hadm_id"].drop_nulls().len()
    assert inpatient.filter((pl.col("charttime") < pl.col("admittime"))
                            | (pl.col("charttime") > pl.col("dischtime"))).is_empty()
    outpatient = labs.filter(pl.col("hadm_id").is_null()).join(adm, on="subject_id")
    during = pl.col("charttime").is_between(pl.col("admittime"), pl.col("dischtime"))
    assert outpatient.filter(during).is_empty()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"subjects": 0}, "--subjects must be at least 1"),
    ({"seed": -1}, "--seed must be a non-negative integer"),
    ({"waveform_share": 1.5}, "--waveform-share must be within [0, 1]"),
])
def test_bad_arguments_are_usage_errors(tmp_path, kwargs, message):
    from medae.errors import UsageError

    arguments = {"subjects": 2, "seed": 0, "waveforms": False} | kwargs
    with pytest.raises(UsageError, match=re.escape(message)):
        generate(tmp_path, **arguments)
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_folder_holding_other_data_is_refused_and_left_alone(tmp_path):
    from medae.errors import UsageError

    real = tmp_path / "mimic"
    (real / "hosp").mkdir(parents=True)
    (real / "hosp" / "patients.csv.gz").write_bytes(b"real data")
    with pytest.raises(UsageError, match=r"mimic: not empty \(hosp\) and not written by medae "
                                         r"synth; generate demo data into an empty folder"):
        generate(real, subjects=2, seed=0, waveforms=False)
    assert [p.relative_to(real) for p in real.rglob("*")] == [
        Path("hosp"), Path("hosp/patients.csv.gz")]
    assert (real / "hosp" / "patients.csv.gz").read_bytes() == b"real data"
    # a separate waveform folder is checked too, before anything is written
    demo, waves = tmp_path / "demo", tmp_path / "waves"
    waves.mkdir()
    (waves / "RECORDS").write_text("p00/p000878/p000878-2137\n")
    with pytest.raises(UsageError, match=r"waves: not empty \(RECORDS\)"):
        generate(demo, subjects=2, seed=0, waveform_out=waves)
    assert not demo.exists()
    # what medae synth wrote, it may write again
    generate(demo, subjects=2, seed=0, waveforms=False)
    generate(demo, subjects=3, seed=1, waveforms=False)
    assert json.loads((demo / ".medae-synth.json").read_text()) == {"subjects": 3, "seed": 1}
    # a waveform folder is replaced as a whole: its marker goes in with the records
    for seed in (0, 1):
        generate(tmp_path / "ehr2", subjects=2, seed=seed, waveform_out=tmp_path / "waves2",
                 waveform_share=1.0, waveform_seconds=20.0)
    assert json.loads((tmp_path / "waves2" / ".medae-synth.json").read_text())["seed"] == 1
