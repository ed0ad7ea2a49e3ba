"""Which ICU stays ``featurize_ehr`` windows: ``icustays`` rows checked before any window.

A stay is left out, counted by reason and never silently, when its rows cannot be trusted:

- ``duplicate_rows``: an exact copy of another row (the copy is dropped, the stay kept);
- ``conflicting_rows``: one ``stay_id`` with two different rows (which times are right?);
- ``claimed_by_two_subjects``: one ``stay_id`` under two ``subject_id`` values, which ingest
  shards apart (:func:`ambiguous_stays` finds them across shards);
- ``no_times``: ``intime`` or ``outtime`` empty (or unreadable at ingest);
- ``ends_before_start``: ``outtime`` before ``intime``.

Without these checks a duplicated row gave each of its windows twice (one of them empty), and
a stay under two subjects landed in two splits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import polars as pl

REASONS = ("duplicate_rows", "conflicting_rows", "claimed_by_two_subjects", "no_times",
           "ends_before_start")


def ambiguous_stays(icustays: Sequence[Path]) -> list[int]:
    """The ``stay_id`` values that name more than one subject in the ingested shards.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> pl.DataFrame({"subject_id": [1, 2], "stay_id": [7, 8]}).write_parquet(d / "a.parquet")
    >>> pl.DataFrame({"subject_id": [3], "stay_id": [7]}).write_parquet(d / "b.parquet")
    >>> ambiguous_stays([d / "a.parquet", d / "b.parquet"])
    [7]
    """
    if not icustays:
        return []
    claims = pl.scan_parquet(list(icustays)).group_by("stay_id").agg(
        pl.col("subject_id").n_unique().alias("subjects"))
    return sorted(claims.filter(pl.col("subjects") > 1).collect()["stay_id"].to_list())


def screen_stays(stays: pl.DataFrame, ambiguous: Collection[int] = ()
                 ) -> tuple[pl.DataFrame, dict[str, int]]:
    """The rows of ``stays`` (ingested ``icustays``) that can be windowed, in their order, and
    how many stays (rows for ``duplicate_rows``) each reason of :data:`REASONS` left out.

    >>> from datetime import datetime as dt
    >>> rows = pl.DataFrame({"subject_id": [1, 1, 1, 1, 2, 2], "stay_id": [5, 5, 6, 6, 7, 8],
    ...     "intime": [dt(2100, 1, 1)] * 5 + [dt(2100, 1, 9)],
    ...     "outtime": [dt(2100, 1, 2)] * 3 + [dt(2100, 1, 3), None, dt(2100, 1, 8)]})
    >>> kept, left_out = screen_stays(rows)
    >>> kept["stay_id"].to_list(), {k: n for k, n in left_out.items() if n}
    ([5], {'duplicate_rows': 1, 'conflicting_rows': 1, 'no_times': 1, 'ends_before_start': 1})
    """
    counts = dict.fromkeys(REASONS, 0)
    unique = stays.unique(maintain_order=True)
    counts["duplicate_rows"] = stays.height - unique.height
    claimed = unique["stay_id"].is_in(list(ambiguous))
    counts["claimed_by_two_subjects"] = unique.filter(claimed)["stay_id"].n_unique()
    unique = unique.filter(~claimed)
    repeated = unique["stay_id"].is_duplicated()
    counts["conflicting_rows"] = unique.filter(repeated)["stay_id"].n_unique()
    unique = unique.filter(~repeated)
    no_times = unique["intime"].is_null() | unique["outtime"].is_null()
    counts["no_times"] = int(no_times.sum())
    unique = unique.filter(~no_times)
    backwards = unique["outtime"] < unique["intime"]
    counts["ends_before_start"] = int(backwards.sum())
    return unique.filter(~backwards), counts
