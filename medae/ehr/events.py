"""Pure ``LazyFrame -> LazyFrame`` transforms from ingested MIMIC tables to MEDS events.

The clean stage chains them per shard: :func:`source_events` (one frame for labs, charts and
outputs), :func:`apply_dictionary` (codes, units, ranges, text values; flags what it removes),
:func:`assign_stays`, :func:`flag_before_admission`, then :func:`sort_and_flag_duplicates` (with
:func:`structural_events`). Flags stay as boolean
columns until the end so the data-quality report counts exactly what was filtered.
"""

from __future__ import annotations

import polars as pl

from medae.ehr.dictionary import (
    Dictionary,
    itemid_frame,
    normalize_unit_expr,
    rule_frame,
    unit_frame,
)

# Raw-code prefix per source table (MEDS-Extract style: PREFIX//<itemid>//<unit>).
RAW_PREFIX = {"labevents": "LAB", "chartevents": "CHART", "outputevents": "OUTPUT"}
COMPARISON = r"^\s*(?:<=|>=|<|>)\s*(\d+(?:\.\d*)?|\.\d+)\s*$"
MEDS_SCHEMA = pl.Schema({
    "subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
    "numeric_value": pl.Float32, "text_value": pl.String, "hadm_id": pl.Int64,
    "stay_id": pl.Int64,
})
EVENT_COLUMNS = ["subject_id", "hadm_id", "stay_id", "time", "itemid", "value", "valuenum",
                 "valueuom", "error", "table"]


def source_events(lf: pl.LazyFrame, table: str) -> pl.LazyFrame:
    """Bring one ingested event table to the common event columns.

    >>> lf = pl.LazyFrame({"subject_id": [1], "hadm_id": [None], "itemid": [50912],
    ...     "charttime": [None], "value": ["1.1"], "valuenum": [1.1], "valueuom": ["mg/dL"]})
    >>> source_events(lf, "labevents").collect().columns == EVENT_COLUMNS
    True
    """
    names = lf.collect_schema().names()
    if table == "outputevents":  # numeric amount only
        value, valuenum = pl.lit(None, pl.String), pl.col("value").cast(pl.Float64)
    else:
        value, valuenum = pl.col("value"), pl.col("valuenum")
    stay = pl.col("stay_id") if "stay_id" in names else pl.lit(None, pl.Int64)
    error = pl.col("error") if "error" in names else pl.lit(None, pl.Int64)
    return lf.select(
        pl.col("subject_id"), pl.col("hadm_id").cast(pl.Int64),
        stay.cast(pl.Int64).alias("stay_id"),
        pl.col("charttime").alias("time"), pl.col("itemid"), value.alias("value"),
        valuenum.alias("valuenum"), pl.col("valueuom"), error.cast(pl.Int64).alias("error"),
        pl.lit(table).alias("table"),
    )


def _raw_code() -> pl.Expr:
    unit = pl.col("valueuom").str.strip_chars()
    unit = pl.when(unit.str.len_chars() > 0).then(unit).otherwise(pl.lit("UNK"))
    prefix = pl.col("table").replace_strict(RAW_PREFIX, default="EVENT")
    return pl.concat_str([prefix, pl.col("itemid").cast(pl.String), unit], separator="//")


def key_frame(keys: pl.LazyFrame, dictionary: Dictionary) -> pl.LazyFrame:
    """Everything decided by (table, itemid, unit string) alone, once per distinct key.

    A shard holds about a million events but only tens of distinct keys, so the dictionary
    joins, unit normalisation and raw-code strings are computed for the keys and joined back
    to the events once, instead of three joins and a string build per event.

    >>> from medae.ehr.dictionary import load_dictionary
    >>> keys = pl.LazyFrame({"table": ["chartevents", "labevents"], "itemid": [223761, 99],
    ...     "valueuom": ["Deg. F", None]})
    >>> key_frame(keys, load_dictionary()).collect().select(
    ...     "code", "var", "unit_norm", pl.col("scale").round(3)).rows()
    [('VITAL//TEMPERATURE', 'VITAL//TEMPERATURE', 'f', 0.556), ('LAB//99//UNK', None, None, None)]
    """
    items = itemid_frame(dictionary).join(rule_frame(dictionary), on="code").lazy()
    units = unit_frame(dictionary).lazy()
    lf = keys.join(items, on="itemid", how="left", maintain_order="left").rename({"code": "var"})
    lf = lf.with_columns(unit_norm=pl.coalesce(pl.col("implied_unit"),
                                               normalize_unit_expr(pl.col("valueuom"))))
    lf = lf.join(units, left_on=["var", "unit_norm"], right_on=["code", "unit_norm"],
                 how="left", maintain_order="left")
    return lf.with_columns(code=pl.coalesce(pl.col("var"), _raw_code()))


