"""Stage ``ingest_ehr``: MIMIC tables -> typed Parquet under ``data/raw/ehr/``, sharded by subject.

Reads ``ehr.source`` (layout detected, see :mod:`medae.ehr.tables`) and writes, for every table
whose rows belong to a subject, ``<out>/<table>/shard_NNNN.parquet`` (one file per shard, empty
shards included so readers never special-case), and ``<out>/<table>.parquet`` for the item
dictionaries. Nothing is materialised: each table is one lazy scan streamed into a partitioned
sink. A table whose source file is unchanged (path, size, mtime) is skipped; a changed one is
re-streamed, but only the shard files whose rows changed are replaced, so unaffected shards keep
their bytes and downstream stages skip them.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from medae.ehr.shards import (
    load_fingerprints,
    same_content,
    save_fingerprints,
    shard_expr,
    shard_name,
)
from medae.ehr.tables import (
    SUBJECT_TABLES,
    TABLES,
    UNPARSED,
    TableSpec,
    canonical_schema,
    describe_error,
    detect_layout,
    find_table,
    read_header,
    resolve_columns,
    scan_table,
    unparsed_counts,
)
from medae.errors import DataError
from medae.executor import map_items
from medae.io import ensure_dir, staging_dir, unfinished

log = logging.getLogger(__name__)

# Bump when the ingest output format changes: every table is then re-ingested.
FORMAT_VERSION = 3  # 3: cells read as empty are counted (UNPARSED)


def shard_files(out: Path, table: str, shards: int) -> list[Path]:
    """The shard files of an ingested subject table, in shard order."""
    return [out / table / f"{shard_name(s)}.parquet" for s in range(shards)]


def source_fingerprint(path: Path, layout: str, shards: int) -> dict[str, Any]:
    """What decides whether a table must be re-ingested (cheap: no content read)."""
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "layout": layout, "shards": shards, "format": FORMAT_VERSION}


def _keep_if_changed(new: Path, target: Path) -> bool:
    """True when ``new`` must replace ``target``; else ``new`` is deleted (same rows)."""
    if same_content(target, new):
        new.unlink()
        return False
    return True


def _collect_partition(folder: Path, schema: pl.Schema, dest: Path) -> None:
    """Write the rows a partitioned sink left under ``folder`` (0..n files) to one file.

    The sink splits a shard by :data:`UNPARSED` too, so rows with a cell read as empty come
    after the others (in the sink's order, which is deterministic); a shard without any is one
    file, moved as it is.
    """
    parts = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
    if len(parts) == 1:
        os.replace(parts[0], dest)
    elif parts:
        pl.scan_parquet(parts).sink_parquet(dest)
    else:
        pl.DataFrame(schema=schema).write_parquet(dest)


# what reading a source table raises when the file is damaged or does not fit its schema
READ_ERRORS = (pl.exceptions.PolarsError, OSError, EOFError)


def _unreadable(path: Path, spec: TableSpec, exc: BaseException) -> DataError:
    return DataError(f"{path}: cannot be read as table '{spec.name}': {describe_error(exc)}")


def _rows_by_mask(parts: Path) -> dict[int, int]:
    """Rows per :data:`UNPARSED` value of a partitioned sink (from the footers only)."""
    rows: dict[int, int] = {}
    for folder in parts.glob(f"*/{UNPARSED}=*"):
        mask = int(folder.name.split("=", 1)[1])
        rows[mask] = rows.get(mask, 0) + _count_rows(folder)
    return rows


# how a warning names what an unreadable cell should have been
TYPE_WORDS = {pl.Int64(): "an integer", pl.Float64(): "a number",
              pl.Datetime("us"): "a date-time"}


def _warn_unparsed(path: Path, spec: TableSpec, counts: dict[str, int]) -> None:
    kinds = {c.name: TYPE_WORDS.get(c.dtype, str(c.dtype)) for c in spec.columns}
    for column, n in counts.items():
        log.warning("%s: %d cell(s) of column '%s' are not %s; read as empty", path, n,
                    column, kinds[column])


def ingest_table(item: dict[str, Any]) -> dict[str, Any]:
    """Read one table into ``item["staging"]`` (a module-level function: it runs in executor
    workers); :func:`run` publishes what every table staged once all of them succeeded.

    Returns the ``staged`` ``[new file, target]`` pairs (only files whose rows changed), the
    changed shards and the counts of rows without a subject and of unreadable cells.
    """
    spec = TABLES[item["table"]]
    path, out, shards = Path(item["path"]), Path(item["out"]), int(item["shards"])
    staging = ensure_dir(Path(item["staging"]) / spec.name)
    lf = scan_table(path, spec, item["layout"], flag_unparsed=True)
    if spec.name not in SUBJECT_TABLES:  # an item dictionary: small, read whole
        try:
            table = lf.sort("itemid").collect()
        except READ_ERRORS as exc:
            raise _unreadable(path, spec, exc) from None
        unparsed = unparsed_counts(spec, dict(table.group_by(UNPARSED).len().iter_rows()))
        fresh, target = staging / f"{spec.name}.parquet", out / f"{spec.name}.parquet"
        table.drop(UNPARSED).lazy().sink_parquet(fresh)  # the writer it always had
        _warn_unparsed(path, spec, unparsed)
        return {"table": spec.name, "changed_shards": [], "removed_no_subject": 0,
                "unparsed": unparsed, "staged": [[str(fresh), str(target)]]}
    try:
        lf.with_columns(shard_expr(shards)).sink_parquet(
            pl.PartitionBy(staging / "parts", key=["shard", UNPARSED], include_key=False,
                           approximate_bytes_per_file=None)
        )
        changed, staged = [], []
        for shard, target in enumerate(shard_files(out, spec.name, shards)):
            fresh = staging / target.name
            _collect_partition(staging / "parts" / f"shard={shard}", canonical_schema(spec),
                               fresh)
            if _keep_if_changed(fresh, target):
                changed.append(shard)
                staged.append([str(fresh), str(target)])
        # rows whose subject_id is empty or not a number land in the null partition
        no_subject = _count_rows(staging / "parts" / "shard=__HIVE_DEFAULT_PARTITION__")
        unparsed = unparsed_counts(spec, _rows_by_mask(staging / "parts"))
    except READ_ERRORS as exc:
        raise _unreadable(path, spec, exc) from None
    _warn_unparsed(path, spec, unparsed)
    if no_subject:
        log.warning("%s: %d rows without a valid subject_id dropped", path, no_subject)
    return {"table": spec.name, "changed_shards": changed, "removed_no_subject": no_subject,
            "unparsed": unparsed, "staged": staged}


def _publish(results: list[dict[str, Any]], out: Path, shards: int) -> None:
    """Move every staged file onto its target; drop shards beyond the shard count."""
    for result in results:
        for fresh, target in result["staged"]:
            ensure_dir(Path(target).parent)
            os.replace(fresh, target)
        for stale in (out / result["table"]).glob("shard_*.parquet"):
            if int(stale.stem.split("_")[1]) >= shards:  # left from a larger shard count
                stale.unlink()


def _count_rows(folder: Path) -> int:
    files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
    return pl.scan_parquet(files).select(pl.len()).collect().item() if files else 0


def _plan(params: Any) -> tuple[str, list[dict[str, Any]]]:
    """The layout and one work item per table found in the source."""
    source = params.path(params.ehr.source)
    layout = detect_layout(source, params.ehr.layout)
    out, shards = params.path(params.ingest_ehr.out), params.ingest_ehr.shards
    items = []
    for spec in TABLES.values():
        path = find_table(source, spec, layout)
        if path is None:
            if spec.required:
                raise DataError(f"{source}: required table '{spec.name}' not found "
                                f"({layout} layout)")
            log.warning("%s: optional table '%s' not found; continuing without it",
                        source, spec.name)
            continue
        # Headers are checked here, before any fan-out, so a bad file fails fast and alone.
        resolve_columns(path, read_header(path), spec, layout)
        items.append({"table": spec.name, "path": str(path), "layout": layout,
                      "out": str(out), "shards": shards,
                      "fingerprint": source_fingerprint(path, layout, shards)})
    return layout, items


def _outputs_present(out: Path, table: str, shards: int) -> bool:
    if table not in SUBJECT_TABLES:
        return (out / f"{table}.parquet").exists()
    return all(p.exists() for p in shard_files(out, table, shards))


def _drop_vanished(out: Path, present: set[str]) -> None:
    """Remove outputs of tables that are no longer in the source."""
    for name in TABLES:
        if name in present:
            continue
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        (out / f"{name}.parquet").unlink(missing_ok=True)


def run(params: Any) -> dict[str, Any]:
    """Ingest every table of ``ehr.source``; returns what was re-ingested and which shards
    changed per table."""
    layout, items = _plan(params)
    out, shards = params.path(params.ingest_ehr.out), params.ingest_ehr.shards
    out.mkdir(parents=True, exist_ok=True)
    previous_state = load_fingerprints(out)
    previous = previous_state.get("tables", {})
    todo = [it for it in items
            if previous.get(it["table"]) != it["fingerprint"]
            or not _outputs_present(out, it["table"], shards)]
    log.info("ingest_ehr: %s layout, %d tables, %d to (re)ingest", layout, len(items), len(todo))
    # Every table is read into one scratch folder first and published only when all of them
    # were read: a damaged file leaves every previous output as it was, never new admissions
    # beside old labs. Publishing itself (renames) is marked, so a kill there is noticed.
    with staging_dir(out) as staging:
        for it in todo:
            it["staging"] = str(staging)
        mapped = map_items(ingest_table, todo, params.executor,
                           names=[it["table"] for it in todo], desc="ingest_ehr tables",
                           on_error="collect", threads=True)  # one streaming query per table
        if mapped.failures:  # the file's own message, not the executor's summary of it
            first = mapped.failures[0].error
            raise DataError(first.split(": ", 1)[1] if first.startswith("DataError: ")
                            else first)
        results = [r for r in mapped.values if r]
        with unfinished(out, "ingest_ehr"):
            _publish(results, out, shards)
            _drop_vanished(out, {it["table"] for it in items})
            _save_state(out, layout, shards, items, results, previous_state)
    changed = {r["table"]: r["changed_shards"] for r in results}
    return {"layout": layout, "out": str(out), "tables": sorted(it["table"] for it in items),
            "reingested": sorted(changed), "changed_shards": changed}


def _save_state(out: Path, layout: str, shards: int, items: list[dict[str, Any]],
                results: list[dict[str, Any]], previous_state: dict[str, Any]) -> None:
    present = {it["table"] for it in items}
    # a table not re-ingested keeps the counts of the run that read it
    dropped = dict(previous_state.get("removed_no_subject", {}))
    dropped.update({r["table"]: r["removed_no_subject"] for r in results})
    unparsed = dict(previous_state.get("unparsed", {}))
    unparsed.update({r["table"]: r["unparsed"] for r in results})
    save_fingerprints(out, {
        "layout": layout, "shards": shards,
        "tables": {it["table"]: it["fingerprint"] for it in items},
        "removed_no_subject": {t: n for t, n in sorted(dropped.items()) if t in present},
        "unparsed": {t: n for t, n in sorted(unparsed.items()) if t in present and n},
    })
