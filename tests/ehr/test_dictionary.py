"""The variable dictionary and the cleaning rules: golden input -> output pairs."""

from __future__ import annotations

from datetime import datetime
from importlib import resources

import polars as pl
import pytest
import yaml

from medae.ehr.dictionary import load_dictionary, normalize_unit, normalize_unit_expr
from medae.ehr.events import apply_dictionary, assign_stays, sort_and_flag_duplicates
from medae.errors import ConfigError


def test_every_mapped_variable_has_unit_range_and_itemids():
    raw = yaml.safe_load((resources.files("medae") / "resources" / "variables.yaml").read_text())
    entries = raw["variables"]
    assert len(entries) >= 40
    for entry in entries:
        name = entry["name"]
        assert entry.get("unit"), f"{name}: no canonical unit"
        assert entry.get("units"), f"{name}: no unit conversions"
        assert len(entry.get("range") or []) == 4, f"{name}: no four-bound range"
        ids = entry["itemids"]
        assert ids["mimic4"] or ids["carevue"] or ids["metavision"], f"{name}: no itemids"
    loaded = load_dictionary()
    assert len(loaded.variables) == len(entries)
    # MIMIC-III CareVue and MetaVision ids are there for the core vitals
    hr = loaded.by_code()["VITAL//HEART_RATE"]
    assert hr.itemids["carevue"] == (211,) and 220045 in hr.itemids["metavision"]


def test_dictionary_without_range_is_rejected(tmp_path):
    path = tmp_path / "vars.yaml"
    path.write_text("variables:\n  - {name: hr, code: VITAL//HR, unit: bpm, "
                    "units: {bpm: [1, 0]}, itemids: {mimic4: [1]}}\n")
    with pytest.raises(ConfigError, match="variable 'hr': missing 'range'"):
        load_dictionary(path)


def test_itemid_in_two_variables_is_rejected(tmp_path):
    entry = "{name: %s, code: V//%s, unit: u, units: {u: [1, 0]}, itemids: {mimic4: [1]}, " \
            "range: [0, 0, 1, 1]}"
    path = tmp_path / "vars.yaml"
    path.write_text(f"variables:\n  - {entry % ('a', 'A')}\n  - {entry % ('b', 'B')}\n")
    with pytest.raises(ConfigError, match="itemid 1 also belongs to 'a'"):
        load_dictionary(path)


def test_unit_normalisation():
    assert normalize_unit("Deg. F") == normalize_unit("°F") == "f"
    assert normalize_unit("mm Hg") == normalize_unit("mmHg") == "mmhg"
    # the micro sign (U+00B5) and the Greek mu (U+03BC, capital U+039C) are MIMIC's "u"
    assert (normalize_unit("\u00b5mol/L") == normalize_unit("\u03bcmol/L")
            == normalize_unit("\u039cMOL/L") == normalize_unit("umol/L") == "umol/l")


UNIT_SPELLINGS = ["mm Hg", "mmHg", "MMHG", "°F", "Deg. F", "deg F", "degC", "deg", "deg.",
                  "°", "  ", "", None, "mEq/L", "\u00b5mol/L", "\u03bcmol/L", "\u039cMOL/L",
                  "\u00b5g/dL", "ng/\u00b5L", "K/\u03bcL", "x10E3/\u00b5L", "10^9/L", "%"]


def test_a_new_reading_of_the_same_file_changes_its_digest(monkeypatch):
    # clean_ehr's shard fingerprints carry the digest: shards cleaned when micro signs were
    # unknown units are recomputed, not kept
    from medae.ehr import dictionary

    before = load_dictionary().digest
    monkeypatch.setattr(dictionary, "_READING_VERSION", dictionary._READING_VERSION + 1)
    assert load_dictionary().digest != before


def test_the_polars_twin_normalises_units_like_the_python_one():
    polars = pl.select(normalize_unit_expr(pl.lit(pl.Series(UNIT_SPELLINGS, dtype=pl.String))))
    assert polars.to_series().to_list() == [normalize_unit(u) for u in UNIT_SPELLINGS]