def apply_dictionary(events: pl.LazyFrame, dictionary: Dictionary) -> pl.LazyFrame:
    """Map itemids to dictionary codes, convert units, apply range rules, parse comparisons.

    Adds ``code``, ``numeric_value``, ``text_value``, ``var`` (dictionary code or null) and
    the flags ``f_converted``, ``f_unknown_unit``, ``f_outlier``, ``f_clipped``,
    ``f_text_only``, ``f_no_time``, ``f_no_item`` (an itemid ingest could not read: the row
    measures nothing known), ``f_error`` (MIMIC-III rows charted in error).
    Unmapped events keep a raw code and their value as is.

    >>> from datetime import datetime
    >>> from medae.ehr.dictionary import load_dictionary
    >>> ev = pl.LazyFrame({"subject_id": [1, 1, 1], "hadm_id": [None] * 3,
    ...     "stay_id": [None] * 3, "time": [datetime(2100, 1, 1)] * 3,
    ...     "itemid": [223761, 220045, 99], "value": ["98.6", "500", "x"],
    ...     "valuenum": [98.6, 500.0, None], "valueuom": ["°F", "bpm", None],
    ...     "error": [None] * 3, "table": ["chartevents"] * 3},
    ...     schema_overrides={"hadm_id": pl.Int64, "stay_id": pl.Int64, "error": pl.Int64})
    >>> out = apply_dictionary(ev, load_dictionary()).collect()
    >>> for row in out.select("code", pl.col("numeric_value").round(1), "f_outlier").rows():
    ...     print(row)
    ('VITAL//TEMPERATURE', 37.0, False)
    ('VITAL//HEART_RATE', 350.0, True)
    ('CHART//99//UNK', None, False)
    """
    keys = ["table", "itemid", "valueuom"]
    lf = events.join(key_frame(events.select(keys).unique(), dictionary), on=keys, how="left",
                     nulls_equal=True, maintain_order="left")
    parsed = pl.col("value").str.extract(COMPARISON, 1).cast(pl.Float64, strict=False)
    num_in = pl.coalesce(pl.col("valuenum"),
                         pl.when(pl.col("comparison").fill_null(False)).then(parsed))
    lf = lf.with_columns(num_in.alias("num_in"))
    mapped_num = pl.col("var").is_not_null() & pl.col("num_in").is_not_null()
    unit_known = pl.col("unit_norm").is_null() | pl.col("scale").is_not_null()
    scaled = pl.col("num_in") * pl.col("scale").fill_null(1.0) + pl.col("offset").fill_null(0.0)
    rule_hit = (pl.col("rule_above").is_not_null() & (pl.col("x") > pl.col("rule_above"))) | (
        pl.col("rule_at_most").is_not_null() & (pl.col("x") <= pl.col("rule_at_most")))
    lf = lf.with_columns(x=scaled, f_unknown_unit=mapped_num & ~unit_known)
    lf = lf.with_columns(
        x=pl.when(rule_hit).then(pl.col("x") * pl.col("rule_scale")).otherwise(pl.col("x")),
        f_converted=mapped_num & unit_known & (
            (pl.col("scale").fill_null(1.0) != 1.0) | (pl.col("offset").fill_null(0.0) != 0.0)
            | rule_hit.fill_null(False)),
    )
    outlier = (pl.col("x") < pl.col("outlier_low")) | (pl.col("x") > pl.col("outlier_high"))
    clipped = (pl.col("x") < pl.col("valid_low")) | (pl.col("x") > pl.col("valid_high"))
    text = pl.col("value").str.strip_chars()
    lf = lf.with_columns(
        f_outlier=(mapped_num & unit_known & outlier).fill_null(False),
        f_clipped=(mapped_num & unit_known & ~outlier & clipped).fill_null(False),
        f_text_only=pl.col("num_in").is_null() & (text.str.len_chars() > 0).fill_null(False),
        f_no_time=pl.col("time").is_null(),
        # counted once: a row without a time is removed for that already
        f_no_item=pl.col("itemid").is_null() & pl.col("time").is_not_null(),
        f_error=(pl.col("error") == 1).fill_null(False),
    )
    numeric = pl.when(pl.col("var").is_not_null()).then(
        pl.col("x").clip(pl.col("valid_low"), pl.col("valid_high"))
    ).otherwise(pl.col("valuenum"))
    return lf.with_columns(
        numeric_value=numeric,
        text_value=pl.when(pl.col("f_text_only")).then(text),
        f_unknown_unit=pl.col("f_unknown_unit").fill_null(False),
        f_converted=pl.col("f_converted").fill_null(False),
    )


