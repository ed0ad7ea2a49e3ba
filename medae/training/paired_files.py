"""The paired windows format (stage ``pair_windows``, :mod:`medae.training.pair_windows`):
how its files are written, checked and read back by ``train_multimodal`` and export.

A paired file holds, row for row with its EHR window file, the EHR window's ``stay_id`` and
``window_start``, the paired waveform window's ``record_name`` and ``start_s`` (null when
none) and its samples ``wave_values`` (an empty list when none); its Parquet metadata
``medae.pairing`` gives the channel and the samples per window.
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

from medae.errors import DataError
from medae.io import atomic_path
from medae.training import pairs

META = b"medae.pairing"  # Parquet metadata of a paired file: channel and samples per window
KEY_COLUMNS = ("stay_id", "window_start")  # what ties a paired row to its EHR window


def paired_schema() -> pa.Schema:
    """Columns of a paired file: the EHR window's keys, the waveform window's, its samples."""
    values = pa.large_list(pa.field("item", pa.float32(), nullable=False))
    return pa.schema([pa.field("stay_id", pa.int64()),
                      pa.field("window_start", pa.timestamp("us")),
                      pa.field("record_name", pa.string()),
                      pa.field("start_s", pa.float64()),
                      pa.field("wave_values", values, nullable=False)])


def rows_as_lists(waves: np.ndarray, at: np.ndarray) -> pl.Series:
    """Row ``i``: ``waves[at[i]]`` as a list, or an empty list where ``at`` is NaN (none).

    >>> rows_as_lists(np.array([[1.0, 2.0]], np.float32), np.array([np.nan, 0.0])).to_list()
    [[], [1.0, 2.0]]
    """
    has = ~np.isnan(at.astype(np.float64))
    width = waves.shape[1]
    take = at[has].astype(np.int64)
    offsets = np.zeros(len(at) + 1, np.int64)
    offsets[1:] = np.cumsum(np.where(has, width, 0))
    values = pa.array(np.ascontiguousarray(waves[take], np.float32).ravel(), pa.float32())
    return pl.Series("wave_values", pa.LargeListArray.from_arrays(pa.array(offsets), values))


def write_paired(table: pl.DataFrame, path: Path, channel: str, width: int | None) -> None:
    """Write a paired (or wave-only) table with its pairing metadata, atomically."""
    arrow = table.to_arrow()
    schema = pa.schema([paired_schema().field(name) if name in paired_schema().names
                        else arrow.schema.field(name) for name in arrow.schema.names])
    meta = json.dumps({"channel": channel, "samples": width}).encode()
    with atomic_path(path) as tmp:
        pq.write_table(arrow.cast(schema).replace_schema_metadata({META: meta}), tmp,
                       compression="lz4")


def pairing_of(path: Path) -> dict[str, Any]:
    """The channel and samples per window a paired file was written with."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read the paired windows "
                        f"({str(exc).splitlines()[0]})") from None
    if META not in meta:
        raise DataError(f"{path}: not a paired windows file (no {META.decode()} metadata); "
                        f"run `medae run pair_windows`")
    return json.loads(meta[META])


def wave_array(values: pa.Array | pa.ChunkedArray, width: int, where: str) -> np.ndarray:
    """The non-empty ``wave_values`` rows as a (rows, width) float32 array, in order.

    >>> v = pa.array([[], [1.0, 2.0]], pa.large_list(pa.float32()))
    >>> wave_array(v, 2, "part").tolist()
    [[1.0, 2.0]]
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    flat = values.flatten().to_numpy(zero_copy_only=False)
    if len(flat) % max(width, 1) or (width == 0 and len(flat)):
        raise DataError(f"{where}: paired waveform samples do not split into windows of "
                        f"{width}; run `medae run pair_windows` again")
    return flat.reshape(-1, max(width, 1))[:, :width].astype(np.float32, copy=False)


def check_aligned(ehr: pl.DataFrame, paired: pl.DataFrame, where: str) -> None:
    """The paired rows belong to these EHR windows, row for row; else name the file."""
    same = (ehr.height == paired.height
            and ehr.select(KEY_COLUMNS).equals(paired.select(KEY_COLUMNS)))
    if not same:
        raise DataError(f"{where}: paired windows do not match the EHR windows row for row "
                        f"(EHR windows changed since pair_windows ran?); "
                        f"run `medae run pair_windows`")


def side_by_side(batches: Iterator[pl.DataFrame], path: Path, batch_rows: int = 1 << 14
                 ) -> Iterator[tuple[pl.DataFrame, pa.RecordBatch]]:
    """Each batch of EHR windows with the next as many rows of the paired file ``path``
    (streamed: memory holds a batch of samples, not the file's). Read in batches of
    ``batch_rows``, as the EHR windows are, the two files' batches line up one to one (a
    paired file has its EHR file's rows) and no rows are copied."""
    try:
        reader = pq.ParquetFile(path)
        chunks = reader.iter_batches(batch_size=batch_rows, use_threads=False)
        held: list[pa.RecordBatch] = []
        for batch in batches:
            while sum(b.num_rows for b in held) < batch.height:
                more = next(chunks, None)
                if more is None:
                    break
                held.append(more)
            if len(held) == 1 and held[0].num_rows == batch.height:
                yield batch, held.pop()  # the usual case: the batches line up
                continue
            table = pa.Table.from_batches(held, schema=reader.schema_arrow)
            rest = table.slice(batch.height)
            held = rest.combine_chunks().to_batches() if rest.num_rows else []
            yield batch, table.slice(0, batch.height).combine_chunks().to_batches(
                max_chunksize=None)[0] if min(table.num_rows, batch.height) else \
                pa.RecordBatch.from_pylist([], reader.schema_arrow)
        if held or next(chunks, None) is not None:
            raise DataError(f"{path}: more paired rows than EHR windows (EHR windows changed "
                            f"since pair_windows ran?); run `medae run pair_windows`")
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read the paired windows "
                        f"({str(exc).splitlines()[0]})") from None


def paired_rows(batch: pa.RecordBatch, width: int, where: str
                ) -> tuple[pl.DataFrame, np.ndarray]:
    """A batch of paired rows -> (``ehr_row``, ``wave_row``) rows and their samples
    (:func:`medae.training.pairs.gather_rows` builds the model inputs from them)."""
    has = pl.from_arrow(batch.column("record_name")).is_not_null()
    wave_row = pl.when(has).then(has.cast(pairs.ROW).cum_sum() - 1)
    rows = pl.select(ehr_row=pl.int_range(batch.num_rows, dtype=pairs.ROW),
                     wave_row=wave_row)
    return rows, wave_array(batch.column("wave_values"), width, where)
