"""The MIMIC-IV items the generator charts, with how each one is simulated.

The dictionary rows (``D_ITEMS_CSV``, ``D_LABITEMS_CSV``) are copied verbatim from the MIMIC-IV
v2.2 demo (``icu/d_items.csv.gz``, ``hosp/d_labitems.csv.gz``) so itemids, labels, units and
categories are the real ones; they ship with the package because ``medae synth`` must run
without the shared real-data folder. Lab units and reference ranges are the modal ones of the
real demo's ``labevents``.
"""

from __future__ import annotations

import io
from typing import NamedTuple

import polars as pl

D_ITEMS_COLUMNS = ["itemid", "label", "abbreviation", "linksto", "category", "unitname",
                   "param_type", "lownormalvalue", "highnormalvalue"]
D_LABITEMS_COLUMNS = ["itemid", "label", "fluid", "category"]

D_ITEMS_CSV = """\
itemid,label,abbreviation,linksto,category,unitname,param_type,lownormalvalue,highnormalvalue
220045,Heart Rate,HR,chartevents,Routine Vital Signs,bpm,Numeric,,
220050,Arterial Blood Pressure systolic,ABPs,chartevents,Routine Vital Signs,mmHg,Numeric,90,140
220051,Arterial Blood Pressure diastolic,ABPd,chartevents,Routine Vital Signs,mmHg,Numeric,60,90
220052,Arterial Blood Pressure mean,ABPm,chartevents,Routine Vital Signs,mmHg,Numeric,,
220179,Non Invasive Blood Pressure systolic,NBPs,chartevents,Routine Vital Signs,mmHg,Numeric,,
220180,Non Invasive Blood Pressure diastolic,NBPd,chartevents,Routine Vital Signs,mmHg,Numeric,,
220181,Non Invasive Blood Pressure mean,NBPm,chartevents,Routine Vital Signs,mmHg,Numeric,,
220210,Respiratory Rate,RR,chartevents,Respiratory,insp/min,Numeric,,
220277,O2 saturation pulseoxymetry,SpO2,chartevents,Respiratory,%,Numeric,,
220739,GCS - Eye Opening,Eye Opening,chartevents,Neurological,,Text,,
223761,Temperature Fahrenheit,Temperature F,chartevents,Routine Vital Signs,°F,Numeric,,
223762,Temperature Celsius,Temperature C,chartevents,Routine Vital Signs,°C,Numeric,,
223835,Inspired O2 Fraction,FiO2,chartevents,Respiratory,None,Numeric,,
223900,GCS - Verbal Response,Verbal Response,chartevents,Neurological,,Text,,
223901,GCS - Motor Response,Motor Response,chartevents,Neurological,,Text,,
224639,Daily Weight,Daily Weight,chartevents,General,kg,Numeric,,
226512,Admission Weight (Kg),Admission Weight (Kg),chartevents,General,kg,Numeric,,
226730,Height (cm),Height (cm),chartevents,General,cm,Numeric,,
"""

D_LABITEMS_CSV = """\
itemid,label,fluid,category
50813,Lactate,Blood,Blood Gas
50818,pCO2,Blood,Blood Gas
50820,pH,Blood,Blood Gas
50821,pO2,Blood,Blood Gas
50861,Alanine Aminotransferase (ALT),Blood,Chemistry
50862,Albumin,Blood,Chemistry
50868,Anion Gap,Blood,Chemistry
50878,Asparate Aminotransferase (AST),Blood,Chemistry
50882,Bicarbonate,Blood,Chemistry
50885,"Bilirubin, Total",Blood,Chemistry
50893,"Calcium, Total",Blood,Chemistry
50902,Chloride,Blood,Chemistry
50912,Creatinine,Blood,Chemistry
50931,Glucose,Blood,Chemistry
50960,Magnesium,Blood,Chemistry
50970,Phosphate,Blood,Chemistry
50971,Potassium,Blood,Chemistry
50983,Sodium,Blood,Chemistry
51003,Troponin T,Blood,Chemistry
51006,Urea Nitrogen,Blood,Chemistry
51221,Hematocrit,Blood,Hematology
51222,Hemoglobin,Blood,Hematology
51237,INR(PT),Blood,Hematology
51265,Platelet Count,Blood,Hematology
51274,PT,Blood,Hematology
51275,PTT,Blood,Hematology
51301,White Blood Cells,Blood,Hematology
"""