def assign_stays(events: pl.LazyFrame, stays: pl.LazyFrame) -> pl.LazyFrame:
    """Attach the ICU stay an event falls in (events that already name one keep it) and flag
    ``f_outside_stay`` for events in no stay of their subject. Lab rows without ``hadm_id``
    take the stay's admission.

    >>> from datetime import datetime as dt
    >>> ev = pl.LazyFrame({"subject_id": [1, 1], "hadm_id": [None, None],
    ...     "stay_id": [None, None], "time": [dt(2100, 1, 1, 5), dt(2100, 1, 3)]},
    ...     schema_overrides={"hadm_id": pl.Int64, "stay_id": pl.Int64})
    >>> st = pl.LazyFrame({"subject_id": [1], "hadm_id": [7], "stay_id": [70],
    ...     "intime": [dt(2100, 1, 1)], "outtime": [dt(2100, 1, 2)]})
    >>> assign_stays(ev, st).collect().select("stay_id", "hadm_id", "f_outside_stay").rows()
    [(70, 7, False), (None, None, True)]
    """
    windows = stays.select(
        "subject_id", pl.col("stay_id").alias("_stay"), pl.col("hadm_id").alias("_hadm"),
        "intime", "outtime",
    ).sort("intime")
    lf = events.sort("time").join_asof(
        windows, left_on="time", right_on="intime", by="subject_id", strategy="backward",
        check_sortedness=False,  # sorted by time overall, hence within every subject
    )
    inside = (pl.col("_stay").is_not_null() & (pl.col("time") <= pl.col("outtime"))).fill_null(
        False)
    lf = lf.with_columns(
        stay_id=pl.coalesce(pl.col("stay_id"), pl.when(inside).then(pl.col("_stay"))),
        hadm_id=pl.coalesce(pl.col("hadm_id"), pl.when(inside).then(pl.col("_hadm"))),
        f_outside_stay=~inside,
    )
    return lf.drop("_stay", "_hadm", "intime", "outtime")  # in time order: to_meds sorts


def flag_before_admission(events: pl.LazyFrame, admissions: pl.LazyFrame) -> pl.LazyFrame:
    """Flag ``f_before_admission`` on events timed before the ``admittime`` of their
    ``hadm_id`` (false when the event names no admission or the admission is unknown).

    Row order is not kept (Polars' left join does not promise it, and keeping it costs a
    sort): the caller sorts the store afterwards anyway.

    >>> from datetime import datetime as dt
    >>> ev = pl.LazyFrame({"row": [0, 1, 2], "hadm_id": [7, 7, None], "time": [dt(2100, 1, 1),
    ...     dt(2100, 1, 3), dt(2100, 1, 1)]}, schema_overrides={"hadm_id": pl.Int64})
    >>> adm = pl.LazyFrame({"hadm_id": [7], "admittime": [dt(2100, 1, 2)]})
    >>> flag_before_admission(ev, adm).sort("row").collect()["f_before_admission"].to_list()
    [True, False, False]
    """
    # one admittime per hadm_id, so a repeated admissions row cannot duplicate events
    admitted = admissions.group_by("hadm_id").agg(pl.col("admittime").min().alias("_admit"))
    return events.join(admitted, on="hadm_id", how="left").with_columns(
        f_before_admission=(pl.col("time") < pl.col("_admit")).fill_null(False),
    ).drop("_admit")


