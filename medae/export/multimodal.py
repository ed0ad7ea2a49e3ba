"""The multimodal latent table: every EHR window encoded by ``medae-multimodal`` with the
waveform window that training pairs with it, or with the waveform slot empty (EHR-only).

One part per EHR window file (``part_0003.parquet`` <- ``ehr_windows/part_0003.parquet``),
one row per EHR window, in input order, keyed like the EHR table plus ``has_waveform`` (a
waveform window was fused). Which waveform window goes with which EHR window is
:mod:`medae.training.pairs`, the code that built the training rows; the waveform windows
eligible are those training used: the model's channel, ``q_nan_frac <=
train_multimodal.max_nan_frac``, linked to a stay in time.

Incremental: a part depends on its EHR file and on the waveform files linked to its stays, so
its fingerprint adds a hash of those files' names and bytes (:meth:`FusedWindows.fingerprints`);
a new or changed record re-encodes only the parts holding its stays.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from medae.errors import DataError
from medae.export import latents
from medae.training import pairs
from medae.training.encode import ehr_inputs, waveform_inputs

log = logging.getLogger(__name__)

# What pairing and the model rows need of a waveform windows file (docs/contracts.md).
WAVE_COLUMNS = {"subject_id": pl.Int64, "stay_id": pl.Int64, "record_name": pl.String,
                "channel": pl.String, "window_start": pl.Datetime("us"), "start_s": pl.Float64,
                "fs": pl.Float64, "values": pl.List(pl.Float32), "q_nan_frac": pl.Float32}


def file_stays(path: Path) -> set[int]:
    """The stays a windows file (EHR or waveform) has windows for: its ``stay_id`` only.

    Read from the Parquet footer when every row group holds one stay (a record lies in one
    stay; ~0.15 ms a file against ~1 ms to decode the column), else from the column.
    """
    try:
        stays = _footer_stays(pq.ParquetFile(path).metadata)
        if stays is None:
            stays = set(pl.read_parquet(path, columns=["stay_id"])["stay_id"].drop_nulls())
        return stays
    except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read column 'stay_id' "
                        f"({str(exc).splitlines()[0]})") from None


def _footer_stays(meta: pq.FileMetaData) -> set[int] | None:
    """Stays from the row-group statistics of ``stay_id``; None when they do not settle it."""
    stays: set[int] = set()
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        column = next((group.column(c) for c in range(group.num_columns)
                       if group.column(c).path_in_schema == "stay_id"), None)
        stats = column.statistics if column is not None else None
        if stats is None or stats.null_count is None:
            return None
        if stats.null_count == group.num_rows:
            continue  # no stay in this row group
        if not stats.has_min_max or stats.min != stats.max:
            return None
        stays.add(int(stats.min))
    return stays


def eligible_windows(lf: pl.LazyFrame, channel: str, max_nan_frac: float,
                     stays: pl.Series) -> pl.LazyFrame:
    """The windows training could fuse (channel, quality, linked), of ``stays`` only.

    >>> import datetime as dt
    >>> w = pl.LazyFrame({"stay_id": [7, 7, 8, None], "channel": ["ecg_ii", "ppg", "ecg_ii",
    ...     "ecg_ii"], "q_nan_frac": [0.0, 0.0, 0.0, 0.0],
    ...     "window_start": [dt.datetime(2150, 1, 1)] * 4})
    >>> eligible_windows(w, "ecg_ii", 0.1, pl.Series([7, 9])).collect()["stay_id"].to_list()
    [7]
    """
    keep = pairs.usable(channel, max_nan_frac) & pl.col("stay_id").is_in(stays.implode())
    return pairs.linked(lf.filter(keep))


def fused_rows(ehr: pl.DataFrame, wave: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """Pair ``ehr`` windows with ``wave`` windows (:mod:`medae.training.pairs`): one row per
    EHR window (``ehr_row``, ``wave_row`` renumbered over the used waves) and the used rows
    of ``wave``.

    >>> import datetime as dt
    >>> t = lambda h: dt.datetime(2150, 1, 1, h)
    >>> ehr = pl.DataFrame({"stay_id": [7, 7], "window_start": [t(0), t(6)],
    ...                     "window_end": [t(6), t(12)]})
    >>> wave = pl.DataFrame({"subject_id": [1], "stay_id": [7], "record_name": ["r"],
    ...     "window_start": [t(1)], "start_s": [0.0], "fs": [1.0], "values": [[0.0] * 10]})
    >>> rows, used = fused_rows(ehr, wave)
    >>> rows["wave_row"].to_list(), used.tolist()
    ([0, None], [0])
    """
    paired = pairs.pair_ehr_windows(ehr, pairs.wave_spans(wave))
    return pairs.keep_used_waves(paired)


class FusedWindows:
    """The multimodal modality's inputs: EHR window files, each fused with the waveform
    windows of its stays. Plugs into :func:`medae.export.latents.export_modality` through
    ``Modality.extra_fingerprints`` and ``Modality.encode``."""

    def __init__(self, wave_folder: Path, max_nan_frac: float):
        self.wave_folder = Path(wave_folder)
        self.max_nan_frac = max_nan_frac
        self._stays_of: dict[str, set[int]] | None = None  # wave file name -> linked stays

    def scan_waves(self) -> dict[str, set[int]]:
        """Linked stays per waveform file, read afresh (at each export's fingerprinting)."""
        self._stays_of = {p.name: file_stays(p)
                          for p in sorted(self.wave_folder.glob("*.parquet"))}
        return self._stays_of

    def related(self, stays: set[int]) -> list[Path]:
        """The waveform files holding windows of ``stays``, sorted by name."""
        stays_of = self._stays_of if self._stays_of is not None else self.scan_waves()
        return [self.wave_folder / name for name, linked in sorted(stays_of.items())
                if linked & stays]

    def fingerprints(self, ehr_files: Sequence[Path]) -> dict[str, str]:
        """Per EHR file: ``+`` and a hash of its related waveform files' names and bytes."""
        self.scan_waves()
        related = {p.name: self.related(file_stays(p)) for p in ehr_files}
        needed = sorted({w for files in related.values() for w in files})
        digest = dict(zip(needed, latents.file_digests(needed), strict=True))
        return {name: "+" + hashlib.sha256("\n".join(
                    f"{w.name}:{digest[w]}" for w in files).encode()).hexdigest()[:16]
                for name, files in related.items()}

    def read_waves(self, stays: set[int], channel: str, ehr_file: Path) -> pl.DataFrame:
        """The eligible waveform windows of ``stays``, sorted by record and time."""
        files = self.related(stays)
        if not files:
            return pl.DataFrame(schema=WAVE_COLUMNS)
        lf = pl.scan_parquet(files).select(pl.col(c).cast(t) for c, t in WAVE_COLUMNS.items())
        try:
            wave = eligible_windows(lf, channel, self.max_nan_frac,
                                    pl.Series(sorted(stays), dtype=pl.Int64)).collect()
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"{self.wave_folder}: waveform windows of the stays in "
                            f"{ehr_file.name}: cannot read ({str(exc).splitlines()[0]})"
                            ) from None
        return wave.sort("record_name", "start_s")

    def encode(self, path: Path, encoder: latents.Encoder, ref: latents.ModelRef,
               batch_rows: int) -> pl.DataFrame | None:
        """Every EHR window of ``path`` -> its multimodal latents (input row order kept)."""
        model = encoder.load() if isinstance(encoder, latents.LazyEncoder) else encoder
        wave = self.read_waves(file_stays(path), model.channel, path)
        wave_width = int(model.model.shape.wave_dim)
        parts = [encode_batch(batch, wave, model, ref, wave_width, path)
                 for batch in latents.iter_windows(path, batch_rows,
                                                   latents.READ_COLUMNS["ehr"])
                 if batch.height]
        return pl.concat(parts, how="vertical_relaxed") if parts else None


