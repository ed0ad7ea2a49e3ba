"""Vectorised chartevents and labevents for a chunk of ICU stays / admissions.

Every chunk is generated from its own random stream (seed, table, chunk number), with numpy
arrays only - no per-row Python - so 10 million rows take seconds. Artifacts are injected at the
documented :data:`ARTIFACT_RATES` so data-quality code has something real to catch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

from medae.synth.cohort import DAY, HOUR, as_arrays, heart_rate_mean, latent_at
from medae.synth.items import (
    ABP_MEAN,
    ADMISSION_WEIGHT,
    DAILY_WEIGHT,
    DERIVED_LABS,
    GCS_EYE,
    GCS_MOTOR,
    GCS_NO_RESPONSE_ETT,
    GCS_TEXT,
    GCS_VERBAL,
    HEIGHT,
    LABS,
    NBP_MEAN,
    TEMP_F,
    VITALS,
    Lab,
    chart_unit,
)

# Artifacts injected on purpose, as a fraction of the rows of the named table (before the
# duplicates are added). docs/synth.md lists the same numbers; tests check them.
ARTIFACT_RATES: dict[str, float] = {
    "chart_absurd": 0.0005,        # numeric vital replaced by 10,000,000 / 999,999 / 99,999
    "chart_negative": 0.0005,      # numeric vital with its sign flipped (impossible negative)
    "chart_missing": 0.003,        # value and valuenum both empty
    "chart_outside_stay": 0.003,   # charttime 1-60 min before intime or after outtime
    "chart_duplicate": 0.002,      # the whole row written twice
    "chart_fio2_fraction": 0.03,   # FiO2 charted as a fraction (0.4) instead of percent (40)
    "lab_text_only": 0.01,         # value is ___, <0.1, NEG, ERROR...; valuenum empty
    "lab_duplicate": 0.002,
}
ABSURD_VALUES = np.array([10_000_000.0, 999_999.0, 99_999.0])
LAB_TEXT_VALUES = ["___", "<0.1", "NEG", "ERROR", "UNABLE TO REPORT"]

CHARTEVENTS_COLUMNS = ["subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime",
                       "storetime", "itemid", "value", "valuenum", "valueuom", "warning"]
LABEVENTS_COLUMNS = ["labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid",
                     "order_provider_id", "charttime", "storetime", "value", "valuenum",
                     "valueuom", "ref_range_lower", "ref_range_upper", "flag", "priority",
                     "comments"]
GCS_ITEMS = (GCS_EYE, GCS_VERBAL, GCS_MOTOR)
N_CAREGIVERS = 15_000
OUTPATIENT_DRAWS = 4.5  # mean outpatient draws before an admission: ~25 % of lab rows, as in
#                         the real demo, have no hadm_id


def irregular_times(duration_s: np.ndarray, mean_gap_s: float, cv: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Irregular event offsets inside spans of ``duration_s``: gamma gaps of mean ``mean_gap_s``.

    Returns ``(span_index, offset_s)``; the first event falls uniformly within one gap of the
    span start, later ones follow at gamma-distributed gaps with coefficient of variation ``cv``.

    >>> span, t = irregular_times(np.array([10 * 3600.0, 0.0]), 3600.0, 0.3,
    ...                           np.random.default_rng(0))
    >>> bool((span == 0).all()), 7 <= len(t) <= 13, bool((t < 36000).all())
    (True, True, True)
    """
    cap = np.ceil(duration_s / mean_gap_s * (1 + 2 * cv) + 4).astype(np.int64)
    span = np.repeat(np.arange(len(duration_s)), cap)
    shape = 1.0 / cv**2
    gaps = rng.gamma(shape, mean_gap_s / shape, size=len(span))
    starts = np.cumsum(cap) - cap
    gaps[starts] = rng.uniform(0, mean_gap_s, size=len(duration_s))
    total = np.cumsum(gaps)
    offset = total - np.repeat(total[starts] - gaps[starts], cap)
    keep = offset < duration_s[span]
    return span[keep], offset[keep]


