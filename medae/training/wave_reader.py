"""Reading the waveform windows multimodal rows fuse, in two passes.

A stay's record holds far more windows than pair with its EHR windows (contiguous 10 s
windows against a few EHR windows a day), so the samples of every linked window would not fit
in memory on real recordings. :func:`read_keys` reads the key columns of the eligible windows
(no samples), the caller pairs them (:mod:`medae.training.pairs`), then :func:`read_samples`
reads the samples of the paired windows only, from the row groups holding them
(window_waveforms writes one row group per channel and 600 s chunk). A file of at most
``ONE_PASS_ROWS`` windows is read whole in the first pass: opening it again costs more than
decoding its unused windows. Used by stage ``pair_windows`` (:mod:`medae.training.pair_windows`).

``groups`` maps a file name to the number of rows in each of its row groups (its footer,
:func:`group_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from medae.errors import DataError, error_reason
from medae.privacy.record_names import hide_record_file, hide_record_files, record_file
from medae.training.encode import waveform_inputs

# The key columns pairing needs of a waveform windows file (docs/contracts.md).
WAVE_KEYS = {"subject_id": pl.Int64, "stay_id": pl.Int64, "record_name": pl.String,
             "channel": pl.String, "window_start": pl.Datetime("us"), "start_s": pl.Float64,
             "fs": pl.Float64, "q_nan_frac": pl.Float32}
FILE_ROW = "_file_row"  # a window's row number in its own file
FILE = "_file"
IN_MEMORY = "_in_memory"  # the window's samples were read with its keys
# A file of at most this many windows is read whole in the first pass: opening it again costs
# more (~0.5 ms) than decoding its unused windows (~20 us each at 1,250 samples).
ONE_PASS_ROWS = 32
KEYS_SCHEMA = {**WAVE_KEYS, FILE: pl.String, FILE_ROW: pl.Int64, "values": pl.List(pl.Float32),
               IN_MEMORY: pl.Boolean}

Groups = Mapping[str, Sequence[int]]


def group_rows(meta: pq.FileMetaData) -> list[int]:
    """Rows in each row group, from a file's Parquet metadata."""
    return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]


def read_keys(files: Sequence[Path], groups: Groups,
              keep: Callable[[pl.LazyFrame], pl.LazyFrame], where: str) -> pl.DataFrame:
    """The windows of ``files`` that ``keep`` keeps, sorted by record and time: the key
    columns, file and row in it, and ``values`` for the windows of small files only (null for
    the others: :func:`read_samples` reads them). ``where`` names the data in errors."""
    small = [f for f in files if sum(groups[f.name]) <= ONE_PASS_ROWS]
    large = [f for f in files if sum(groups[f.name]) > ONE_PASS_ROWS]
    scans = [_scan(part, groups, with_values=part is small) for part in (small, large) if part]
    if not scans:
        return pl.DataFrame(schema=KEYS_SCHEMA)
    try:
        keys = keep(pl.concat(scans)).collect()
    except pl.exceptions.PolarsError as exc:
        # Polars may name a file, and the files are named after their records
        raise DataError(f"{where}: cannot read ({hide_record_files(error_reason(exc), files)})"
                        ) from None
    return keys.sort("record_name", "start_s", maintain_order=True)


def _scan(files: list[Path], groups: Groups, with_values: bool) -> pl.LazyFrame:
    """One scan of ``files``: the key columns (and the samples when ``with_values``), each
    row numbered within its own file."""
    lf = pl.scan_parquet(files, row_index_name=FILE_ROW, include_file_paths=FILE)
    values = (pl.col("values").cast(pl.List(pl.Float32)) if with_values
              else pl.lit(None, pl.List(pl.Float32)).alias("values"))
    # The scan numbers rows across its files in order: back to each file's own numbers.
    first_row = np.cumsum([0] + [sum(groups[f.name]) for f in files])
    first = pl.DataFrame({FILE: [str(f) for f in files], "_first": first_row[:-1]})
    return (lf.join(first.lazy(), on=FILE, how="left", maintain_order="left")
            .select(*(pl.col(c).cast(t) for c, t in WAVE_KEYS.items()), FILE,
                    pl.col(FILE_ROW).cast(pl.Int64) - pl.col("_first"), values,
                    pl.lit(with_values).alias(IN_MEMORY)))


def sample_count(keys: pl.DataFrame, groups: Groups) -> int:
    """The samples of the first window of ``keys`` (rows of :func:`read_keys`): every window
    of a channel has as many (window_waveforms' ``window_s`` x rate)."""
    first = keys.row(0, named=True)
    if first[IN_MEMORY]:
        return len(first["values"])
    path = Path(first[FILE])
    return _read_rows(path, np.array([first[FILE_ROW]]), groups[path.name]).shape[1]


def read_samples(keys: pl.DataFrame, groups: Groups, width: int, where: str) -> np.ndarray:
    """The samples of the windows ``keys`` (rows of :func:`read_keys`), row for row: those
    read with the keys, the others from the row groups holding them only. Each window must
    have ``width`` samples."""
    parts: list[tuple[np.ndarray, np.ndarray, Path]] = []  # (output rows, samples, file)
    read = keys[IN_MEMORY].to_numpy()
    if read.any():
        small = keys.filter(pl.col(IN_MEMORY))
        parts.append((read.nonzero()[0], waveform_inputs(small), Path(small[FILE][0])))
    rest = keys.with_row_index("_out").filter(~pl.col(IN_MEMORY))
    names, which = np.unique(rest[FILE].to_numpy(), return_inverse=True)
    order = np.argsort(which, kind="stable")
    at, rows = rest["_out"].to_numpy()[order], rest[FILE_ROW].to_numpy()[order]
    bounds = np.cumsum([0, *np.bincount(which, minlength=len(names))])
    for k, name in enumerate(names):  # by file name, each file's rows in order
        path, mine = Path(name), slice(bounds[k], bounds[k + 1])
        parts.append((at[mine], _read_rows(path, rows[mine], groups[path.name]), path))
    out = np.empty((keys.height, width), np.float32)
    for at_rows, values, source in parts:
        if values.shape[1] != width:
            raise DataError(f"{where}: waveform windows of {record_file(source)} have "
                            f"{values.shape[1]} samples, the first eligible one {width} "
                            f"(records windowed with other window_waveforms params?)")
        out[at_rows] = values
    return out


def _read_rows(path: Path, wanted: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """The samples of rows ``wanted`` of one file, reading only their row groups."""
    sizes = np.asarray(sizes)
    group_first = np.cumsum([0, *sizes])
    group_of = np.searchsorted(group_first, wanted, side="right") - 1
    chosen, position = np.unique(group_of, return_inverse=True)
    # the wanted rows' numbers in the chosen row groups, read back to back
    local = np.cumsum([0, *sizes[chosen][:-1]])[position] + wanted - group_first[group_of]
    try:
        table = pq.ParquetFile(path).read_row_groups(chosen.tolist(), columns=["values"],
                                                      use_threads=False)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(hide_record_file(f"{path}: cannot read column 'values' "
                                         f"({error_reason(exc)})", path)) from None
    return waveform_inputs(pl.from_arrow(table.take(local)))