def d_items() -> pl.DataFrame:
    """The ``icu/d_items`` rows of the charted items, as strings exactly as in MIMIC-IV.

    >>> d_items().filter(pl.col("itemid") == "220045")["label"].item()
    'Heart Rate'
    """
    return pl.read_csv(io.StringIO(D_ITEMS_CSV), infer_schema_length=0)


def d_labitems() -> pl.DataFrame:
    """The ``hosp/d_labitems`` rows of the simulated labs, as strings exactly as in MIMIC-IV.

    >>> d_labitems().filter(pl.col("itemid") == "50912")["label"].item()
    'Creatinine'
    """
    return pl.read_csv(io.StringIO(D_LABITEMS_CSV), infer_schema_length=0)


def chart_unit(itemid: int) -> str | None:
    """``valueuom`` for a charted item: the d_items unit, none for text items and ``None`` units.

    >>> chart_unit(220045), chart_unit(220739), chart_unit(223835)
    ('bpm', None, None)
    """
    row = d_items().filter(pl.col("itemid") == str(itemid))
    unit = row["unitname"].item()
    return None if unit in (None, "None") else unit


class Vital(NamedTuple):
    """A numeric charted vital: value = base + effect*latent + stay offset + noise, clipped."""

    itemid: int
    base: float
    effect: float     # change per unit of the latent severity (positive: rises when sicker)
    stay_sd: float    # per-stay offset sd (patients differ)
    noise_sd: float   # measurement-to-measurement sd
    low: float
    high: float
    decimals: int


HEART_RATE = 220045

# Means near the MIMIC-IV ICU medians; effects make sicker stays tachycardic, hypotensive,
# tachypnoeic, desaturating and febrile, which is what the downstream model should learn.
VITALS: dict[str, Vital] = {
    "hr": Vital(220045, 84.0, 11.0, 9.0, 4.0, 30, 200, 0),
    "nbp_sys": Vital(220179, 122.0, -11.0, 12.0, 8.0, 60, 220, 0),
    "nbp_dia": Vital(220180, 66.0, -6.0, 8.0, 6.0, 30, 130, 0),
    "abp_sys": Vital(220050, 120.0, -12.0, 12.0, 6.0, 55, 220, 0),
    "abp_dia": Vital(220051, 60.0, -6.0, 7.0, 4.0, 25, 130, 0),
    "rr": Vital(220210, 18.0, 3.5, 3.0, 2.5, 6, 50, 0),
    "spo2": Vital(220277, 97.0, -1.8, 1.2, 1.2, 60, 100, 0),
    "temp_c": Vital(223762, 37.0, 0.35, 0.35, 0.25, 33.0, 42.0, 1),
    "fio2": Vital(223835, 40.0, 12.0, 8.0, 5.0, 21, 100, 0),
}
NBP_MEAN, ABP_MEAN, TEMP_F = 220181, 220052, 223761
GCS_EYE, GCS_VERBAL, GCS_MOTOR = 220739, 223900, 223901
ADMISSION_WEIGHT, DAILY_WEIGHT, HEIGHT = 226512, 224639, 226730

# GCS text values in MIMIC-IV, indexed by score (index 0 unused); valuenum is the score.
GCS_TEXT: dict[int, list[str]] = {
    GCS_EYE: ["", "None", "To Pain", "To Speech", "Spontaneously"],
    GCS_VERBAL: ["", "No Response", "Incomprehensible sounds", "Inappropriate Words",
                 "Confused", "Oriented"],
    GCS_MOTOR: ["", "No response", "Abnormal extension", "Abnormal Flexion", "Flex-withdraws",
                "Localizes Pain", "Obeys Commands"],
}
GCS_NO_RESPONSE_ETT = "No Response-ETT"  # verbal of an intubated patient, valuenum 1


class Lab(NamedTuple):
    """A lab: value = median + spread*(effect*latent + stay + noise), or the log-normal analogue."""

    itemid: int
    unit: str | None
    ref_low: float
    ref_high: float
    median: float
    spread: float     # sd, or sd of log(value) when ``log``
    log: bool
    effect: float     # per unit latent, in units of ``spread``
    decimals: int
    low: float
    high: float
    panel: str


