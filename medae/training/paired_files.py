"""The paired windows format (stage ``pair_windows``, :mod:`medae.training.pair_windows`):
how its files are written, checked and read back by ``train_multimodal`` and export.

A paired file holds, row for row with its EHR window file, the EHR window's ``stay_id`` and
``window_start``, the paired waveform window's ``record_name`` and ``start_s`` (null when
none) and its samples ``wave_values``; its Parquet metadata ``medae.pairing`` gives the
channel and the samples per window.

``wave_values`` is binary: the window's samples as little-endian float32, back to back (empty
when none; :func:`samples_of` reads one). Not ``list<float32>``, as the window tables are,
because export reads every paired file each time a new champion is exported, and Parquet
decodes a list one value at a time (repetition levels), a blob at copying speed: the paired
files of the export benchmark read in 0.04 s instead of 0.10 s (one thread, 20,000 windows of
1,250 samples, docs/refresh.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from medae.errors import DataError, error_reason
from medae.io import atomic_path
from medae.training import pairs
from medae.training.encode import arrow_column, one_array

META = b"medae.pairing"  # Parquet metadata of a paired file: channel and samples per window
KEY_COLUMNS = ("stay_id", "window_start")  # what ties a paired row to its EHR window


SAMPLE = np.dtype("<f4")  # one waveform sample in ``wave_values``: little-endian float32


def paired_schema() -> pa.Schema:
    """Columns of a paired file: the EHR window's keys, the waveform window's, its samples."""
    return pa.schema([pa.field("stay_id", pa.int64()),
                      pa.field("window_start", pa.timestamp("us")),
                      pa.field("record_name", pa.string()),
                      pa.field("start_s", pa.float64()),
                      pa.field("wave_values", pa.large_binary(), nullable=False)])


def rows_as_samples(waves: np.ndarray, at: np.ndarray) -> pl.Series:
    """Row ``i``: the samples of ``waves[at[i]]`` (``wave_values`` bytes), empty where ``at``
    is NaN (no paired window).

    >>> s = rows_as_samples(np.array([[1.0, 2.0]], np.float32), np.array([np.nan, 0.0]))
    >>> [samples_of(b).tolist() for b in s]
    [[], [1.0, 2.0]]
    """
    has = ~np.isnan(at.astype(np.float64))
    width = waves.shape[1]
    take = at[has].astype(np.int64)
    offsets = np.zeros(len(at) + 1, np.int64)
    offsets[1:] = np.cumsum(np.where(has, width * SAMPLE.itemsize, 0))
    data = np.ascontiguousarray(waves[take], SAMPLE)
    blobs = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(at), [
        None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pl.Series("wave_values", blobs)


def samples_of(blob: bytes) -> np.ndarray:
    """One ``wave_values`` entry as its float32 samples (read-only).

    >>> samples_of(np.array([0.5, -1.0], "<f4").tobytes()).tolist()
    [0.5, -1.0]
    """
    return np.frombuffer(blob, SAMPLE)


def write_paired(table: pl.DataFrame, path: Path, pairing: dict[str, Any]) -> None:
    """Write a paired (or wave-only) table with how it was paired (``medae.pairing``
    metadata: channel, max_nan_frac, samples per window), atomically."""
    arrow = table.to_arrow()
    schema = pa.schema([paired_schema().field(name) if name in paired_schema().names
                        else arrow.schema.field(name) for name in arrow.schema.names])
    with atomic_path(path) as tmp:
        pq.write_table(arrow.cast(schema).replace_schema_metadata(
            {META: json.dumps(pairing, sort_keys=True).encode()}), tmp, compression="lz4")


def paired_file(paired_folder: Path, ehr_file: Path) -> Path:
    """The paired file of an EHR window file (same name); a clear error when it is missing."""
    path = Path(paired_folder) / ehr_file.name
    if not path.exists():
        raise DataError(f"{path}: no paired windows for {ehr_file}; "
                        f"run `medae run pair_windows`")
    return path


def unreadable(path: Path, exc: Exception) -> DataError:
    """The error for a paired (or wave-only) file that cannot be read, naming it."""
    return DataError(f"{path}: cannot read the paired windows ({error_reason(exc)})")


def read_paired(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A paired (or wave-only) file, whole; a clear error naming it when unreadable."""
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise unreadable(path, exc) from None


