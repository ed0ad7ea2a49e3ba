"""Stage ``train_multimodal``: the paired windows (stage ``pair_windows``) -> ``medae-multimodal``.

The rows are those :mod:`medae.training.pair_windows` wrote: every EHR window with the waveform
window paired with it (or none), then the wave-only rows of stays without EHR windows. EHR
rows keep their window's split, wave-only rows get their subject's; the waveform part is
z-scored with the train rows' mean and std. Training, tracking and registration are the other
stages' (:func:`medae.training.train.train_and_register`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medae.errors import DataError
from medae.models.config import Shape
from medae.training import paired_files, pairs
from medae.training.encode import ehr_inputs, multimodal_shape
from medae.training.train import (
    EHR_COLUMNS,
    Prepared,
    assign_splits,
    data_version,
    ehr_target_width,
    parquet_files,
    read_ehr_stats,
    require_columns,
    train_and_register,
)

log = logging.getLogger(__name__)


def pairing(path: Path, cfg: Any, **more: Any) -> int | None:
    """The samples per window of a paired file paired as ``cfg`` (train_multimodal) and
    ``more`` say; else a clear error naming the file."""
    expected = {"channel": cfg.channel, "max_nan_frac": cfg.max_nan_frac, **more}
    return paired_files.check_pairing(path, expected, "train_multimodal has")["samples"]


def read_paired_ehr(ehr_folder: Path, paired_folder: Path, cfg: Any
                    ) -> tuple[pl.DataFrame, np.ndarray]:
    """Every EHR window with its paired window (stage ``pair_windows``, paired as ``cfg``
    says), sorted like :func:`medae.training.train.read_ehr_windows`: the windows with
    ``has_waveform``, and the paired samples, one row per window that has one, in the
    windows' order."""
    frames, waves = [], []
    width = None
    for path in parquet_files(ehr_folder, "featurize_ehr"):
        paired_path = paired_files.paired_file(paired_folder, path)
        samples = pairing(paired_path, cfg)
        if samples is not None and width is not None and samples != width:
            raise DataError(f"{paired_path}: waveform windows of {samples} samples, "
                            f"{width} in the files before; run `medae run pair_windows`")
        width = samples if samples is not None else width
        ehr = pl.read_parquet(path)
        require_columns(ehr, EHR_COLUMNS, str(path))
        paired = paired_files.read_paired(paired_path)
        paired_files.check_aligned(ehr, paired, str(paired_path))
        has, wave = paired_files.paired_samples(paired["record_name"], paired["wave_values"],
                                                samples or 0, str(paired_path))
        frames.append(ehr.with_columns(has_waveform=pl.Series(has, dtype=pl.Boolean)))
        waves.append(wave)
    # rows of the wave array, numbered in file order, carried through the sort
    ehr = pl.concat(frames, how="vertical_relaxed")
    ehr = ehr.with_columns(_wave_row=paired_files.wave_rows(ehr["has_waveform"].to_numpy())
                           ).sort("subject_id", "stay_id", "window_start", maintain_order=True)
    wave = (np.concatenate([w for w in waves if w.size], axis=0) if any(w.size for w in waves)
            else np.zeros((0, width or 0), np.float32))
    return ehr, wave


def multimodal_table(ehr: pl.DataFrame, lone: pl.DataFrame, n_paired: int, cfg: Any,
                     splits_file: Path) -> pl.DataFrame:
    """Every model row: ``split``, ``ehr_row`` and ``wave_row`` (null = modality missing).

    ``ehr``: :func:`read_paired_ehr`'s windows; ``lone``: the wave-only rows, whose samples
    follow the ``n_paired`` paired ones. EHR rows keep their window's split; wave-only rows
    get their subject's split (as the EHR side does), see :func:`assign_splits`.
    """
    paired = ehr.select("split", pl.int_range(ehr.height, dtype=pairs.ROW).alias("ehr_row"),
                        pl.col("_wave_row").alias("wave_row"))
    lone = assign_splits(lone, splits_file, cfg.tuning_fraction, cfg.held_out_fraction)
    return pl.concat([paired, lone.select(
        "split", pl.lit(None, pairs.ROW).alias("ehr_row"),
        (pl.int_range(lone.height, dtype=pairs.ROW) + n_paired).alias("wave_row"))])


