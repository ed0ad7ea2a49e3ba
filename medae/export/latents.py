"""Stage ``export_latents``: each modality's champion encoder -> ``data/latents/<modality>/``.

One output part per input window file (``part_0003.parquet`` <- ``ehr_windows/part_0003.parquet``,
``<record>.parquet`` <- ``waveform_windows/<record>.parquet``), so a refresh after new data
re-encodes only the new or changed files: ``data/latents/_fingerprints.json`` maps each input
file to a hash of its bytes, the model version and the params, and unchanged parts are
hard-linked from the previous table; ``export_latents.cache`` keeps those byte hashes by file
stamp (:func:`file_digests`). Each table folder is published atomically (written beside,
swapped in), so a reader never sees a half-written table.

Throughput: only the columns the keys and the model inputs need are read (``delta``, ``split``
and labels are never decoded), and the files to encode are spread over one worker thread per
CPU core, each running the model on one torch intra-op thread. Decoding the Parquet list
columns costs almost as much CPU as the forward pass, and torch's default multi-thread forward
waits at every OpenMP barrier whenever anything else is runnable (Arrow's and Polars' threads,
other processes): measured 2-3x slower than the same batches on one thread per core at load
~10. One thread per worker keeps every core busy with no barrier (docs/refresh.md, figures).

Table layout (DESIGN.md latent contract): key columns, ``z_00..z_NN`` float32, lineage columns
``model_name``, ``model_version``, ``mlflow_run_id``. The table folders hold Parquet only
(Polars 2 refuses to scan a folder holding any other file), so the manifests live beside them
in ``data/latents/_manifest.json``, one entry per table: ``read_manifest(table_dir)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medae.errors import DataError, MedaeError, error_reason
from medae.executor import usable_cores
from medae.io import (
    DIGESTS,
    atomic_dir,
    check_finished,
    file_digests,
    read_state,
    write_json_atomic,
)
from medae.privacy.protection import Protection
from medae.privacy.record_names import hide_record_file
from medae.training.encode import EHR_PARTS, Frame, arrow_column, arrow_columns

log = logging.getLogger(__name__)

FINGERPRINTS = "_fingerprints.json"
EMPTY = "empty:"  # marks, in the fingerprints, an input file that gave no part
MANIFEST = "_manifest.json"
EHR_KEYS = ("subject_id", "hadm_id", "stay_id", "window_start", "window_end")
WAVEFORM_KEYS = ("subject_id", "stay_id", "record_name", "channel", "window_start", "window_end",
                 "start_s")
# What export reads of a windows file: the key columns (a waveform window's end is computed
# from ``fs`` and the sample count) and the model inputs (docs/contracts.md).
READ_COLUMNS = {
    "ehr": (*EHR_KEYS, *EHR_PARTS),
    "waveforms": (*(k for k in WAVEFORM_KEYS if k != "window_end"), "fs", "values"),
}


class Encoder(Protocol):
    """What ``medae.training.encode.load_encoder`` returns (docs/contracts.md)."""

    input_kind: str

    def encode(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ModelRef:
    """The registry entry behind an alias, for lineage columns and the manifest."""

    name: str
    version: int
    run_id: str
    uri: str


@dataclass(frozen=True)
class Modality:
    """Where a modality's windows are, which params shaped them, how to build model inputs."""

    name: str
    windows: Path
    upstream_section: str
    inputs: Callable[[Frame], np.ndarray]  # gets the Arrow batches of iter_windows
    # columns to read; None = ``READ_COLUMNS[name]`` (every column for an unknown modality)
    columns: tuple[str, ...] | None = None
    # A part that depends on more than its own input file (multimodal: the waveform files of
    # its stays) adds their hash to its fingerprint, and encodes itself (medae.export.multimodal)
    extra_fingerprints: Callable[[Sequence[Path]], dict[str, str]] | None = None
    encode: Callable[[Path, Encoder, ModelRef, int], pl.DataFrame | None] | None = None
    # input files named after records (``<record>.parquet``): MIMIC record names embed the
    # subject id, so pseudonymisation renames their parts (Protection.part_name)
    named_by_record: bool = False

    def read_columns(self) -> tuple[str, ...] | None:
        return self.columns if self.columns is not None else READ_COLUMNS.get(self.name)