def pairing_of(path: Path) -> dict[str, Any]:
    """How a paired file was paired (its ``medae.pairing`` metadata)."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise unreadable(path, exc) from None
    if META not in meta:
        raise DataError(f"{path}: not a paired windows file (no {META.decode()} metadata); "
                        f"run `medae run pair_windows`")
    return json.loads(meta[META])


def check_pairing(path: Path, expected: dict[str, Any], who: str) -> dict[str, Any]:
    """:func:`pairing_of` ``path``, each key of ``expected`` checked (a file without any
    waveform window records no samples, which fits any); else an error naming the file.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "part_0000.parquet"
    >>> write_paired(pl.DataFrame({"stay_id": [1]}), path, {"channel": "ppg", "samples": None})
    >>> check_pairing(path, {"channel": "ecg_ii"}, "the model has")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    medae.errors.DataError: ...: paired with channel 'ppg', the model has 'ecg_ii' (params ...
    """
    written = pairing_of(path)
    for key, want in expected.items():
        got = written.get(key)
        if got != want and not (key == "samples" and got is None):
            raise DataError(f"{path}: paired with {key} {got!r}, {who} {want!r} (params "
                            f"changed since pair_windows or train_multimodal ran?)")
    return written


def paired_samples(record_name: pa.Array | pa.ChunkedArray,
                   wave_values: pa.Array | pa.ChunkedArray, width: int,
                   where: str) -> tuple[np.ndarray, np.ndarray]:
    """Which rows have a paired window (``record_name`` set) and their samples, a
    (rows with one, width) float32 array in row order, read-only (a view of the Arrow
    buffer); each such row must hold ``width`` samples and every other none, else an error
    naming ``where`` and the row.

    >>> v = pa.array([b"", np.array([1.0, 2.0], "<f4").tobytes()], pa.large_binary())
    >>> has, waves = paired_samples(pa.array([None, "r"]), v, 2, "part")
    >>> has.tolist(), waves.tolist()
    ([False, True], [[1.0, 2.0]])
    """
    wave_values = one_array(wave_values)
    if wave_values.type != pa.large_binary():
        raise DataError(f"{where}: wave_values is {wave_values.type}, not the samples as "
                        f"binary (written by an older medae?); run `medae run pair_windows`")
    has = one_array(record_name).is_valid().to_numpy(zero_copy_only=False)
    _, offsets_buffer, data = wave_values.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64, len(wave_values) + 1,
                            wave_values.offset * 8)
    lengths = np.diff(offsets)
    wrong = np.flatnonzero(lengths != np.where(has, width * SAMPLE.itemsize, 0))
    if len(wrong):
        row = int(wrong[0])
        raise DataError(f"{where}: row {row}: {int(lengths[row]) / SAMPLE.itemsize:g} paired "
                        f"waveform samples, {width if has[row] else 0} expected; "
                        f"run `medae run pair_windows`")
    n = int(has.sum())
    if n == 0:
        return has, np.zeros((0, width), np.float32)
    flat = np.frombuffer(data, SAMPLE, n * width, int(offsets[0]))
    return has, flat.reshape(n, width)


def _same_values(ehr: pa.Array, paired: pa.Array) -> bool:
    """Equal values (nulls in the same places), compared in Arrow, with no Polars frame per
    batch; a column of another integer or time type is compared in the EHR column's type."""
    if paired.type != ehr.type:
        try:
            paired = paired.cast(ehr.type)
        except pa.ArrowException:
            return False
    return ehr.equals(paired)


def check_aligned(ehr: pl.DataFrame | pa.RecordBatch, paired: pl.DataFrame | pa.RecordBatch,
                  where: str) -> None:
    """The paired rows belong to these EHR windows, row for row; else name the file.
    Either side may be a Polars frame or an Arrow batch (only the keys are compared)."""
    if len(ehr) != len(paired) or not all(_same_values(
            arrow_column(ehr, key, where), arrow_column(paired, key, where))
            for key in KEY_COLUMNS):
        raise DataError(f"{where}: paired windows do not match the EHR windows row for row "
                        f"(EHR windows changed since pair_windows ran?); "
                        f"run `medae run pair_windows`")


def side_by_side(batches: Iterator[pl.DataFrame | pa.RecordBatch], path: Path,
                 batch_rows: int = 1 << 14
                 ) -> Iterator[tuple[pl.DataFrame | pa.RecordBatch, pa.RecordBatch]]:
    """Each batch of EHR windows with the next as many rows of the paired file ``path``
    (streamed: memory holds a batch of samples, not the file's). Read in batches of
    ``batch_rows``, as the EHR windows are, the two files' batches usually line up one to one
    (a paired file has its EHR file's rows) and no rows are copied; otherwise the rows are
    gathered from the batches read."""
    try:
        reader = pq.ParquetFile(path)
        chunks = reader.iter_batches(batch_size=batch_rows, use_threads=False)
        held: list[pa.RecordBatch] = []
        for batch in batches:
            while sum(b.num_rows for b in held) < len(batch):
                more = next(chunks, None)
                if more is None:
                    break
                held.append(more)
            if len(held) == 1 and held[0].num_rows == len(batch):
                yield batch, held.pop()  # the usual case: the batches line up
                continue
            table = pa.Table.from_batches(held, schema=reader.schema_arrow)
            rest = table.slice(len(batch))
            held = rest.combine_chunks().to_batches() if rest.num_rows else []
            yield batch, table.slice(0, len(batch)).combine_chunks().to_batches(
                max_chunksize=None)[0] if min(table.num_rows, len(batch)) else \
                pa.RecordBatch.from_pylist([], reader.schema_arrow)
        if held or next(chunks, None) is not None:
            raise DataError(f"{path}: more paired rows than EHR windows (EHR windows changed "
                            f"since pair_windows ran?); run `medae run pair_windows`")
    except (OSError, pa.ArrowException) as exc:
        raise unreadable(path, exc) from None


def paired_rows(batch: pa.RecordBatch, width: int, where: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """A batch of paired rows -> each row's row in the samples (-1: no paired window; the
    ``wave_row`` of :func:`medae.training.encode.assemble_rows`) and the samples."""
    has, waves = paired_samples(batch.column("record_name"), batch.column("wave_values"),
                                width, where)
    return wave_row_numbers(has), waves


def wave_row_numbers(has: np.ndarray) -> np.ndarray:
    """Each row's number among the rows that have a paired window, -1 for the others.

    >>> wave_row_numbers(np.array([True, False, True])).tolist()
    [0, -1, 1]
    """
    return np.where(has, np.cumsum(has) - 1, -1)


def wave_rows(has: np.ndarray) -> pl.Series:
    """:func:`wave_row_numbers` as a ``wave_row`` column, null for the rows without a window.

    >>> wave_rows(np.array([True, False, True])).to_list()
    [0, None, 1]
    """
    numbers = pl.Series("wave_row", wave_row_numbers(has), dtype=pairs.ROW)
    return pl.select(wave_row=pl.when(numbers >= 0).then(numbers)).to_series()
