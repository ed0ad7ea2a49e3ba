"""Subjects, admissions and ICU stays, with the latent severity that drives everything else.

Each admission carries a latent state ``x(t) = severity + trend * progress + oscillation``:
``severity`` ~ N(0, 1) per ICU stay, ``trend`` makes non-survivors deteriorate and survivors
improve over the stay, and a slow oscillation adds within-stay variability. Vitals, labs and
waveform heart rate are all functions of ``x(t)`` (see :func:`latent_at`), and in-hospital death
is logistic in ``severity``, so learned features carry real signal about mortality.

All times are int64 seconds since 1970 (the shifted MIMIC years 2110-2200 fit easily).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from medae.synth.items import VITALS

DAY = 86_400
HOUR = 3_600

# P(in-hospital death | ICU admission) = sigmoid(MORTALITY_INTERCEPT + MORTALITY_SLOPE * severity);
# with severity ~ N(0, 1) this gives about 13 % mortality among ICU admissions, 11 % overall.
MORTALITY_INTERCEPT = -2.45
MORTALITY_SLOPE = 1.6
NON_ICU_MORTALITY = 0.01
POST_DISCHARGE_DEATH = 0.08
OUTPATIENT_DAYS = 60  # survivors with a dod within a year of their last discharge

# Categorical columns drawn with the real demo's frequencies.
ADMISSION_TYPES = {"EW EMER.": 104, "OBSERVATION ADMIT": 45, "URGENT": 38, "EU OBSERVATION": 30,
                   "SURGICAL SAME DAY ADMISSION": 18, "DIRECT EMER.": 15, "ELECTIVE": 13,
                   "DIRECT OBSERVATION": 7, "AMBULATORY OBSERVATION": 5}
ADMISSION_LOCATIONS = {"EMERGENCY ROOM": 134, "PHYSICIAN REFERRAL": 63,
                       "TRANSFER FROM HOSPITAL": 43, "CLINIC REFERRAL": 10, "PROCEDURE SITE": 7,
                       "WALK-IN/SELF REFERRAL": 7, "TRANSFER FROM SKILLED NURSING FACILITY": 4,
                       "PACU": 4}
DISCHARGE_LOCATIONS = {"HOME HEALTH CARE": 76, "HOME": 72, "": 42, "SKILLED NURSING FACILITY": 36,
                       "REHAB": 13, "CHRONIC/LONG TERM ACUTE CARE": 9, "HOSPICE": 5,
                       "AGAINST ADVICE": 4, "PSYCH FACILITY": 2, "ACUTE HOSPITAL": 1}
INSURANCES = {"Other": 149, "Medicare": 104, "Medicaid": 22}
LANGUAGES = {"ENGLISH": 255, "?": 20}
MARITAL = {"SINGLE": 110, "MARRIED": 72, "WIDOWED": 54, "DIVORCED": 27, "": 12}
RACES = {"WHITE": 170, "BLACK/AFRICAN AMERICAN": 48, "UNKNOWN": 17, "HISPANIC/LATINO - CUBAN": 9,
         "PORTUGUESE": 7, "OTHER": 4, "UNABLE TO OBTAIN": 4, "BLACK/CAPE VERDEAN": 3,
         "HISPANIC/LATINO - SALVADORAN": 3, "WHITE - BRAZILIAN": 3,
         "WHITE - OTHER EUROPEAN": 2, "PATIENT DECLINED TO ANSWER": 2,
         "HISPANIC OR LATINO": 2, "HISPANIC/LATINO - PUERTO RICAN": 1}
CAREUNITS = {"Medical Intensive Care Unit (MICU)": 29, "Surgical Intensive Care Unit (SICU)": 29,
             "Cardiac Vascular Intensive Care Unit (CVICU)": 25,
             "Medical/Surgical Intensive Care Unit (MICU/SICU)": 23, "Trauma SICU (TSICU)": 16,
             "Coronary Care Unit (CCU)": 13,
             "Neuro Surgical Intensive Care Unit (Neuro SICU)": 3, "Neuro Stepdown": 1,
             "Neuro Intermediate": 1}
ANCHOR_YEAR_GROUPS = ["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022"]

PATIENTS_COLUMNS = ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
ADMISSIONS_COLUMNS = ["subject_id", "hadm_id", "admittime", "dischtime", "deathtime",
                      "admission_type", "admit_provider_id", "admission_location",
                      "discharge_location", "insurance", "language", "marital_status", "race",
                      "edregtime", "edouttime", "hospital_expire_flag"]
ICUSTAYS_COLUMNS = ["subject_id", "hadm_id", "stay_id", "first_careunit", "last_careunit",
                    "intime", "outtime", "los"]


@dataclass(frozen=True)
class Cohort:
    """The generated population: one row per subject, and one per admission.

    ``admissions`` holds the output columns plus hidden simulation columns (``*_s`` times in
    epoch seconds, ``stay_id`` null without an ICU stay, the latent-state parameters, the
    subject's weight/height and whether the stay has an arterial line or ventilation).
    """

    patients: pl.DataFrame
    admissions: pl.DataFrame

    @property
    def stays(self) -> pl.DataFrame:
        """Admissions that have an ICU stay, ordered by subject and intime."""
        return self.admissions.filter(pl.col("stay_id").is_not_null()).sort("subject_id", "in_s")


def latent_at(stays: pl.DataFrame | dict[str, np.ndarray], t_s: np.ndarray,
              rows: np.ndarray | None = None) -> np.ndarray:
    """Latent severity of each event at epoch second ``t_s``; ``rows`` picks the stay per event.

    >>> stays = {"severity": np.array([1.0]), "trend": np.array([0.8]), "osc_amp": np.array([0.0]),
    ...          "osc_period_h": np.array([12.0]), "osc_phase": np.array([0.0]),
    ...          "t0_s": np.array([0]), "t1_s": np.array([100])}
    >>> latent_at(stays, np.array([0, 50, 200]), np.array([0, 0, 0])).round(2).tolist()
    [1.0, 1.4, 1.8]
    """
    rows = np.zeros(len(t_s), dtype=np.int64) if rows is None else rows

    def col(name: str) -> np.ndarray:
        return np.asarray(stays[name])[rows]

    t0, t1 = col("t0_s"), col("t1_s")
    progress = np.clip((t_s - t0) / np.maximum(t1 - t0, 1), 0.0, 1.0)
    wave = np.sin(2 * np.pi * (t_s - t0) / (col("osc_period_h") * HOUR) + col("osc_phase"))
    return col("severity") + col("trend") * progress + col("osc_amp") * wave


def heart_rate_mean(latent: np.ndarray, hr_offset: np.ndarray) -> np.ndarray:
    """Noise-free heart rate (bpm) of a stay; shared by charted HR and the ECG/PPG/ABP beats.

    >>> heart_rate_mean(np.array([0.0, 1.0]), np.array([0.0, 0.0])).tolist()
    [84.0, 95.0]
    """
    hr = VITALS["hr"]
    return np.clip(hr.base + hr.effect * latent + hr_offset, 40.0, 180.0)


def _choice(rng: np.random.Generator, freq: dict[str, int], n: int) -> np.ndarray:
    labels = np.array(list(freq), dtype=object)
    p = np.array(list(freq.values()), dtype=np.float64)
    return labels[rng.choice(len(labels), size=n, p=p / p.sum())]


def _unique_ids(rng: np.random.Generator, n: int, start: int, shuffle: bool) -> np.ndarray:
    """``n`` distinct 8-digit ids: random increments keep them unique without a lookup."""
    ids = start + np.cumsum(rng.integers(1, 250, size=n))
    return rng.permutation(ids) if shuffle else ids


def _segment_cumsum(values: np.ndarray, group_starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each group (groups are contiguous runs)."""
    total = np.cumsum(values)
    before = np.repeat(total[group_starts] - values[group_starts], counts)
    return total - before


def _to_minute(t_s: np.ndarray) -> np.ndarray:
    return (t_s // 60) * 60


def provider_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Provider ids shaped like MIMIC's (``P`` + 5 upper-case letters/digits)."""
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    chars = alphabet[rng.integers(0, len(alphabet), size=(n, 5))]
    return np.array(["P" + "".join(row) for row in chars], dtype=object)


def as_arrays(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """Columns as numpy arrays, the form the vectorised generators index by row.

    >>> as_arrays(pl.DataFrame({"a": [1, 2]}))["a"].tolist()
    [1, 2]
    """
    return {c: frame[c].to_numpy() for c in frame.columns}


def _epoch_of_year(years: np.ndarray) -> np.ndarray:
    return (years - 1970).astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)


def make_cohort(n_subjects: int, rng: np.random.Generator) -> Cohort:
    """Draw ``n_subjects`` patients with 1-4 admissions; the first always has an ICU stay.

    >>> c = make_cohort(30, np.random.default_rng(0))
    >>> c.patients.height, c.admissions["subject_id"].n_unique(), c.stays.height >= 30
    (30, 30, True)
    """
    subject_id = _unique_ids(rng, n_subjects, 10_000_000, shuffle=False)
    gender = np.where(rng.random(n_subjects) < 0.5, "F", "M")
    anchor_age = np.clip(np.round(rng.normal(63, 16, n_subjects)), 18, 91).astype(np.int64)
    anchor_year = rng.integers(2110, 2190, size=n_subjects)
    year_group = np.array(ANCHOR_YEAR_GROUPS)[rng.integers(0, len(ANCHOR_YEAR_GROUPS), n_subjects)]
    height = np.round(np.where(gender == "M", 176.0, 162.0) + rng.normal(0, 8, n_subjects))
    weight = np.round(np.clip(rng.normal(80, 18, n_subjects), 38, 200), 1)

    n_adm = np.minimum(rng.geometric(0.6, size=n_subjects), 4)
    subj_row = np.repeat(np.arange(n_subjects), n_adm)
    n = len(subj_row)
    first_row = np.cumsum(n_adm) - n_adm
    is_first = np.zeros(n, dtype=bool)
    is_first[first_row] = True
    has_icu = is_first | (rng.random(n) < 0.35)

    severity = np.where(has_icu, rng.standard_normal(n), rng.normal(-1.5, 0.4, n))
    p_death = np.where(has_icu, _sigmoid(MORTALITY_INTERCEPT + MORTALITY_SLOPE * severity),
                       NON_ICU_MORTALITY)
    died = rng.random(n) < p_death
    # A subject cannot be admitted after dying: keep admissions up to the first death.
    deaths_before = _segment_cumsum(died.astype(np.int64), first_row, n_adm) - died
    keep = deaths_before == 0

    # Timeline inside an admission: admit -> (pre-ICU) -> ICU stay -> (ward) -> discharge.
    pre_icu = np.where(rng.random(n) < 0.5, rng.uniform(0.2, 2, n), rng.uniform(2, 48, n)) * HOUR
    icu_los = np.clip(rng.lognormal(np.log(1.9), 0.75, n) * np.exp(0.2 * severity), 0.3, 25) * DAY
    post_icu = np.where(died, rng.uniform(0, 10 * 60, n), rng.uniform(0.3, 8, n) * DAY)
    ward_los = np.clip(rng.lognormal(np.log(3.0), 0.6, n), 0.2, 30) * DAY
    adm_len = np.where(has_icu, pre_icu + icu_los + post_icu, ward_los)
    gap = rng.exponential(200, n) * DAY + 2 * DAY
    first_admit = (_epoch_of_year(anchor_year)[subj_row]
                   + rng.uniform(0, 3 * 365, n_subjects)[subj_row] * DAY)
    admit_offset = _segment_cumsum(adm_len + gap, first_row, n_adm) - (adm_len + gap)
    # Outpatient labs (no hadm_id) fall in the 60 days before an admission, after the last one.
    gap_before = np.roll(gap, 1)
    gap_before[first_row] = np.inf
    outpatient_window = np.clip(np.minimum(OUTPATIENT_DAYS * DAY, gap_before - DAY), 0, None)
    admit_s = _to_minute(first_admit + admit_offset).astype(np.int64)
    in_s = (admit_s + pre_icu).astype(np.int64)
    out_s = (in_s + icu_los).astype(np.int64)
    disch_s = _to_minute(admit_s + adm_len).astype(np.int64)
    disch_s = np.where(has_icu & died, _to_minute(out_s + 59), disch_s)  # died in the ICU
    t0 = np.where(has_icu, in_s, admit_s)
    t1 = np.where(has_icu, out_s, disch_s)

    adm = pl.DataFrame({
        "subject_id": subject_id[subj_row],
        "hadm_id": _unique_ids(rng, n, 20_000_000, shuffle=True),
        "stay_id": pl.Series(np.where(has_icu, _unique_ids(rng, n, 30_000_000, True), 0)),
        "admit_s": admit_s, "disch_s": disch_s, "outpatient_window_s": outpatient_window,
        "in_s": np.where(has_icu, in_s, 0), "out_s": np.where(has_icu, out_s, 0),
        "t0_s": t0, "t1_s": t1,
        "died": died, "has_icu": has_icu,
        "severity": severity,
        "trend": np.where(died, 0.8, -0.4) + rng.normal(0, 0.2, n),
        "osc_amp": rng.uniform(0.05, 0.3, n),
        "osc_period_h": rng.uniform(6, 30, n),
        "osc_phase": rng.uniform(0, 2 * np.pi, n),
        "hr_offset": rng.normal(0, VITALS["hr"].stay_sd, n),
        "aline": rng.random(n) < _sigmoid(0.2 + severity),
        "ventilated": rng.random(n) < _sigmoid(-0.6 + 1.2 * severity),
        "weight_kg": weight[subj_row], "height_cm": height[subj_row],
        "admission_type": _choice(rng, ADMISSION_TYPES, n),
        "admit_provider_id": provider_ids(rng, n),
        "admission_location": _choice(rng, ADMISSION_LOCATIONS, n),
        "discharge_location": np.where(died, "DIED", _choice(rng, DISCHARGE_LOCATIONS, n)),
        "insurance": _choice(rng, INSURANCES, n),
        "language": _choice(rng, LANGUAGES, n),
        "marital_status": _choice(rng, MARITAL, n),
        "race": _choice(rng, RACES, n),
        "ed_before_s": rng.uniform(1, 10, n) * HOUR,
        "ed_after_s": rng.uniform(0.2, 3, n) * HOUR,
        "careunit": _choice(rng, CAREUNITS, n),
    }).filter(pl.Series(keep)).with_columns(
        pl.when(pl.col("has_icu")).then(pl.col("stay_id")).alias("stay_id"),
        pl.when(pl.col("has_icu")).then(pl.col("in_s")).alias("in_s"),
        pl.when(pl.col("has_icu")).then(pl.col("out_s")).alias("out_s"),
        pl.col("admission_type", "admission_location", "discharge_location", "insurance",
               "language", "marital_status", "race", "careunit").cast(pl.String),
    ).with_columns(pl.col(c).replace("", None) for c in ("discharge_location", "marital_status"))

    patients = pl.DataFrame({
        "subject_id": subject_id, "gender": gender, "anchor_age": anchor_age,
        "anchor_year": anchor_year, "anchor_year_group": year_group,
        "post_discharge_death": rng.random(n_subjects) < POST_DISCHARGE_DEATH,
        "death_delay_s": rng.uniform(1, 365, n_subjects) * DAY,
    })
    return Cohort(patients=patients, admissions=adm.sort("subject_id", "admit_s"))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _ts(col: str) -> pl.Expr:
    return pl.from_epoch(col, time_unit="s")


def patients_table(cohort: Cohort) -> pl.DataFrame:
    """``hosp/patients``: dod is the in-hospital death date, or a later out-of-hospital one."""
    last = cohort.admissions.group_by("subject_id").agg(
        pl.col("disch_s").max().alias("last_disch_s"),
        pl.col("disch_s").filter(pl.col("died")).first().alias("death_s"),
    )
    p = cohort.patients.join(last, on="subject_id", how="left")
    dod_s = pl.coalesce(
        pl.col("death_s"),
        pl.when(pl.col("post_discharge_death"))
        .then(pl.col("last_disch_s") + pl.col("death_delay_s").cast(pl.Int64)),
    )
    return p.with_columns(dod=pl.from_epoch(dod_s, time_unit="s").dt.date()).select(
        PATIENTS_COLUMNS).sort("subject_id")


def admissions_table(cohort: Cohort) -> pl.DataFrame:
    """``hosp/admissions`` with deathtime = dischtime for in-hospital deaths, as in MIMIC-IV."""
    a = cohort.admissions
    from_ed = pl.col("admission_location") == "EMERGENCY ROOM"
    return a.with_columns(
        admittime=_ts("admit_s"), dischtime=_ts("disch_s"),
        deathtime=pl.when(pl.col("died")).then(_ts("disch_s")),
        edregtime=pl.when(from_ed).then(
            pl.from_epoch(_minute_expr(pl.col("admit_s") - pl.col("ed_before_s")), time_unit="s")),
        edouttime=pl.when(from_ed).then(
            pl.from_epoch(_minute_expr(pl.col("admit_s") + pl.col("ed_after_s")), time_unit="s")),
        hospital_expire_flag=pl.col("died").cast(pl.Int8),
    ).select(ADMISSIONS_COLUMNS).sort("subject_id", "admittime")


def _minute_expr(seconds: pl.Expr) -> pl.Expr:
    return (seconds.cast(pl.Int64) // 60) * 60


def icustays_table(cohort: Cohort) -> pl.DataFrame:
    """``icu/icustays``: one stay per ICU admission, ``los`` in fractional days."""
    return cohort.stays.with_columns(
        first_careunit=pl.col("careunit"), last_careunit=pl.col("careunit"),
        intime=_ts("in_s"), outtime=_ts("out_s"),
        los=(pl.col("out_s") - pl.col("in_s")) / DAY,
    ).select(ICUSTAYS_COLUMNS).sort("subject_id", "intime")