# Medians and spreads follow the real demo's labevents (5th-95th percentiles); units and
# reference ranges are the modal ones there. Hematocrit, anion gap and INR are derived from
# hemoglobin, the electrolytes and PT so the panel stays internally consistent.
LABS: dict[str, Lab] = {
    "lactate": Lab(50813, "mmol/L", 0.5, 2, 1.5, 0.45, True, 0.9, 1, 0.3, 25, "gas"),
    "pco2": Lab(50818, "mm Hg", 35, 45, 40, 7, False, 0.3, 0, 15, 110, "gas"),
    "ph": Lab(50820, "units", 7.35, 7.45, 7.39, 0.05, False, -0.8, 2, 6.8, 7.7, "gas"),
    "po2": Lab(50821, "mm Hg", 85, 105, 100, 0.5, True, -0.3, 0, 25, 550, "gas"),
    "alt": Lab(50861, "IU/L", 0, 40, 28, 0.8, True, 0.4, 0, 3, 5000, "lft"),
    "albumin": Lab(50862, "g/dL", 3.5, 5.2, 3.5, 0.5, False, -0.6, 1, 1.0, 5.5, "lft"),
    "ast": Lab(50878, "IU/L", 0, 40, 35, 0.8, True, 0.45, 0, 5, 8000, "lft"),
    "bicarbonate": Lab(50882, "mEq/L", 22, 32, 25, 3.5, False, -0.7, 0, 5, 50, "bmp"),
    "bilirubin": Lab(50885, "mg/dL", 0, 1.5, 0.6, 0.8, True, 0.4, 1, 0.1, 40, "lft"),
    "calcium": Lab(50893, "mg/dL", 8.4, 10.3, 8.6, 0.6, False, -0.3, 1, 5.0, 13.0, "bmp"),
    "chloride": Lab(50902, "mEq/L", 96, 108, 102, 5, False, 0.0, 0, 75, 130, "bmp"),
    "creatinine": Lab(50912, "mg/dL", 0.5, 1.2, 1.0, 0.5, True, 0.7, 1, 0.2, 15, "bmp"),
    "glucose": Lab(50931, "mg/dL", 70, 100, 125, 0.3, True, 0.4, 0, 30, 900, "bmp"),
    "magnesium": Lab(50960, "mg/dL", 1.6, 2.6, 2.0, 0.3, False, 0.0, 1, 0.8, 4.5, "bmp"),
    "phosphate": Lab(50970, "mg/dL", 2.7, 4.5, 3.5, 1.0, False, 0.4, 1, 0.5, 12, "bmp"),
    "potassium": Lab(50971, "mEq/L", 3.3, 5.1, 4.1, 0.5, False, 0.3, 1, 2.2, 7.5, "bmp"),
    "sodium": Lab(50983, "mEq/L", 133, 145, 138, 4, False, 0.0, 0, 115, 165, "bmp"),
    "troponin": Lab(51003, "ng/mL", 0, 0.01, 0.04, 1.2, True, 0.5, 2, 0.01, 25, "trop"),
    "bun": Lab(51006, "mg/dL", 6, 20, 20, 0.6, True, 0.5, 0, 2, 200, "bmp"),
    "hemoglobin": Lab(51222, "g/dL", 13.7, 17.5, 10, 1.8, False, -0.3, 1, 4.0, 19.0, "cbc"),
    "platelets": Lab(51265, "K/uL", 150, 400, 200, 0.5, True, -0.4, 0, 5, 1200, "cbc"),
    "pt": Lab(51274, "sec", 9.4, 12.5, 14, 0.3, True, 0.4, 1, 9, 150, "coag"),
    "ptt": Lab(51275, "sec", 25, 36.5, 33, 0.35, True, 0.3, 1, 18, 150, "coag"),
    "wbc": Lab(51301, "K/uL", 4, 10, 9.5, 0.5, True, 0.5, 1, 0.1, 150, "cbc"),
    # derived (median/spread unused): Hct ~ 3*Hgb, anion gap = Na - Cl - HCO3, INR ~ PT/11.
    "hematocrit": Lab(51221, "%", 40, 51, 0, 0, False, 0, 1, 12, 60, "cbc"),
    "anion_gap": Lab(50868, "mEq/L", 8, 20, 0, 0, False, 0, 0, 3, 45, "bmp"),
    "inr": Lab(51237, None, 0.9, 1.1, 0, 0, False, 0, 1, 0.8, 12, "coag"),
}
DERIVED_LABS = ("hematocrit", "anion_gap", "inr")
