"""ICU stays for other areas (the waveform linkage): read from the ``ingest_ehr`` output."""

from __future__ import annotations

from typing import Any

import polars as pl

from medae.ehr.stay_checks import ambiguous_stays, screen_stays
from medae.io import check_finished

STAYS_SCHEMA = pl.Schema({"subject_id": pl.Int64, "hadm_id": pl.Int64, "stay_id": pl.Int64,
                          "intime": pl.Datetime("us"), "outtime": pl.Datetime("us")})


def load_stays(params: Any) -> pl.DataFrame | None:
    """All ICU stays, sorted by ``subject_id, intime, stay_id``; None before ``ingest_ehr`` ran.

    Columns: ``subject_id, hadm_id, stay_id`` (int64), ``intime, outtime`` (timestamp[us]).
    The stays ``featurize_ehr`` windows (:func:`~medae.ehr.stay_checks.screen_stays`): none
    without an intime or outtime, none under two subjects, duplicated or conflicting.
    """
    check_finished(params.path(params.ingest_ehr.out), "ingest_ehr")
    folder = params.path(params.ingest_ehr.out) / "icustays"
    files = sorted(folder.glob("shard_*.parquet")) if folder.is_dir() else []
    if not files:
        return None
    rows = pl.scan_parquet(files).select([pl.col(n).cast(t) for n, t in STAYS_SCHEMA.items()])
    kept, _ = screen_stays(rows.collect(), ambiguous_stays(files))
    return kept.sort("subject_id", "intime", "stay_id")