def latent_names(width: int) -> list[str]:
    """Latent column names, zero-padded to at least two digits.

    >>> latent_names(3)
    ['z_00', 'z_01', 'z_02']
    >>> latent_names(101)[-1]
    'z_100'
    """
    digits = max(2, len(str(width - 1)))
    return [f"z_{i:0{digits}d}" for i in range(width)]


# key sources: the samples per waveform window (``window_end`` is computed from them and ``fs``)
SAMPLES = "__samples"


def key_source(windows: Frame, kind: str) -> pa.Table:
    """What :func:`key_frame` reads of a windows table, kept in Arrow without a copy: the key
    columns and, for waveforms, ``fs`` and the samples per window (not the samples).

    >>> key_source(pa.record_batch({"subject_id": [1], "hadm_id": [2], "stay_id": [3],
    ...     "window_start": [0], "window_end": [1], "values": [[0.5, 0.1]]}), "ehr").column_names
    ['subject_id', 'hadm_id', 'stay_id', 'window_start', 'window_end']
    """
    if kind == "waveforms":
        samples = pc.list_value_length(arrow_column(windows, "values", "waveform windows"))
        table = arrow_columns(windows, [k for k in WAVEFORM_KEYS if k != "window_end"] + ["fs"],
                              "waveform windows")
        return table.append_column(SAMPLES, samples)
    return arrow_columns(windows, EHR_KEYS, "EHR windows")


def keys_of(sources: Sequence[pa.Table], kind: str) -> pl.DataFrame:
    """The key columns, typed per the latent contract, of the windows whose
    :func:`key_source` tables are ``sources`` (in order): one conversion to Polars for all.

    Waveform windows carry no end time: it is ``window_start + n_samples / fs``.
    """
    keys = WAVEFORM_KEYS if kind == "waveforms" else EHR_KEYS
    frame = pl.from_arrow(pa.concat_tables(sources))
    if kind == "waveforms":
        seconds = frame[SAMPLES].cast(pl.Float64) / frame["fs"]
        frame = frame.with_columns(
            window_end=pl.col("window_start")
            + pl.duration(microseconds=(seconds * 1e6).round().cast(pl.Int64))
        )
    types = {"subject_id": pl.Int64, "hadm_id": pl.Int64, "stay_id": pl.Int64,
             "record_name": pl.String, "channel": pl.String, "start_s": pl.Float64,
             "window_start": pl.Datetime("us"), "window_end": pl.Datetime("us")}
    return frame.select(pl.col(k).cast(types[k]) for k in keys)


def key_frame(windows: Frame, kind: str) -> pl.DataFrame:
    """The key columns of a windows table (a Polars frame or an Arrow batch), typed per the
    latent contract; only the key columns are converted to Polars.

    Waveform windows carry no end time: it is ``window_start + n_samples / fs``.

    >>> import datetime as dt
    >>> w = pl.DataFrame({"subject_id": [1], "stay_id": [None], "record_name": ["r1"],
    ...     "channel": ["ecg_ii"], "window_start": [dt.datetime(2020, 1, 1)], "start_s": [0.0],
    ...     "fs": [2.0], "values": [[0.0, 1.0, 2.0, 3.0]]})
    >>> key_frame(w, "waveforms")["window_end"].to_list()
    [datetime.datetime(2020, 1, 1, 0, 0, 2)]
    >>> key_frame(w.to_arrow(), "waveforms").equals(key_frame(w, "waveforms"))
    True
    """
    return keys_of([key_source(windows, kind)], kind)


def _check_latents(z: np.ndarray, windows: int, where: str = "") -> np.ndarray:
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[0] != windows:
        raise MedaeError(f"{where}encoder returned shape {z.shape} for {windows} windows; "
                         f"expected (rows, latent)")
    return z