def sort_and_flag_duplicates(events: pl.LazyFrame) -> pl.LazyFrame:
    """Type the MEDS columns, sort in MEDS order (static rows first, ties broken by source
    table) and flag ``f_duplicate`` on every row identical to the one before it.

    Sorting is needed for the store anyway; once sorted, duplicates are neighbours and cost
    one comparison each instead of a hash of every row.

    >>> ev = pl.LazyFrame({"subject_id": [1, 1, 1], "time": [2, 1, 1], "code": ["A"] * 3,
    ...     "numeric_value": [1.0] * 3, "text_value": [None] * 3, "hadm_id": [None] * 3,
    ...     "stay_id": [None] * 3, "table": ["labevents"] * 3},
    ...     schema_overrides={"time": pl.Datetime("us"), "text_value": pl.String,
    ...     "hadm_id": pl.Int64, "stay_id": pl.Int64})
    >>> sort_and_flag_duplicates(ev).collect()["f_duplicate"].to_list()
    [False, True, False]
    """
    names = MEDS_SCHEMA.names()
    ordered = events.with_columns(
        [pl.col(n).cast(t) for n, t in MEDS_SCHEMA.items()]
    ).sort([*names, "table"], nulls_last=False)
    repeat = pl.all_horizontal([pl.col(n).eq_missing(pl.col(n).shift(1)) for n in names])
    return ordered.with_columns(f_duplicate=repeat.fill_null(False))


def structural_events(patients: pl.LazyFrame, admissions: pl.LazyFrame,
                      stays: pl.LazyFrame) -> pl.LazyFrame:
    """Birth, death, sex, hospital and ICU admission/discharge events in MEDS columns.

    MIMIC-IV gives only an anchor age and year, so birth is placed on 1 January of
    ``anchor_year - anchor_age``; MIMIC-III gives ``dob``.
    """
    birth = pl.coalesce(
        pl.col("dob"),
        pl.datetime(pl.col("anchor_year") - pl.col("anchor_age"), 1, 1, time_unit="us"),
    )
    null_int = pl.lit(None, pl.Int64)

    def frame(lf: pl.LazyFrame, code: pl.Expr, time: pl.Expr, hadm: pl.Expr,
              stay: pl.Expr) -> pl.LazyFrame:
        return lf.select(
            "subject_id", time.cast(pl.Datetime("us")).alias("time"), code.alias("code"),
            pl.lit(None, pl.Float32).alias("numeric_value"),
            pl.lit(None, pl.String).alias("text_value"), hadm.alias("hadm_id"),
            stay.alias("stay_id"),
        )

    parts = [
        frame(patients, pl.lit("MEDS_BIRTH"), birth, null_int, null_int),
        frame(patients.filter(pl.col("dod").is_not_null()), pl.lit("MEDS_DEATH"),
              pl.col("dod"), null_int, null_int),
        frame(patients.filter(pl.col("gender").is_not_null()),
              pl.concat_str([pl.lit("GENDER//"), pl.col("gender").str.to_uppercase()]),
              pl.lit(None, pl.Datetime("us")), null_int, null_int),
        frame(admissions, pl.lit("HOSPITAL_ADMISSION"), pl.col("admittime"),
              pl.col("hadm_id"), null_int),
        frame(admissions, pl.lit("HOSPITAL_DISCHARGE"), pl.col("dischtime"),
              pl.col("hadm_id"), null_int),
        frame(stays, pl.lit("ICU_ADMISSION"), pl.col("intime"), pl.col("hadm_id"),
              pl.col("stay_id")),
        frame(stays, pl.lit("ICU_DISCHARGE"), pl.col("outtime"), pl.col("hadm_id"),
              pl.col("stay_id")),
    ]
    return pl.concat(parts, how="vertical").filter(
        pl.col("time").is_not_null() | pl.col("code").str.starts_with("GENDER//"))