def wave_normalisation(wave: np.ndarray, shape: Shape) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-column shift and scale of multimodal rows: identity on the EHR part (already
    z-scored by featurize_ehr) and the flags, the train waveform mean and std on the wave part.
    """
    shift, scale = np.zeros(shape.input_dim, np.float32), np.ones(shape.input_dim, np.float32)
    mean, std = (float(np.nanmean(wave)), float(np.nanstd(wave))) if len(wave) else (0.0, 1.0)
    part = slice(shape.input_dim - shape.wave_dim - 2, shape.input_dim - 2)
    shift[part], scale[part] = mean, std
    return shift, scale, {"wave_mean": mean, "wave_std": std}


def load_multimodal(params: Any) -> Prepared:
    cfg = params.train_multimodal
    ehr_folder, stats_path = params.path(cfg.ehr_features), params.path(cfg.ehr_stats)
    stats = read_ehr_stats(stats_path)
    paired_folder = params.path(params.pair_windows.out)
    lone_path = params.path(params.pair_windows.wave_only)
    ehr, paired_waves = read_paired_ehr(ehr_folder, paired_folder, cfg)
    if ehr.height == 0:
        raise DataError(f"{ehr_folder}: no EHR windows; run `medae run featurize_ehr`")
    n_values = ehr_target_width(ehr, stats, ehr_folder, stats_path)
    if not lone_path.exists():
        raise DataError(f"{lone_path}: no wave-only rows; run `medae run pair_windows`")
    columns = paired_files.read_paired(lone_path, ["subject_id", "record_name", "wave_values"])
    lone = pl.from_arrow(columns.select(["subject_id", "record_name"]))
    wave_rows = paired_waves
    if lone.height:
        width = pairing(lone_path, cfg, wave_only_per_stay=cfg.wave_only_per_stay)
        if len(paired_waves) and width != paired_waves.shape[1]:
            raise DataError(f"{lone_path}: waveform windows of {width} samples, "
                            f"{paired_waves.shape[1]} in {paired_folder}; "
                            f"run `medae run pair_windows`")
        _, lone_waves = paired_files.paired_samples(columns["record_name"],
                                                    columns["wave_values"], width,
                                                    str(lone_path))
        wave_rows = np.concatenate([wave_rows.reshape(-1, width), lone_waves])
    table = multimodal_table(ehr, lone, len(paired_waves), cfg, params.path(cfg.splits))
    if len(wave_rows) == 0:
        raise DataError(f"{paired_folder}: no linked '{cfg.channel}' window with q_nan_frac "
                        f"<= {cfg.max_nan_frac} of {params.path(cfg.wave_features)} lies inside "
                        f"an EHR window or belongs to a stay without EHR windows; nothing to "
                        f"fuse (see docs/models.md, multimodal training)")
    ehr_rows = ehr_inputs(ehr)
    split_rows = {s: table.filter(pl.col("split") == s) for s in ("train", "tuning")}
    if cfg.max_rows:
        split_rows["train"] = split_rows["train"].head(cfg.max_rows)
    shape = multimodal_shape(ehr_rows.shape[1], n_values, int(stats["n_bins"]),
                             wave_rows.shape[1], cfg.channel)
    train_wave = split_rows["train"]["wave_row"].drop_nulls().to_numpy()
    shift, scale, wave_stats = wave_normalisation(wave_rows[train_wave], shape)
    counts = pairs.pairing_counts(table)
    log.info("multimodal rows: %d with both modalities, %d EHR only, %d waveform only",
             counts["rows_both"], counts["rows_ehr_only"], counts["rows_wave_only"])
    counts |= {f"{s}_rows": rows.height for s, rows in split_rows.items()}
    files = (parquet_files(ehr_folder, "featurize_ehr") + [stats_path]
             + parquet_files(paired_folder, "pair_windows") + [lone_path])
    return Prepared(pairs.gather_rows(split_rows["train"], ehr_rows, wave_rows),
                    pairs.gather_rows(split_rows["tuning"], ehr_rows, wave_rows), shape,
                    data_version(files), {"channel": cfg.channel, "fitted_on": "train",
                                          **wave_stats, **counts},
                    shift, scale, counts)


def run(params: Any) -> dict[str, Any]:
    """Stage ``train_multimodal``."""
    return train_and_register(params, "multimodal", "train_multimodal", load_multimodal(params))