def latent_frame(keys: pl.DataFrame, z: np.ndarray, ref: ModelRef) -> pl.DataFrame:
    """Keys + ``z_NN`` float32 + lineage columns, row for row.

    >>> k = pl.DataFrame({"subject_id": [7, 8]})
    >>> ref = ModelRef("medae-ehr", 3, "abc", "models:/medae-ehr@champion")
    >>> latent_frame(k, np.ones((2, 2)), ref).columns
    ['subject_id', 'z_00', 'z_01', 'model_name', 'model_version', 'mlflow_run_id']
    """
    z = _check_latents(z, keys.height)
    # one contiguous array per latent column: Polars takes the columns as they are, where
    # rows would be split into columns element by element, holding the GIL
    latents = pl.from_numpy(np.ascontiguousarray(z.T), schema=latent_names(z.shape[1]),
                            orient="col")
    lineage = [pl.lit(ref.name).alias("model_name"),
               pl.lit(ref.version, dtype=pl.Int64).alias("model_version"),
               pl.lit(ref.run_id).alias("mlflow_run_id")]
    return pl.concat([keys, latents], how="horizontal").with_columns(lineage)


class LatentRows:
    """One file's latent table, gathered batch by batch and built once at the end.

    Each batch keeps only its key columns (Arrow, no copy) and its latents. Building Polars
    frames costs about a millisecond of GIL-held time per frame whatever its size, and
    export's worker threads queue for the GIL: on a GPU host that, not the cores, bounds
    export (docs/refresh.md). Once per file instead of once per batch.

    >>> rows = LatentRows("ehr")
    >>> keys = {"subject_id": [1, 1], "hadm_id": [2, 2], "stay_id": [3, 3],
    ...         "window_start": [0, 1], "window_end": [1, 2]}
    >>> rows.add(pa.record_batch(keys), np.zeros((2, 2)), has_waveform=np.array([True, False]))
    >>> rows.add(pa.record_batch(keys), np.ones((2, 2)), has_waveform=np.array([False, False]))
    >>> frame = rows.frame(ModelRef("medae-ehr", 3, "abc", "models:/medae-ehr@champion"))
    >>> frame.select("has_waveform", "z_01").rows()
    [(True, 0.0), (False, 0.0), (False, 1.0), (False, 1.0)]
    >>> LatentRows("ehr").frame(None) is None
    True
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._keys: list[pa.Table] = []
        self._latents: list[np.ndarray] = []
        self._extra: dict[str, list[np.ndarray]] = {}

    def add(self, windows: Frame, z: np.ndarray, where: str = "", **extra: np.ndarray
            ) -> None:
        """One batch of windows (only their key columns are kept), its latents and any extra
        key columns (``has_waveform``), row for row; ``where`` prefixes an error (file, batch)."""
        z = _check_latents(z, len(windows), where)
        if sorted(extra) != sorted(self._extra) and self._latents:
            raise MedaeError(f"{where}extra columns {sorted(extra)} differ from the earlier "
                             f"batches' {sorted(self._extra)}")
        for name, values in extra.items():
            if len(values) != len(windows):
                raise MedaeError(f"{where}extra column '{name}' has {len(values)} rows for "
                                 f"{len(windows)} windows")
        self._latents.append(z)
        self._keys.append(key_source(windows, self.kind))
        for name, values in extra.items():
            self._extra.setdefault(name, []).append(np.asarray(values))

    def frame(self, ref: ModelRef, where: str = "") -> pl.DataFrame | None:
        """The latent table of every batch added, in order; None when none was."""
        if not self._latents:
            return None
        try:
            keys = keys_of(self._keys, self.kind)
        except (pa.ArrowException, pl.exceptions.PolarsError) as exc:
            # e.g. batches whose key columns differ in type: name the file, not just Arrow's
            raise DataError(f"{where}cannot build the latent table's keys "
                            f"({error_reason(exc)})") from None
        keys = keys.with_columns(
            pl.Series(name, np.concatenate(parts)) for name, parts in self._extra.items())
        return latent_frame(keys, np.concatenate(self._latents), ref)


def meds_events(latents: pl.DataFrame) -> pl.DataFrame:
    """Latent table -> MEDS events: one row per window and dimension, code
    ``LATENT//<model>//dNN``, time = window end (when the latent is known), sorted by subject
    and time.

    >>> import datetime as dt
    >>> t = pl.DataFrame({"subject_id": [1], "stay_id": [5],
    ...     "window_end": [dt.datetime(2020, 1, 2)], "z_00": [0.5], "z_01": [-1.0],
    ...     "model_name": ["medae-ehr"]}, schema_overrides={"z_00": pl.Float32,
    ...     "z_01": pl.Float32})
    >>> meds_events(t)["code"].to_list()
    ['LATENT//medae-ehr//d00', 'LATENT//medae-ehr//d01']
    """
    zcols = [c for c in latents.columns if c.startswith("z_")]
    long = latents.select("subject_id", "stay_id", "window_end", "model_name", *zcols).unpivot(
        index=["subject_id", "stay_id", "window_end", "model_name"], on=zcols,
        variable_name="dim", value_name="numeric_value",
    )
    return long.select(
        pl.col("subject_id"),
        pl.col("window_end").alias("time"),
        pl.format("LATENT//{}//d{}", pl.col("model_name"), pl.col("dim").str.slice(2))
        .alias("code"),
        pl.col("numeric_value").cast(pl.Float32),
        pl.col("stay_id"),
    ).sort("subject_id", "time", "code", maintain_order=True, nulls_last=False)


def iter_windows(path: Path, batch_rows: int, columns: Sequence[str] | None = None, *,
                 reader_threads: bool = True) -> Iterator[pa.RecordBatch]:
    """Stream a windows Parquet file in Arrow batches of at most ``batch_rows`` rows.

    Only ``columns`` are decoded (all when None); a column the file lacks is simply not read,
    so the input builder names it in its own error. The batches stay in Arrow: the model
    inputs are read from its list buffers (``medae.training.encode.list_values``) and only
    the keys become Polars, once per file (:class:`LatentRows`). ``reader_threads``: decode
    the columns on Arrow's thread pool (off to measure one thread's CPU time).
    """
    try:
        reader = pq.ParquetFile(path)
        present = set(reader.schema_arrow.names)
        wanted = None if columns is None else [c for c in columns if c in present]
        yield from reader.iter_batches(batch_size=batch_rows, columns=wanted,
                                       use_threads=reader_threads)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read windows Parquet ({error_reason(exc)})") from None


def encode_file(path: Path, modality: Modality, encoder: Encoder, ref: ModelRef,
                batch_rows: int) -> pl.DataFrame | None:
    """All windows of one input file -> its latent table (input row order kept).

    A waveform model is trained on one channel (``encoder.channel``): only that channel's
    windows are encoded. Returns ``None`` when the file has no window to encode.
    """
    try:
        return _encode_file(path, modality, encoder, ref, batch_rows)
    except DataError as exc:
        # the encoder and the input builders do not know the file: name it
        message = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
        if modality.named_by_record:
            # a waveform file is named after its record, and MIMIC record names embed the
            # subject id: the message names the file by its place in its folder instead
            message = hide_record_file(message, path)
        raise DataError(message) from None


def _encode_file(path: Path, modality: Modality, encoder: Encoder, ref: ModelRef,
                 batch_rows: int) -> pl.DataFrame | None:
    channel = getattr(encoder, "channel", None) if modality.name == "waveforms" else None
    latents = LatentRows(modality.name)
    for n, batch in enumerate(iter_windows(path, batch_rows, modality.read_columns())):
        if channel is not None:
            batch = batch.filter(pc.equal(arrow_column(batch, "channel", "waveform windows"),
                                          channel))
        if batch.num_rows == 0:
            continue
        inputs = modality.inputs(batch)
        if len(inputs) != batch.num_rows:
            raise DataError(f"{path}: batch {n}: input builder returned {len(inputs)} rows "
                            f"for {batch.num_rows} windows")
        latents.add(batch, encoder.encode(np.ascontiguousarray(inputs, dtype=np.float32)),
                    where=f"{path}: batch {n}: ")
        # Free this batch's decoded columns before the next one is decoded (``latents`` keeps
        # only its key columns): one decoded batch alive per worker, not two, and the
        # allocator reuses the pages it just got back instead of faulting in fresh ones.
        del batch, inputs
    return latents.frame(ref, where=f"{path}: ")


def _cores() -> int:
    """The CPU cores a forward pass may use: torch's own count when torch is loaded."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.get_num_threads()
    return usable_cores()


