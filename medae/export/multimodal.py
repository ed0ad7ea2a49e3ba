"""The multimodal latent table: every EHR window encoded by ``medae-multimodal`` with the
waveform window that training pairs with it, or with the waveform slot empty (EHR-only).

One part per EHR window file (``part_0003.parquet`` <- ``ehr_windows/part_0003.parquet``),
one row per EHR window, in input order, keyed like the EHR table plus ``has_waveform`` (a
waveform window was fused). Which waveform window goes with which EHR window is
:mod:`medae.training.pairs`, the code that built the training rows; the waveform windows
eligible are those training used: the model's channel, ``q_nan_frac <=
train_multimodal.max_nan_frac``, linked to a stay in time.

Reading in two passes, as training does (:mod:`medae.training.wave_reader`): the key columns
of the eligible windows of a part's stays, paired with the part's EHR windows, then the samples
of only the windows used. A window's span for pairing is its start plus the model's samples /
``fs``; the samples read are checked to have exactly that length, the one the model was
trained on.

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
from medae.io import per_file_cached
from medae.training import pairs, wave_reader
from medae.training.encode import ehr_inputs

log = logging.getLogger(__name__)

def file_stays(path: Path) -> set[int]:
    """The stays a windows file (EHR or waveform) has windows for: its ``stay_id`` only.

    Read from the Parquet footer when every row group holds one stay (a record lies in one
    stay; ~0.15 ms a file against ~1 ms to decode the column), else from the column.
    """
    return footer(path)[0]


def footer(path: Path) -> tuple[set[int], list[int]]:
    """:func:`file_stays` and the number of rows in each of the file's row groups."""
    try:
        meta = pq.ParquetFile(path).metadata
        stays = _footer_stays(meta)
        if stays is None:
            stays = set(pl.read_parquet(path, columns=["stay_id"])["stay_id"].drop_nulls())
        return stays, wave_reader.group_rows(meta)
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


class FusedWindows:
    """The multimodal modality's inputs: EHR window files, each fused with the waveform
    windows of its stays. Plugs into :func:`medae.export.latents.export_modality` through
    ``Modality.extra_fingerprints`` and ``Modality.encode``."""

    def __init__(self, wave_folder: Path, max_nan_frac: float, cache: Path | None = None):
        self.wave_folder = Path(wave_folder)
        self.max_nan_frac = max_nan_frac
        # folder of the caches of digests and footers by file stamp (medae.io.per_file_cached)
        self.cache = cache
        # wave file name -> its linked stays, and the rows in each of its row groups
        self._stays_of: dict[str, set[int]] | None = None
        self._groups: dict[str, list[int]] = {}

    def _cache_file(self, name: str) -> Path | None:
        return self.cache / name if self.cache is not None else None

    def scan_waves(self) -> dict[str, set[int]]:
        """Linked stays per waveform file, read afresh (at each export's fingerprinting) from
        the footers of the files changed since the last export."""
        files = sorted(self.wave_folder.glob("*.parquet"))
        summaries = per_file_cached(
            files, self._cache_file(latents.FOOTERS),
            lambda todo: [[sorted(stays), groups] for stays, groups in map(footer, todo)])
        self._stays_of = {p.name: set(s) for p, (s, _) in zip(files, summaries, strict=True)}
        self._groups = {p.name: g for p, (_, g) in zip(files, summaries, strict=True)}
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
        digests = latents.file_digests(needed, self._cache_file(latents.DIGESTS))
        digest = dict(zip(needed, digests, strict=True))
        return {name: "+" + hashlib.sha256("\n".join(
                    f"{w.name}:{digest[w]}" for w in files).encode()).hexdigest()[:16]
                for name, files in related.items()}

    def wave_keys(self, stays: set[int], channel: str, ehr_file: Path) -> pl.DataFrame:
        """The eligible waveform windows of ``stays`` (:func:`wave_reader.read_keys`)."""
        stay_ids = pl.Series(sorted(stays), dtype=pl.Int64)
        return wave_reader.read_keys(
            self.related(stays), self._groups,
            lambda lf: eligible_windows(lf, channel, self.max_nan_frac, stay_ids),
            f"{self.wave_folder}: waveform windows of the stays in {ehr_file.name}")

    def samples(self, keys: pl.DataFrame, width: int, ehr_file: Path) -> np.ndarray:
        """The samples of the windows ``keys`` (:func:`wave_reader.read_samples`)."""
        return wave_reader.read_samples(keys, self._groups, width, ehr_file.name)

    def encode(self, path: Path, encoder: latents.Encoder, ref: latents.ModelRef,
               batch_rows: int) -> pl.DataFrame | None:
        """Every EHR window of ``path`` -> its multimodal latents (input row order kept).

        The whole file's windows are paired at once (keys only), the samples of the waveform
        windows used are read once, then the EHR windows stream through in batches.
        """
        model = encoder.load() if isinstance(encoder, latents.LazyEncoder) else encoder
        width = int(model.model.shape.wave_dim)
        keys = self.wave_keys(file_stays(path), model.channel, path)
        try:
            ehr_keys = pl.read_parquet(path, columns=["stay_id", "window_start", "window_end"])
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise DataError(f"{path}: cannot read the EHR window keys "
                            f"({str(exc).splitlines()[0]})") from None
        rows, used = pairs.keep_used_waves(pairs.pair_ehr_windows(
            ehr_keys, pairs.wave_spans(keys, samples=width)))
        waves = (self.samples(keys[used], width, path) if len(used)
                 else np.zeros((1, width), np.float32))
        parts, offset = [], 0
        for batch in latents.iter_windows(path, batch_rows, latents.READ_COLUMNS["ehr"]):
            if batch.height:
                mine = rows.slice(offset, batch.height).with_columns(pl.col("ehr_row") - offset)
                parts.append(encode_batch(batch, mine, waves, model, ref))
                offset += batch.height
        return pl.concat(parts, how="vertical_relaxed") if parts else None


def encode_batch(batch: pl.DataFrame, rows: pl.DataFrame, waves: np.ndarray, encoder: Any,
                 ref: latents.ModelRef) -> pl.DataFrame:
    """One batch of EHR windows with their pairing ``rows`` (``ehr_row`` in the batch,
    ``wave_row`` in ``waves``), encoded: keys, ``has_waveform``, latents, lineage."""
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
    fused = FusedWindows(params.path(params.window_waveforms.out), cfg.max_nan_frac,
                         params.path(params.export_latents.cache))
    return latents.Modality("multimodal", params.path(params.featurize_ehr.out), "train_multimodal",
                            ehr_inputs, extra_fingerprints=fused.fingerprints,
                            encode=fused.encode)