class Events(NamedTuple):
    """Chart rows under construction: stay row, offset from intime, item, value, decimals."""

    row: np.ndarray
    t: np.ndarray
    itemid: np.ndarray
    num: np.ndarray
    decimals: np.ndarray

    @staticmethod
    def concat(parts: list[Events]) -> Events:
        return Events(*(np.concatenate([getattr(p, f) for p in parts]) for f in Events._fields))


def _vital_values(name: str, x: np.ndarray, stay_z: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    v = VITALS[name]
    raw = v.base + v.effect * x + v.stay_sd * stay_z + v.noise_sd * rng.standard_normal(len(x))
    return np.clip(raw, v.low, v.high)


def _group(rows: np.ndarray, t: np.ndarray, columns: dict[int, tuple[np.ndarray, int]]) -> Events:
    """Rows charted together at the same times: one row per (event time, item)."""
    parts = [Events(rows, t, np.full(len(t), item), vals, np.full(len(t), dec))
             for item, (vals, dec) in columns.items()]
    return Events.concat(parts)


def _routine_vitals(stays: dict, duration: np.ndarray, z: dict,
                    rng: np.random.Generator) -> list[Events]:
    """HR, SpO2, RR and NIBP about hourly; arterial BP hourly when the stay has an a-line."""
    rows, t = irregular_times(duration, HOUR, 0.3, rng)
    t_abs = stays["in_s"][rows] + t
    x = latent_at(stays, t_abs, rows)
    hr_noise = VITALS["hr"].noise_sd * rng.standard_normal(len(rows))
    hr = np.clip(heart_rate_mean(x, stays["hr_offset"][rows]) + hr_noise, 30, 200)
    sys_, dia = (_vital_values(n, x, z[n][rows], rng) for n in ("nbp_sys", "nbp_dia"))
    dia = np.minimum(dia, sys_ - 15)
    out = [_group(rows, t, {
        VITALS["hr"].itemid: (hr, 0),
        VITALS["spo2"].itemid: (_vital_values("spo2", x, z["spo2"][rows], rng), 0),
        VITALS["rr"].itemid: (_vital_values("rr", x, z["rr"][rows], rng), 0),
        VITALS["nbp_sys"].itemid: (sys_, 0),
        VITALS["nbp_dia"].itemid: (dia, 0),
        NBP_MEAN: ((sys_ + 2 * dia) / 3, 0),
    })]
    aline = stays["aline"][rows]
    rows_a, t_a, x_a = rows[aline], t[aline], x[aline]
    asys, adia = (_vital_values(n, x_a, z[n][rows_a], rng) for n in ("abp_sys", "abp_dia"))
    adia = np.minimum(adia, asys - 15)
    out.append(_group(rows_a, t_a, {VITALS["abp_sys"].itemid: (asys, 0),
                                    VITALS["abp_dia"].itemid: (adia, 0),
                                    ABP_MEAN: ((asys + 2 * adia) / 3, 0)}))
    return out


def _temperature(stays: dict, duration: np.ndarray, z: dict,
                 rng: np.random.Generator) -> Events:
    """Every ~4 h, charted in Fahrenheit (223761) mostly and Celsius (223762) sometimes."""
    rows, t = irregular_times(duration, 4 * HOUR, 0.3, rng)
    x = latent_at(stays, stays["in_s"][rows] + t, rows)
    celsius = _vital_values("temp_c", x, z["temp_c"][rows], rng)
    as_f = rng.random(len(rows)) < 0.85
    item = np.where(as_f, TEMP_F, VITALS["temp_c"].itemid)
    value = np.where(as_f, celsius * 9 / 5 + 32, celsius)
    return Events(rows, t, item, value, np.full(len(rows), 1))


def _gcs(stays: dict, duration: np.ndarray, rng: np.random.Generator) -> Events:
    """GCS eye/verbal/motor every 2-4 h; the components fall with the latent severity."""
    rows, t = irregular_times(duration, 3 * HOUR, 0.2, rng)
    x = latent_at(stays, stays["in_s"][rows] + t, rows)
    impairment = np.maximum(x - 0.3, 0) + 0.6 * rng.standard_normal(len(rows))
    scores = {item: np.clip(np.round(top - k * impairment), 1, top)
              for item, top, k in ((GCS_EYE, 4, 1.0), (GCS_VERBAL, 5, 1.6), (GCS_MOTOR, 6, 1.3))}
    return _group(rows, t, {item: (s, 0) for item, s in scores.items()})


def _fio2(stays: dict, duration: np.ndarray, z: dict, rng: np.random.Generator) -> Events:
    """FiO2 (%) every ~4 h for ventilated stays, higher in sicker patients; a few rows are
    charted as a fraction (0.4 for 40 %), as happens in real MIMIC-IV."""
    vent = np.flatnonzero(stays["ventilated"])
    rows, t = irregular_times(duration[vent], 4 * HOUR, 0.4, rng)
    rows = vent[rows]
    x = latent_at(stays, stays["in_s"][rows] + t, rows)
    percent = _vital_values("fio2", x, z["fio2"][rows], rng)
    fraction = rng.random(len(rows)) < ARTIFACT_RATES["chart_fio2_fraction"]
    return Events(rows, t, np.full(len(rows), VITALS["fio2"].itemid),
                  np.where(fraction, np.round(percent) / 100, percent), np.where(fraction, 2, 0))


def _body_size(stays: dict, duration: np.ndarray, rng: np.random.Generator) -> list[Events]:
    """Admission weight and height once near intime; daily weight for some stays."""
    n = len(duration)
    first = np.arange(n)
    t_w = np.minimum(rng.uniform(0.1, 3, n) * HOUR, duration * 0.5)
    t_h = np.minimum(rng.uniform(0.1, 6, n) * HOUR, duration * 0.5)
    has_h = rng.random(n) < 0.7
    daily = np.flatnonzero(rng.random(n) < 0.6)
    rows_d, t_d = irregular_times(duration[daily], 24 * HOUR, 0.1, rng)
    rows_d = daily[rows_d]
    drift = stays["weight_kg"][rows_d] * (1 + 0.01 * rng.standard_normal(len(rows_d)))
    return [
        Events(first, t_w, np.full(n, ADMISSION_WEIGHT), stays["weight_kg"], np.full(n, 1)),
        Events(first[has_h], t_h[has_h], np.full(int(has_h.sum()), HEIGHT),
               stays["height_cm"][has_h], np.full(int(has_h.sum()), 0)),
        Events(rows_d, t_d, np.full(len(rows_d), DAILY_WEIGHT), drift, np.full(len(rows_d), 1)),
    ]


def _inject_chart_artifacts(ev: Events, duration: np.ndarray,
                            rng: np.random.Generator) -> tuple[Events, np.ndarray, np.ndarray]:
    """Absurd values, negatives, out-of-stay times; returns (events, missing mask, copies)."""
    n = len(ev.row)
    num, dec, t = ev.num.copy(), ev.decimals.copy(), ev.t.copy()
    numeric = ~np.isin(ev.itemid, GCS_ITEMS)
    absurd = numeric & (rng.random(n) < ARTIFACT_RATES["chart_absurd"])
    num[absurd] = ABSURD_VALUES[rng.integers(0, len(ABSURD_VALUES), int(absurd.sum()))]
    dec[absurd] = 0
    negative = numeric & ~absurd & (rng.random(n) < ARTIFACT_RATES["chart_negative"])
    num[negative] = -np.abs(num[negative])
    outside = rng.random(n) < ARTIFACT_RATES["chart_outside_stay"]
    shift = rng.uniform(60, HOUR, n)
    before = rng.random(n) < 0.5
    t = np.where(outside, np.where(before, -shift, duration[ev.row] + shift), t)
    missing = rng.random(n) < ARTIFACT_RATES["chart_missing"]
    copies = 1 + (rng.random(n) < ARTIFACT_RATES["chart_duplicate"]).astype(np.int64)
    return Events(ev.row, t, ev.itemid, num, dec), missing, copies


def _number_text(num: pl.Expr, decimals: pl.Expr) -> pl.Expr:
    """Numbers as MIMIC's CSVs print them: integers without ``.0``, else 1-2 decimals."""
    return (pl.when(decimals == 0).then(num.round(0).cast(pl.Int64).cast(pl.String))
            .when(decimals == 1).then(num.round(1).cast(pl.String))
            .otherwise(num.round(2).cast(pl.String)))


def chartevents_chunk(stays: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """``icu/chartevents`` rows for a chunk of stays (see :class:`medae.synth.cohort.Cohort`).

    >>> from medae.synth.cohort import make_cohort
    >>> c = make_cohort(5, np.random.default_rng(1))
    >>> df = chartevents_chunk(c.stays, np.random.default_rng(2))
    >>> df.columns == CHARTEVENTS_COLUMNS, df.height > 100
    (True, True)
    """
    s = as_arrays(stays)
    duration = (s["out_s"] - s["in_s"]).astype(np.float64)
    z = {name: rng.standard_normal(len(duration)) for name in VITALS}
    parts = [*_routine_vitals(s, duration, z, rng), _temperature(s, duration, z, rng),
             _gcs(s, duration, rng), _fio2(s, duration, z, rng), *_body_size(s, duration, rng)]
    ev, missing, copies = _inject_chart_artifacts(Events.concat(parts), duration, rng)
    charttime = (s["in_s"][ev.row] + ev.t.astype(np.int64)) // 60 * 60
    # Items charted together share a caregiver (one per 12 h shift) and a store delay, as a
    # nurse validates a whole row of the flowsheet at once.
    shift_caregivers = rng.integers(1, N_CAREGIVERS, size=(len(duration), 3)) * 7 + 400
    shift = (ev.t // (12 * HOUR)).astype(np.int64) % 3
    storetime = charttime + (charttime * 2_654_435_761 % 45) * 60
    ett = (ev.itemid == GCS_VERBAL) & (ev.num == 1) & s["ventilated"][ev.row]
    frame = pl.DataFrame({
        "subject_id": s["subject_id"][ev.row], "hadm_id": s["hadm_id"][ev.row],
        "stay_id": s["stay_id"][ev.row],
        "caregiver_id": shift_caregivers[ev.row, shift],
        "charttime": charttime, "storetime": storetime, "itemid": ev.itemid,
        "num": ev.num, "dec": ev.decimals, "missing": missing, "ett": ett,
    })
    frame = frame[np.repeat(np.arange(frame.height), copies)]  # duplicates sit side by side
    return _chart_strings(frame).sort("subject_id", "stay_id", "charttime", "itemid",
                                      maintain_order=True)


def _gcs_text_expr() -> pl.Expr:
    mapping = {item * 10 + score: text for item, texts in GCS_TEXT.items()
               for score, text in enumerate(texts) if text}
    key = pl.col("itemid") * 10 + pl.col("num").cast(pl.Int64)
    return (pl.when(pl.col("ett")).then(pl.lit(GCS_NO_RESPONSE_ETT))
            .otherwise(key.replace_strict(mapping, default=None, return_dtype=pl.String)))


def _chart_strings(frame: pl.DataFrame) -> pl.DataFrame:
    units = {item: chart_unit(item) for item in frame["itemid"].unique().to_list()}
    number = _number_text(pl.col("num"), pl.col("dec"))
    is_gcs = pl.col("itemid").is_in(GCS_ITEMS)
    return frame.with_columns(
        pl.from_epoch("charttime", time_unit="s"), pl.from_epoch("storetime", time_unit="s"),
        value=pl.when(pl.col("missing")).then(None)
        .when(is_gcs).then(_gcs_text_expr()).otherwise(number),
        valuenum=pl.when(pl.col("missing")).then(None).otherwise(number),
        valueuom=pl.col("itemid").replace_strict(units, default=None, return_dtype=pl.String),
        warning=pl.lit(0, dtype=pl.Int8),
    ).select(CHARTEVENTS_COLUMNS)


# Lab panels drawn at each blood draw and the probability each is ordered.
PANELS: dict[str, float] = {"bmp": 1.0, "cbc": 0.85, "coag": 0.45, "lft": 0.3, "gas": 0.0,
                            "trop": 0.1}


def _lab_value(lab: Lab, x: np.ndarray, stay_z: np.ndarray, noise: np.ndarray) -> np.ndarray:
    score = lab.effect * x + 0.7 * stay_z + 0.5 * noise
    raw = lab.median * np.exp(lab.spread * score) if lab.log else lab.median + lab.spread * score
    return np.clip(raw, lab.low, lab.high)


def _panel_values(panel: str, x: np.ndarray, z: dict[str, np.ndarray],
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Values of every lab in ``panel`` for draws with latent ``x`` (z: per-draw stay offsets)."""
    names = [n for n, lab in LABS.items() if lab.panel == panel and n not in DERIVED_LABS]
    vals = {n: _lab_value(LABS[n], x, z[n], rng.standard_normal(len(x))) for n in names}
    if panel == "cbc":
        vals["hematocrit"] = vals["hemoglobin"] * 3 + rng.normal(0, 1, len(x))
    if panel == "bmp":
        gap = vals["sodium"] - vals["chloride"] - vals["bicarbonate"]
        vals["anion_gap"] = np.maximum(gap, 0) * 0.5 + 7 + 2.5 * np.maximum(x, 0)
    if panel == "coag":
        vals["inr"] = vals["pt"] / 11.0
    return {n: np.clip(v, LABS[n].low, LABS[n].high) for n, v in vals.items()}


def labevents_chunk(adm: pl.DataFrame, rng: np.random.Generator, providers: np.ndarray,
                    first_labevent_id: int, first_specimen_id: int) -> pl.DataFrame:
    """``hosp/labevents`` rows for a chunk of admissions: panels every 6-24 h during the stay,
    and outpatient panels (empty ``hadm_id``) in the weeks before it.

    >>> from medae.synth.cohort import make_cohort
    >>> c = make_cohort(5, np.random.default_rng(1))
    >>> df = labevents_chunk(c.admissions, np.random.default_rng(2), np.array(["P1AB2C"]), 1, 1)
    >>> df.columns == LABEVENTS_COLUMNS, df["labevent_id"].is_unique().all()
    (True, True)
    """
    a = as_arrays(adm)
    draw_row, draw_s, outpatient = _lab_draws(a, rng)
    # Outpatients are healthier than they will be once admitted.
    x = latent_at(a, draw_s, draw_row) - np.where(outpatient, 1.0, 0.0)
    z = {name: rng.standard_normal(len(a["admit_s"]))[draw_row] for name in LABS}
    in_icu = a["has_icu"][draw_row] & (draw_s >= np.nan_to_num(a["in_s"][draw_row].astype(float)))
    gas_p = np.where(in_icu, 0.15 + 0.5 * a["ventilated"][draw_row],
                     np.where(outpatient, 0.0, 0.03))
    parts = []
    for panel_no, (panel, p) in enumerate(PANELS.items()):
        ordered = rng.random(len(draw_row)) < (gas_p if panel == "gas" else p)
        vals = _panel_values(panel, x[ordered], {n: v[ordered] for n, v in z.items()}, rng)
        for name, v in vals.items():
            parts.append(pl.DataFrame({
                "draw": np.flatnonzero(ordered), "panel": panel_no, "itemid": LABS[name].itemid,
                "num": v, "dec": LABS[name].decimals}))
    rows = pl.concat(parts).sort("draw", "panel", "itemid", maintain_order=True)
    return _lab_strings(rows, a, draw_row, draw_s, outpatient, rng, providers,
                        first_labevent_id, first_specimen_id)


def _lab_draws(a: dict[str, np.ndarray],
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blood draws ``(admission row, epoch s, outpatient)`` ordered by admission then time:
    every 6-24 h during the admission, plus a few outpatient draws in the weeks before it."""
    duration = (a["disch_s"] - a["admit_s"]).astype(np.float64)
    in_row, in_t = irregular_times(duration, 12 * HOUR, 0.5, rng)
    window = a["outpatient_window_s"]
    n_out = rng.poisson(OUTPATIENT_DRAWS, len(duration)) * (window > DAY)
    out_row = np.repeat(np.arange(len(duration)), n_out)
    out_s = a["admit_s"][out_row] - rng.uniform(0.5 * DAY, np.maximum(window[out_row], DAY))
    row = np.concatenate([in_row, out_row])
    when = np.concatenate([a["admit_s"][in_row] + in_t, out_s])
    outpatient = np.concatenate([np.zeros(len(in_row), bool), np.ones(len(out_row), bool)])
    order = np.lexsort((when, row))
    return row[order], when[order], outpatient[order]


def _lab_strings(rows: pl.DataFrame, a: dict, draw_row: np.ndarray, draw_s: np.ndarray,
                 outpatient: np.ndarray, rng: np.random.Generator, providers: np.ndarray,
                 first_labevent_id: int, first_specimen_id: int) -> pl.DataFrame:
    draw = rows["draw"].to_numpy()
    adm = draw_row[draw]
    n = rows.height
    specimen_key = draw * len(PANELS) + rows["panel"].to_numpy()
    _, specimen_idx = np.unique(specimen_key, return_inverse=True)
    specimen_ids = first_specimen_id + np.cumsum(rng.integers(1, 40, specimen_idx.max() + 1))
    priority = np.array(["STAT", "ROUTINE", None], dtype=object)[
        rng.choice(3, size=specimen_idx.max() + 1, p=[0.55, 0.38, 0.07])]
    provider = np.where(rng.random(specimen_idx.max() + 1) < 0.3,
                        providers[rng.integers(0, len(providers), specimen_idx.max() + 1)], None)
    store_delay = rng.integers(30, 150, specimen_idx.max() + 1) * 60  # one result time per tube
    text_only = rng.random(n) < ARTIFACT_RATES["lab_text_only"]
    text = rng.integers(0, len(LAB_TEXT_VALUES), n)
    charttime = (draw_s[draw].astype(np.int64)) // 60 * 60
    copies = 1 + (rng.random(n) < ARTIFACT_RATES["lab_duplicate"]).astype(np.int64)
    spec = {lab.itemid: lab for lab in LABS.values()}
    number = _number_text(pl.col("num"), pl.col("dec"))
    low = pl.col("itemid").replace_strict({i: float(lab.ref_low) for i, lab in spec.items()},
                                          return_dtype=pl.Float64)
    high = pl.col("itemid").replace_strict({i: float(lab.ref_high) for i, lab in spec.items()},
                                           return_dtype=pl.Float64)
    frame = rows.with_columns(
        subject_id=pl.Series(a["subject_id"][adm]),
        hadm_id=pl.Series(a["hadm_id"][adm]).scatter(np.flatnonzero(outpatient[draw]), None),
        specimen_id=pl.Series(specimen_ids[specimen_idx]),
        order_provider_id=pl.Series(provider.tolist(), dtype=pl.String).gather(specimen_idx),
        charttime=pl.from_epoch(pl.Series(charttime), time_unit="s"),
        storetime=pl.from_epoch(pl.Series(charttime + store_delay[specimen_idx]), time_unit="s"),
        text_only=pl.Series(text_only),
        text=pl.Series(LAB_TEXT_VALUES, dtype=pl.String).gather(text),
        priority=pl.Series(priority.tolist(), dtype=pl.String).gather(specimen_idx),
    ).with_columns(
        value=pl.when(pl.col("text_only")).then(pl.col("text")).otherwise(number),
        valuenum=pl.when(pl.col("text_only")).then(None).otherwise(number),
        valueuom=pl.col("itemid").replace_strict({i: lab.unit for i, lab in spec.items()},
                                                 return_dtype=pl.String),
        ref_range_lower=pl.col("itemid").replace_strict(
            {i: f"{lab.ref_low:g}" for i, lab in spec.items()}, return_dtype=pl.String),
        ref_range_upper=pl.col("itemid").replace_strict(
            {i: f"{lab.ref_high:g}" for i, lab in spec.items()}, return_dtype=pl.String),
        flag=pl.when(~pl.col("text_only") & ((pl.col("num") < low) | (pl.col("num") > high)))
        .then(pl.lit("abnormal")),
        comments=pl.lit(None, dtype=pl.String),
    )
    frame = frame[np.repeat(np.arange(frame.height), copies)]
    return frame.with_columns(
        labevent_id=pl.int_range(pl.len(), dtype=pl.Int64) + first_labevent_id,
    ).select(LABEVENTS_COLUMNS)