def _limit_intra_op_threads(threads: int) -> None:
    """Run this thread's torch operations on ``threads`` threads (a per-thread setting).

    Never imports torch: an encoder that needs it has loaded it before the workers start.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def plan_workers(files: int, workers: int | None = None) -> tuple[int, int]:
    """(worker threads, torch intra-op threads each) for ``files`` files to encode.

    Default: one worker per core, never more workers than files, and the cores shared out
    among the workers, so that readers and forward passes never outnumber the cores.

    >>> plan_workers(8, workers=2)[0], plan_workers(1, workers=4)[0]
    (2, 1)
    """
    cores = _cores()
    workers = max(1, min(workers or cores, files))
    return workers, max(1, cores // workers)


def encode_files(paths: Sequence[Path], encode_one: Callable[[Path], object],
                 workers: int | None = None) -> None:
    """Run ``encode_one`` on every path on ``plan_workers`` threads.

    The first error stops the files not started yet and is raised once the running ones end
    (they write only into the staging folder, which the caller discards).

    >>> done = []
    >>> encode_files([Path("b"), Path("a")], done.append, workers=2)
    >>> sorted(p.name for p in done)
    ['a', 'b']
    """
    if not paths:
        return
    workers, threads = plan_workers(len(paths), workers)
    failed = threading.Event()

    def unless_failed(path: Path) -> None:
        if failed.is_set():
            return
        try:
            encode_one(path)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(workers, thread_name_prefix="medae-export",
                            initializer=_limit_intra_op_threads, initargs=(threads,)) as pool:
        futures = [pool.submit(unless_failed, path) for path in paths]
        for future in futures:  # in input order: the first failing file is reported
            future.result()


def _reuse_part(name: str, out_dir: Path, staging: Path, unchanged: bool) -> bool:
    """Carry the previous part ``name`` into ``staging`` when its input is unchanged."""
    old = out_dir / name
    if unchanged and old.exists():
        _link_or_copy(old, staging / name)
        return True
    return False


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # unchanged part: no bytes rewritten, cost follows the new data
    except OSError:
        shutil.copy2(src, dst)


def read_manifest(table_dir: Path) -> dict[str, Any]:
    """The manifest of one latent table (``<out>/_manifest.json``, keyed by table name)."""
    return read_state(Path(table_dir).parent / MANIFEST).get(Path(table_dir).name, {})


def _set_entry(index_file: Path, key: str, value: Any) -> None:
    """Replace one table's entry of a JSON index beside the tables (None removes it)."""
    index = read_state(index_file)
    if value is None:
        index.pop(key, None)
    else:
        index[key] = value
    write_json_atomic(index_file, index)


