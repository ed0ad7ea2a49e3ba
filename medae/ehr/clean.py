"""Stage ``clean_ehr``: ingested tables -> a MEDS 0.4 store and a data-quality report.

Per shard (run through :func:`medae.executor.map_items`): lab, chart and output events are mapped
through the variable dictionary (:mod:`medae.ehr.events`), removals and conversions are counted,
events are attached to ICU stays, exact duplicates dropped, and the shard is written sorted by
subject and time as ``<out>/data/shard_NNNN.parquet``. Then, over all shards:
``metadata/codes.parquet`` (every code with a description), ``metadata/subject_splits.parquet``
and ``metadata/dataset.json``, and the report ``reports/dq_ehr.{json,md}``.

A shard whose ingested files and dictionary are unchanged is not recomputed and its file is left
untouched; its counts and codes come from ``<out>/_fingerprints.json``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import polars as pl

from medae.ehr.dictionary import load_dictionary
from medae.ehr.dq import count_flags, future_rows, late_events, merge_counts, write_report
from medae.ehr.events import (
    MEDS_SCHEMA,
    RAW_PREFIX,
    apply_dictionary,
    assign_stays,
    flag_before_admission,
    sort_and_flag_duplicates,
    source_events,
    structural_events,
)
from medae.ehr.meds import assign_splits, code_metadata, write_dataset_json, write_parquet_atomic
from medae.ehr.shards import digest, files_digest, load_fingerprints, save_fingerprints, shard_name
from medae.ehr.tables import SUBJECT_TABLES, TABLES, canonical_schema
from medae.errors import DataError
from medae.executor import map_items
from medae.io import atomic_path, check_finished, unfinished

log = logging.getLogger(__name__)

FORMAT_VERSION = 3
KEEP_COLUMNS = [*MEDS_SCHEMA.names(), "table", "var", "f_converted", "f_unknown_unit",
                "f_outlier", "f_clipped", "f_text_only", "f_no_time", "f_no_item", "f_error"]


def _scan(raw: Path, table: str, shard: int) -> pl.LazyFrame:
    """One ingested shard, or an empty typed frame when the table was not ingested."""
    path = raw / table / f"{shard_name(shard)}.parquet"
    if path.exists():
        return pl.scan_parquet(path)
    return pl.LazyFrame(schema=canonical_schema(TABLES[table]))


def clean_shard(item: dict[str, Any]) -> dict[str, Any]:
    """Clean one shard and write its MEDS file (module-level: runs in executor workers)."""
    raw, out, shard = Path(item["raw"]), Path(item["out"]), int(item["shard"])
    dictionary = load_dictionary(item["dictionary"])
    stays, admissions = _scan(raw, "icustays", shard), _scan(raw, "admissions", shard)
    events = pl.concat([source_events(_scan(raw, t, shard), t) for t in RAW_PREFIX])
    flagged = apply_dictionary(events, dictionary).select(KEEP_COLUMNS)
    removed = (pl.col("f_outlier") | pl.col("f_unknown_unit") | pl.col("f_no_time")
               | pl.col("f_no_item") | pl.col("f_error"))
    carried = [*MEDS_SCHEMA.names(), "table", "var", "f_outside_stay", "f_before_admission"]
    source_rows = flag_before_admission(assign_stays(flagged.filter(~removed), stays),
                                        admissions).select(carried)
    structural = structural_events(_scan(raw, "patients", shard), admissions,
                                   stays).with_columns(
        table=pl.lit(None, pl.String), var=pl.lit(None, pl.String), f_outside_stay=False,
        f_before_admission=False)
    ordered = sort_and_flag_duplicates(pl.concat([source_rows, structural.select(carried)],
                                                 how="vertical_relaxed"))
    # Collect the flagged rows and the sorted store once: both feed two outputs each, and
    # derived plans would each push their filters below the sort and redo the whole chain.
    # A shard fits in memory by design; the in-memory engine sorts and joins it about 1.5x
    # faster than the streaming one (measured: 0.22 vs 0.43 CPU s for the sort alone).
    flagged_df, ordered_df = pl.collect_all([flagged, ordered], engine="in-memory")
    kept = ordered_df.lazy().filter(pl.col("table").is_not_null())
    discharged = admissions.select(pl.col("dischtime").max()).collect().item()
    counts, late = pl.collect_all([
        count_flags(flagged_df.lazy(), kept),
        late_events(kept, _late_bound(discharged, item["max_event_time"])),
    ])
    meds = ordered_df.filter(~pl.col("f_duplicate")).select(MEDS_SCHEMA.names())
    target = out / "data" / f"{shard_name(shard)}.parquet"
    with atomic_path(target) as tmp:
        meds.write_parquet(tmp)
    return {"dq": counts.to_dicts(), "codes": meds["code"].unique().sort().to_list(),
            "rows": meds.height, "subjects": meds["subject_id"].n_unique(),
            "latest_discharge": discharged.isoformat() if discharged else None,
            "late": [{**r, "time": r["time"].isoformat()} for r in late.to_dicts()]}


def _late_bound(discharged: datetime | None, max_event_time: str | None) -> datetime | None:
    """Events after this may be in the future of the whole source: the earlier of this shard's
    latest discharge (the source's reference is at least that) and the configured bound."""
    bounds = [t for t in (discharged, max_event_time and datetime.fromisoformat(max_event_time))
              if t is not None]
    return min(bounds) if bounds else None


def _time_reference(cfg: Any, entries: dict[str, Any]) -> dict[str, Any]:
    """The time after which events count as ``time_in_future``, and where it came from."""
    if cfg.max_event_time is not None:
        return {"max_event_time": cfg.max_event_time.isoformat(),
                "source": "clean_ehr.max_event_time"}
    latest = [e["latest_discharge"] for e in entries.values() if e["latest_discharge"]]
    return {"max_event_time": max(latest, key=datetime.fromisoformat) if latest else None,
            "source": "latest admissions.dischtime"}


def _raw_state(params: Any) -> tuple[Path, dict[str, Any]]:
    raw = params.path(params.ingest_ehr.out)
    check_finished(raw, "ingest_ehr")
    state = load_fingerprints(raw)
    if not state.get("tables"):
        raise DataError(f"{raw}: no ingested EHR tables; run `medae run ingest_ehr` first")
    return raw, state


def _shard_fingerprint(raw: Path, shard: int, dictionary_digest: str,
                      max_event_time: str | None) -> str:
    files = [raw / t / f"{shard_name(shard)}.parquet" for t in SUBJECT_TABLES]
    return digest(files_digest(files), dictionary_digest, FORMAT_VERSION, max_event_time)


def _etl_version() -> str:
    try:
        return version("medae")
    except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "0+unknown"


def _write_metadata(params: Any, raw: Path, out: Path, dictionary: Any,
                    entries: dict[str, Any]) -> pl.DataFrame:
    """codes.parquet, subject_splits.parquet and dataset.json; returns the splits."""
    cfg = params.clean_ehr
    codes = {c for e in entries.values() for c in e["codes"]}
    write_parquet_atomic(code_metadata(codes, dictionary, raw), out / "metadata" / "codes.parquet")
    subjects = pl.read_parquet(raw / "patients" / "*.parquet")["subject_id"].to_list()
    splits = assign_splits(subjects, cfg.train_fraction, cfg.tuning_fraction, cfg.split_seed)
    write_parquet_atomic(splits, out / "metadata" / "subject_splits.parquet")
    data_version = digest(sorted(e["fingerprint"] for e in entries.values()))
    write_dataset_json(out / "metadata" / "dataset.json", cfg.dataset_name, data_version,
                       _etl_version())
    return splits


def _write_dq_report(params: Any, raw_state: dict[str, Any], dictionary: Any,
                     entries: dict[str, Any], splits: pl.DataFrame) -> None:
    cfg = params.clean_ehr
    reference = _time_reference(cfg, entries)
    limit = reference["max_event_time"] and datetime.fromisoformat(reference["max_event_time"])
    future = future_rows((r for e in entries.values() for r in e["late"]), limit)
    report = merge_counts([*(e["dq"] for e in entries.values()), future],
                          ingested=[t for t in RAW_PREFIX if t in raw_state["tables"]],
                          no_subject=raw_state.get("removed_no_subject", {}))
    # cells ingest could not read as their column's type (an id, a time, a number): now empty
    report["unparseable_cells"] = raw_state.get("unparsed", {})
    report["time_reference"] = reference
    report["splits"] = dict(sorted(splits.group_by("split").len().iter_rows()))
    report["dictionary"] = {"path": dictionary.path, "version": dictionary.version,
                            "digest": dictionary.digest}
    write_report(params.path(cfg.report), report)


def run(params: Any) -> dict[str, Any]:
    """Clean every changed shard, then rewrite the metadata and the DQ report."""
    cfg = params.clean_ehr
    raw, raw_state = _raw_state(params)
    shards = int(raw_state["shards"])
    out = params.path(cfg.out)
    dictionary = load_dictionary(params.path(cfg.dictionary) if cfg.dictionary else None)
    previous = load_fingerprints(out).get("shards", {})
    max_event_time = cfg.max_event_time.isoformat() if cfg.max_event_time else None
    entries: dict[str, Any] = {}
    todo = []
    for shard in range(shards):
        name = shard_name(shard)
        fp = _shard_fingerprint(raw, shard, dictionary.digest, max_event_time)
        old = previous.get(name)
        if old and old["fingerprint"] == fp and (out / "data" / f"{name}.parquet").exists():
            entries[name] = old
        else:
            todo.append({"raw": str(raw), "out": str(out), "shard": shard, "fingerprint": fp,
                         "dictionary": dictionary.path if cfg.dictionary else None,
                         "max_event_time": max_event_time})
    log.info("clean_ehr: %d shards, %d to recompute", shards, len(todo))
    with unfinished(out, "clean_ehr"):  # shards are replaced one by one
        results = map_items(clean_shard, todo, params.executor,
                            names=[shard_name(t["shard"]) for t in todo],
                            desc="clean_ehr shards",
                            threads=True)  # Polars releases the GIL: no interpreter per worker
        for item, result in zip(todo, results.values, strict=True):
            entries[shard_name(item["shard"])] = {"fingerprint": item["fingerprint"], **result}
        for stale in (out / "data").glob("shard_*.parquet"):
            if stale.stem not in entries:
                stale.unlink()
        splits = _write_metadata(params, raw, out, dictionary, entries)
        _write_dq_report(params, raw_state, dictionary, entries, splits)
        save_fingerprints(out, {"shards": dict(sorted(entries.items()))})
    return {"out": str(out), "shards": shards, "recomputed": [t["shard"] for t in todo],
            "rows": sum(e["rows"] for e in entries.values()),
            "codes": len({c for e in entries.values() for c in e["codes"]}),
            "report": str(params.path(cfg.report))}