def encode_batch(batch: pl.DataFrame, wave: pl.DataFrame, encoder: Any, ref: latents.ModelRef,
                 wave_width: int, path: Path) -> pl.DataFrame:
    """One batch of EHR windows, fused and encoded: keys, ``has_waveform``, latents, lineage."""
    rows, used = fused_rows(batch, wave)
    waves = waveform_inputs(wave[used]) if len(used) else np.zeros((1, wave_width), np.float32)
    if waves.shape[1] != wave_width:
        raise DataError(f"{path.name}: fused waveform windows have {waves.shape[1]} samples; "
                        f"the model expects {wave_width} (window_waveforms params changed "
                        f"since train_multimodal?)")
    z = encoder.encode(pairs.gather_rows(rows, ehr_inputs(batch), waves))
    keys = latents.key_frame(batch, "ehr").with_columns(
        has_waveform=rows["wave_row"].is_not_null())
    return latents.latent_frame(keys, z, ref)


def pointer(params: Any) -> Path:
    """The multimodal champion's pointer file; absent = no multimodal model to export."""
    return params.path(params.train_multimodal.pointer)


def modality(params: Any) -> latents.Modality:
    """The ``multimodal`` modality of :func:`medae.export.latents.modalities`."""
    cfg = params.train_multimodal
    fused = FusedWindows(params.path(params.window_waveforms.out), cfg.max_nan_frac)
    return latents.Modality("multimodal", params.path(params.featurize_ehr.out), "train_multimodal",
                            ehr_inputs, extra_fingerprints=fused.fingerprints,
                            encode=fused.encode)
