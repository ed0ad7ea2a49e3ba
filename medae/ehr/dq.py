"""The data-quality report of ``clean_ehr``: per variable and per source table, how many rows
were seen, converted, removed (no subject_id at ingest, outlier, unknown unit, no time,
charted in error), clipped, deduplicated,
text-only and outside any ICU stay."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from medae.io import write_json_atomic, write_text_atomic

COUNTS = ("rows_seen", "unit_converted", "removed_no_subject", "removed_outlier",
          "removed_unknown_unit", "removed_no_time", "removed_error", "clipped", "duplicates",
          "text_only", "outside_stay", "rows_written")
REMOVALS = ("removed_no_subject", "removed_outlier", "removed_unknown_unit", "removed_no_time",
            "removed_error", "duplicates")
FLAG_OF = {"unit_converted": "f_converted", "removed_outlier": "f_outlier",
           "removed_unknown_unit": "f_unknown_unit", "removed_no_time": "f_no_time",
           "removed_error": "f_error", "clipped": "f_clipped", "text_only": "f_text_only"}


def count_flags(flagged: pl.LazyFrame, kept: pl.LazyFrame) -> pl.LazyFrame:
    """Per (table, variable) counts for one shard; ``variable`` is null for raw codes.

    ``flagged`` holds every source row with its ``f_*`` flags, ``kept`` the rows that passed
    the removals with ``f_duplicate`` and ``f_outside_stay``.
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
        written.sum().alias("rows_written"),
    )
    table = seen.join(after, on=keys, how="left", nulls_equal=True).fill_null(0)
    per_shard = [c for c in COUNTS if c != "removed_no_subject"]  # that one is ingest's
    return table.select(*keys, *[pl.col(c).cast(pl.Int64) for c in per_shard]).sort(
        keys, nulls_last=True)


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


def write_report(path: Path, report: dict[str, Any]) -> None:
    """``<path>`` as JSON and a markdown twin beside it (same name, ``.md``)."""
    write_json_atomic(path, report)
    lines = ["# EHR data quality (clean_ehr)", "",
             f"Removal reasons: {', '.join(REMOVALS)}. Converted and clipped rows are counted "
             "before duplicates are removed.", ""]
    for title, key in (("Source tables", "tables"), ("Dictionary variables", "variables")):
        lines += [f"## {title}", "", "| name | " + " | ".join(COUNTS) + " |",
                  "|---" * (len(COUNTS) + 1) + "|"]
        for name, counts in report[key].items():
            lines.append(f"| {name} | " + " | ".join(str(counts[c]) for c in COUNTS) + " |")
        lines.append("")
    write_text_atomic(path.with_suffix(".md"), "\n".join(lines))