# itemid, value text, valuenum, unit -> expected code, numeric value, flags
GOLDEN = [
    # unit conversions (°F->°C, lb->kg, in->cm, FiO2 percent->fraction, SpO2 fraction->percent)
    (223761, "98.6", 98.6, "°F", "VITAL//TEMPERATURE", 37.0, "converted"),
    (678, "100.4", 100.4, "Deg. F", "VITAL//TEMPERATURE", 38.0, "converted"),
    (223762, "37.2", 37.2, "°C", "VITAL//TEMPERATURE", 37.2, ""),
    (226531, "176.37", 176.37, "lbs", "VITAL//WEIGHT", 80.0, "converted"),
    (226707, "70", 70.0, "Inch", "VITAL//HEIGHT", 177.8, "converted"),
    (223835, "50", 50.0, "%", "VITAL//FIO2", 0.5, "converted"),
    (223835, "0.4", 0.4, None, "VITAL//FIO2", 0.4, ""),
    (220277, "0.97", 0.97, "%", "VITAL//SPO2", 97.0, "converted"),
    (51249, "33.1", 33.1, "%", "LAB//MCHC", 33.1, ""),  # real demo writes MCHC in % too
    (50931, "5.5", 5.5, "mmol/L", "LAB//GLUCOSE", 99.1, "converted"),
    # range rules (MIMIC-Extract): between outlier and valid bound -> clipped; beyond -> removed
    (220045, "360", 360.0, "bpm", "VITAL//HEART_RATE", 350.0, "clipped"),
    (220045, "400", 400.0, "bpm", "VITAL//HEART_RATE", None, "outlier"),
    (220045, "-5", -5.0, "bpm", "VITAL//HEART_RATE", None, "outlier"),
    (223762, "20", 20.0, "°C", "VITAL//TEMPERATURE", 26.0, "clipped"),
    (223762, "10", 10.0, "°C", "VITAL//TEMPERATURE", None, "outlier"),
    (50912, "1.2", 1.2, "furlongs", "LAB//CREATININE", None, "unknown_unit"),
    # micro written as the micro sign or the Greek mu is the dictionary's umol/l
    (50912, "88.4", 88.4, "\u00b5mol/L", "LAB//CREATININE", 1.0, "converted"),
    (50912, "176.8", 176.8, "\u03bcmol/L", "LAB//CREATININE", 2.0, "converted"),
    # comparisons parsed only where the dictionary allows; other text kept as text
    (51003, "<0.01", None, "ng/mL", "LAB//TROPONIN_T", 0.01, ""),
    (50912, "<0.1", None, "mg/dL", "LAB//CREATININE", None, "text"),
    (50912, "___", None, "mg/dL", "LAB//CREATININE", None, "text"),
    # unmapped itemids keep a raw code and their value
    (50853, "15", 15.0, "ng/mL", "LAB//50853//ng/mL", 15.0, ""),
    (99999, "NEG", None, None, "LAB//99999//UNK", None, "text"),
]
FLAG = {"converted": "f_converted", "clipped": "f_clipped", "outlier": "f_outlier",
        "unknown_unit": "f_unknown_unit", "text": "f_text_only"}


def _events(rows) -> pl.LazyFrame:
    return pl.LazyFrame(
        {"subject_id": [1] * len(rows), "hadm_id": [None] * len(rows),
         "stay_id": [None] * len(rows), "time": [datetime(2150, 1, 1)] * len(rows),
         "itemid": [r[0] for r in rows], "value": [r[1] for r in rows],
         "valuenum": [r[2] for r in rows], "valueuom": [r[3] for r in rows],
         "error": [None] * len(rows),
         "table": ["labevents" if r[0] < 60000 or r[0] == 99999 else "chartevents"
                   for r in rows]},
        schema_overrides={"hadm_id": pl.Int64, "stay_id": pl.Int64, "valuenum": pl.Float64,
                          "valueuom": pl.String, "error": pl.Int64})


def test_golden_conversions_and_ranges():
    out = apply_dictionary(_events(GOLDEN), load_dictionary()).collect()
    for row, got in zip(GOLDEN, out.iter_rows(named=True), strict=True):
        itemid, _, _, _, code, value, flag = row
        assert got["code"] == code, row
        if flag in ("outlier", "unknown_unit"):
            assert got[FLAG[flag]], row  # removed by the stage
            continue
        if value is None:
            assert got["numeric_value"] is None, row
        else:
            assert got["numeric_value"] == pytest.approx(value, abs=0.05), row
        for name, column in FLAG.items():
            assert got[column] == (name == flag), (row, column)
        if flag == "text":
            assert got["text_value"] == row[1]


def test_duplicates_collapse_to_one_row():
    rows = [(220045, "80", 80.0, "bpm", "", 0, "")] * 3 + [(220045, "81", 81.0, "bpm", "", 0, "")]
    stays = pl.LazyFrame(schema={"subject_id": pl.Int64, "hadm_id": pl.Int64,
                                 "stay_id": pl.Int64, "intime": pl.Datetime("us"),
                                 "outtime": pl.Datetime("us")})
    mapped = apply_dictionary(_events(rows), load_dictionary())
    out = sort_and_flag_duplicates(assign_stays(mapped, stays)).collect()
    assert out.select("numeric_value", "f_duplicate").rows() == [
        (80.0, False), (80.0, True), (80.0, True), (81.0, False)]
