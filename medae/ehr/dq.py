"""The data-quality report of ``clean_ehr``: per variable and per source table, how many rows
were seen, converted, removed (no subject_id at ingest, outlier, unknown unit, no time, no
itemid, charted in error), clipped, deduplicated, text-only, outside any ICU stay, timed before
their admission and timed in the future.

``outside_stay``, ``before_admission`` and ``time_in_future`` flag rows that are *kept* (they
count among ``rows_written``): labs drawn in the emergency department before ``admittime`` or
outpatient labs between stays are real data, and a date beyond the reference time is shown for
review rather than silently dropped. Only ``REMOVALS`` take rows out of the store."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from medae.io import write_json_atomic, write_text_atomic

COUNTS = ("rows_seen", "unit_converted", "removed_no_subject", "removed_outlier",
          "removed_unknown_unit", "removed_no_time", "removed_no_item", "removed_error",
          "clipped", "duplicates", "text_only", "outside_stay", "before_admission",
          "time_in_future", "rows_written")
REMOVALS = ("removed_no_subject", "removed_outlier", "removed_unknown_unit", "removed_no_time",
            "removed_no_item", "removed_error", "duplicates")
# Filled outside the shard counts: at ingest, and against the whole source's reference time.
RUN_LEVEL = ("removed_no_subject", "time_in_future")
FLAG_OF = {"unit_converted": "f_converted", "removed_outlier": "f_outlier",
           "removed_unknown_unit": "f_unknown_unit", "removed_no_time": "f_no_time",
           "removed_no_item": "f_no_item",
           "removed_error": "f_error", "clipped": "f_clipped", "text_only": "f_text_only"}


def count_flags(flagged: pl.LazyFrame, kept: pl.LazyFrame) -> pl.LazyFrame:
    """Per (table, variable) counts for one shard; ``variable`` is null for raw codes.

    ``flagged`` holds every source row with its ``f_*`` flags, ``kept`` the rows that passed
    the removals with ``f_duplicate``, ``f_outside_stay`` and ``f_before_admission``.
    ``time_in_future`` needs the reference time of the whole source, so :func:`future_rows`
    adds it after all shards ran.
    """
    keys = ["table", "var"]
    seen = flagged.group_by(*keys).agg(
        pl.len().alias("rows_seen"),
        *[pl.col(flag).sum().alias(name) for name, flag in FLAG_OF.items()],
    )
    written = ~pl.col("f_duplicate")
    after = kept.group_by(*keys).agg(
        pl.col("f_duplicate").sum().alias("duplicates"),
        (pl.col("f_outside_stay") & written).sum().alias("outside_stay"),
        (pl.col("f_before_admission") & written).sum().alias("before_admission"),
        written.sum().alias("rows_written"),
    )
    table = seen.join(after, on=keys, how="left", nulls_equal=True).fill_null(0)
    per_shard = [c for c in COUNTS if c not in RUN_LEVEL]
    return table.select(*keys, *[pl.col(c).cast(pl.Int64) for c in per_shard]).sort(
        keys, nulls_last=True)


def late_events(kept: pl.LazyFrame, after: datetime | None) -> pl.LazyFrame:
    """Written source rows later than ``after``, counted per ``(table, var, time)``.

    A shard cannot know the reference time of the whole source (the latest discharge of any
    subject), only a lower bound of it: its own latest discharge. Rows after that bound are
    few (normally none), so they are kept per timestamp and :func:`future_rows` counts those
    past the real reference once every shard is done, without recomputing any shard.

    >>> from datetime import datetime as dt
    >>> kept = pl.LazyFrame({"table": ["labevents"] * 3, "var": [None] * 3,
    ...     "time": [dt(2100, 1, 1), dt(2999, 1, 1), dt(2999, 1, 1)],
    ...     "f_duplicate": [False, False, True]})
    >>> late_events(kept, dt(2200, 1, 1)).collect().rows()
    [('labevents', None, datetime.datetime(2999, 1, 1, 0, 0), 1)]
    """
    keys = ["table", "var", "time"]
    if after is None:
        return kept.select(keys).clear().with_columns(n=pl.lit(0, pl.Int64))
    return (kept.filter(~pl.col("f_duplicate") & (pl.col("time") > after)).group_by(keys)
            .agg(pl.len().cast(pl.Int64).alias("n")).sort(keys, nulls_last=True))


def future_rows(late: Iterable[dict[str, Any]], reference: datetime | None) -> list[dict[str, Any]]:
    """``time_in_future`` count rows (for :func:`merge_counts`) from :func:`late_events` rows.

    >>> from datetime import datetime as dt
    >>> late = [{"table": "labevents", "var": None, "time": "2999-01-01T00:00:00", "n": 2}]
    >>> future_rows(late, dt(2200, 1, 1))
    [{'table': 'labevents', 'var': None, 'time_in_future': 2}]
    >>> future_rows(late, dt(3000, 1, 1))
    []
    """
    totals: dict[tuple[str, str | None], int] = {}
    for row in late if reference is not None else ():
        if datetime.fromisoformat(str(row["time"])) > reference:
            key = (row["table"], row["var"])
            totals[key] = totals.get(key, 0) + int(row["n"])
    return [{"table": t, "var": v, "time_in_future": n} for (t, v), n in totals.items()]


def merge_counts(shard_rows: Iterable[list[dict[str, Any]]], ingested: Iterable[str] = (),
                 no_subject: dict[str, int] | None = None) -> dict[str, Any]:
    """Sum the per-shard rows into ``{"tables": {...}, "variables": {...}}``.

    Every ``ingested`` event table is listed, even with no rows; ``no_subject`` adds the rows
    ingest dropped for want of a subject_id (they count as seen, and removed).

    >>> merge_counts([], ["labevents"], {"labevents": 2})["tables"]["labevents"]["rows_seen"]
    2
    """
    tables: dict[str, dict[str, int]] = {t: dict.fromkeys(COUNTS, 0) for t in ingested}
    for table, n in (no_subject or {}).items():
        acc = tables.setdefault(table, dict.fromkeys(COUNTS, 0))
        acc["rows_seen"] += n
        acc["removed_no_subject"] += n
    variables: dict[str, dict[str, int]] = {}
    for rows in shard_rows:
        for row in rows:
            for bucket, key in ((tables, row["table"]), (variables, row["var"])):
                if key is None:
                    continue
                acc = bucket.setdefault(key, dict.fromkeys(COUNTS, 0))
                for c in COUNTS:
                    acc[c] += int(row.get(c, 0))
    return {"tables": dict(sorted(tables.items())), "variables": dict(sorted(variables.items()))}


def _reference_phrase(reference: dict[str, Any]) -> str:
    """How the markdown names the ``time_in_future`` bound: a configured date as it is, but
    never a patient's discharge time (the JSON twin keeps the value for the engineer).

    >>> _reference_phrase({"max_event_time": "2180-01-01T00:00:00", "source": "latest x"})
    'the latest admissions.dischtime in the source'
    """
    if reference.get("source") == "clean_ehr.max_event_time":
        return f"clean_ehr.max_event_time ({reference['max_event_time']})"
    return "the latest admissions.dischtime in the source"


def write_report(path: Path, report: dict[str, Any]) -> None:
    """``<path>`` as JSON and a markdown twin beside it (same name, ``.md``)."""
    write_json_atomic(path, report)
    lines = ["# EHR data quality (clean_ehr)", "",
             f"Removal reasons: {', '.join(REMOVALS)}. Converted and clipped rows are counted "
             "before duplicates are removed. outside_stay, before_admission (earlier than the "
             "admittime of the row's hadm_id) and time_in_future (later than "
             f"{_reference_phrase(report.get('time_reference', {}))}"
             ") are kept in the store and counted for review.", ""]
    for title, key in (("Source tables", "tables"), ("Dictionary variables", "variables")):
        lines += [f"## {title}", "", "| name | " + " | ".join(COUNTS) + " |",
                  "|---" * (len(COUNTS) + 1) + "|"]
        for name, counts in report[key].items():
            lines.append(f"| {name} | " + " | ".join(str(counts[c]) for c in COUNTS) + " |")
        lines.append("")
    unparsed = report.get("unparseable_cells", {})
    lines += ["## Unparseable cells", "",
              "Cells ingest could not read as their column's type (an id, a time, a number); "
              "they were read as empty." if unparsed else "None: every cell was read.", ""]
    lines += [f"- {table}.{column}: {n}" for table, counts in unparsed.items()
              for column, n in counts.items()]
    write_text_atomic(path.with_suffix(".md"), "\n".join([*lines, ""]))