def export_modality(modality: Modality, encoder: Encoder, ref: ModelRef, out_dir: Path, *,
                    meds_dir: Path | None = None, **options: Any) -> dict[str, Any]:
    """Encode every windows file of ``modality`` into ``out_dir`` (atomic, incremental):
    :func:`staged_export`, published at once, then the MEDS events into ``meds_dir`` when
    given. Returns the manifest."""
    with staged_export(modality, encoder, ref, out_dir, **options) as published:
        pass
    if meds_dir is not None:
        write_meds(out_dir, meds_dir, options.get("protection"))
    return published


@contextmanager
def staged_export(modality: Modality, encoder: Encoder, ref: ModelRef, out_dir: Path, *,
                  params_hash: str, batch_rows: int,
                  protection: Protection | None = None,
                  workers: int | None = None,
                  cache: Path | None = None) -> Iterator[dict[str, Any]]:
    """Encode every windows file of ``modality`` into a table staged beside ``out_dir``; it
    replaces ``out_dir`` when the ``with`` block ends, and is discarded if the block raises
    (so several tables can be published together or not at all: after the swap only two
    small JSON entries are written, and derived outputs such as MEDS events come after every
    table is published). Incremental: unchanged input files' parts are carried over.

    ``protection`` pseudonymises and/or encrypts the parts (medae.privacy; default: neither).
    ``cache``: folder of the input digests kept by file stamp (:func:`file_digests`).
    ``workers``: files encoded at a time (default one per core, see :func:`plan_workers`);
    the parts are the same bytes whatever the number.
    Yields the manifest with the files encoded and reused; the manifest goes to
    ``out_dir.parent/_manifest.json[out_dir.name]`` once published.
    """
    protection = protection or Protection()
    check_finished(modality.windows)
    inputs = sorted(modality.windows.glob("*.parquet"))
    if not inputs:
        raise DataError(f"{modality.windows}: no window files for modality '{modality.name}'; "
                        f"run the upstream stages first")
    fingerprint_file = out_dir.parent / FINGERPRINTS
    previous = read_state(fingerprint_file).get(out_dir.name, {})
    lineage = f"{ref.name}:{ref.version}:{ref.run_id}:{params_hash}:{protection.tag}"
    extra = modality.extra_fingerprints(inputs) if modality.extra_fingerprints else {}
    # part names (and fingerprint keys) are published: a record's is its pseudonym when on
    part = {path: protection.part_name(path.name) if modality.named_by_record else path.name
            for path in inputs}
    fingerprints = {part[path]: f"{digest}{extra.get(path.name, '')}:{lineage}"
                    for path, digest in zip(inputs, file_digests(
                        inputs, cache / DIGESTS if cache is not None else None), strict=True)}
    with atomic_dir(out_dir) as staging:
        # Unchanged files that had nothing to encode (a record without the model's channel)
        # have no part to carry and are not read again.
        empty = {name for name, fp in fingerprints.items() if previous.get(name) == EMPTY + fp}
        changed = [path for path in inputs if part[path] not in empty
                   and not _reuse_part(part[path], out_dir, staging,
                                       previous.get(part[path]) == fingerprints[part[path]])]
        if changed and isinstance(encoder, LazyEncoder):
            encoder.load()  # here, once, so torch is loaded before the workers start

        def encode_one(path: Path) -> None:
            latents = (modality.encode(path, encoder, ref, batch_rows) if modality.encode
                       else encode_file(path, modality, encoder, ref, batch_rows))
            if latents is None:  # no part for a file without windows to encode
                empty.add(part[path])
            else:
                protection.write(protection.apply(latents), staging / part[path])

        encode_files(changed, encode_one, workers)
        encoded, reused = len(changed), len(inputs) - len(changed)
        manifest = build_manifest(staging, modality, ref, fingerprints, params_hash,
                                  protection)
        published = {**manifest, "files_encoded": encoded, "files_reused": reused}
        yield published  # the caller's block runs; an exception there discards the staging
        # Forget the old fingerprints before the swap: a crash between the swap and the
        # update below must cause a re-encode, never the reuse of a part from another model.
        _set_entry(fingerprint_file, out_dir.name, None)
    _set_entry(fingerprint_file, out_dir.name, {
        name: EMPTY + fp if name in empty else fp for name, fp in fingerprints.items()})
    _set_entry(out_dir.parent / MANIFEST, out_dir.name, manifest)
    log.info("export %s: %d rows in %d files (%d encoded, %d unchanged)", modality.name,
             manifest["rows"], len(inputs), encoded, reused)


def build_manifest(folder: Path, modality: Modality, ref: ModelRef,
                   fingerprints: dict[str, str], params_hash: str,
                   protection: Protection | None = None) -> dict[str, Any]:
    """Row count and schema from the Parquet footers (no data read), lineage, versions."""
    protection = protection or Protection()
    parts = sorted(folder.glob("*.parquet"))
    footers = [protection.metadata(p) for p in parts]
    rows = sum(n for n, _ in footers)
    schema = footers[0][1] if footers else {}
    blob = json.dumps(fingerprints, sort_keys=True).encode()
    return {
        "modality": modality.name,
        "rows": rows,
        "files": len(parts),
        "schema": {name: str(dtype) for name, dtype in schema.items()},
        "latent_columns": [c for c in schema if c.startswith("z_")],
        "model_uri": ref.uri,
        "model_name": ref.name,
        "model_version": ref.version,
        "mlflow_run_id": ref.run_id,
        "data_version": hashlib.sha256(blob).hexdigest()[:16],
        "params_hash": params_hash,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pseudonymised": protection.key is not None,
        "encrypted": protection.key_file is not None,
    }


def write_meds(latent_dir: Path, meds_dir: Path, protection: Protection | None = None) -> None:
    """The latent table as MEDS events, one file per latent part (atomic folder swap)."""
    protection = protection or Protection()
    with atomic_dir(meds_dir) as staging:
        for part in sorted(latent_dir.glob("*.parquet")):
            # parts are already pseudonymised; only the encryption applies again
            protection.write(meds_events(protection.read(part)), staging / part.name)


class LazyEncoder:
    """Loads the model on first use: a refresh that only re-publishes unchanged parts never
    pays for torch and the model load."""

    def __init__(self, uri: str, loader: Callable[[str], Encoder]):
        self.uri, self._loader, self._encoder = uri, loader, None
        self._lock = threading.Lock()  # export workers share one encoder: load it once

    def load(self) -> Encoder:
        """The loaded encoder (loads it on the first call)."""
        return self._get()

    def _get(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = self._loader(self.uri)
            return self._encoder

    @property
    def input_kind(self) -> str:
        return self._get().input_kind

    @property
    def channel(self) -> str | None:
        return getattr(self._get(), "channel", None)

    def encode(self, batch: np.ndarray) -> np.ndarray:
        return self._get().encode(batch)


def resolve_alias(tracking_uri: str, name: str, alias: str) -> ModelRef:
    """Look up ``name@alias`` in the MLflow registry; a clear error when it does not exist."""
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        mv = client.get_model_version_by_alias(name, alias)
    except Exception as exc:  # noqa: BLE001 - the store raises SQLAlchemy and HTTP errors too
        # MLflow says "no such model" and "no such alias" with these two codes; anything else
        # (a database it cannot open, a server that does not answer) is not a missing model
        if getattr(exc, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST",
                                                "INVALID_PARAMETER_VALUE"):
            raise MedaeError(f"no model '{name}@{alias}' in the MLflow registry at "
                             f"{tracking_uri}; run the training stage first") from None
        raise MedaeError(f"cannot look up '{name}@{alias}' in the MLflow registry at "
                         f"{tracking_uri} ({error_reason(exc, typed=True)})"
                         ) from None
    return ModelRef(name=name, version=int(mv.version), run_id=mv.run_id or "",
                    uri=f"models:/{name}@{alias}")


def modalities(params: Any) -> dict[str, Modality]:
    """The modalities export knows, wired to their window folders and input builders."""
    from medae.export import multimodal
    from medae.training import encode

    return {
        "ehr": Modality("ehr", params.path(params.featurize_ehr.out), "featurize_ehr",
                        encode.ehr_inputs),
        "waveforms": Modality("waveforms", params.path(params.window_waveforms.out),
                              "window_waveforms", encode.waveform_inputs, named_by_record=True),
        "multimodal": multimodal.modality(params),
    }


def run(params: Any) -> dict[str, Any]:
    """Export every configured modality's champion latents; returns rows per modality."""
    cfg = params.export_latents
    # refuse (no key) before the heavy imports, any model load or any output touched
    protection = Protection.from_config(cfg, base=params.root)

    import mlflow

    from medae.export import multimodal
    from medae.training.encode import load_encoder

    uri = params.mlflow_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    out_root = params.path(cfg.out)
    known = modalities(params)
    summary: dict[str, Any] = {"out": str(out_root), "modalities": {}}
    refs: dict[str, ModelRef] = {}
    for name in cfg.modalities:  # every model looked up before anything is encoded
        if name == "multimodal" and not (pointer := multimodal.pointer(params)).exists():
            log.info("export multimodal: no %s (train_multimodal has not run); skipped", pointer)
            summary["modalities"][name] = {"skipped": "no multimodal model trained"}
            continue
        refs[name] = resolve_alias(uri, f"medae-{name}", cfg.alias)
    staged: dict[str, dict[str, Any]] = {}
    # The tables are published together, once every one is encoded: a failure in one keeps
    # all the previous tables, never a new EHR table beside an old multimodal one.
    with ExitStack() as publish:
        for name, ref in refs.items():
            modality = known[name]
            staged[name] = publish.enter_context(staged_export(
                modality, LazyEncoder(ref.uri, load_encoder), ref, out_root / name,
                params_hash=params.section_hash("export_latents", modality.upstream_section),
                batch_rows=cfg.batch_rows,
                protection=protection,
                cache=params.path(cfg.cache),
            ))
    for name, manifest in staged.items():
        if cfg.meds:  # derived from the published tables, once all are published
            write_meds(out_root / name, out_root / "_meds" / name, protection)
        summary["modalities"][name] = {k: manifest[k] for k in (
            "rows", "files", "files_encoded", "files_reused", "model_version", "data_version")}
    if not cfg.meds:
        shutil.rmtree(out_root / "_meds", ignore_errors=True)
    return summary
