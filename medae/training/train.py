"""Stages ``train_ehr`` and ``train_waveforms`` (and what ``train_multimodal`` shares with
them, :mod:`medae.training.train_multimodal`): windows -> fitted model in the MLflow registry.

Each stage: load the train and tuning rows (the same input builders export uses), fit the
normalisation on train, train with :func:`medae.training.loop.fit`, log everything to MLflow,
register ``medae-<modality>``, move ``champion`` only on improvement, write the pointer file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medae.errors import DataError, error_reason
from medae.io import check_finished
from medae.models.config import Shape
from medae.privacy.record_names import hide_record_files, record_file
from medae.training import pairs
from medae.training.encode import (
    ehr_inputs,
    ehr_shape,
    waveform_inputs,
    waveform_shape,
)

log = logging.getLogger(__name__)

EHR_COLUMNS = ("subject_id", "stay_id", "window_start", "split", "values", "mask", "static")
WAVE_COLUMNS = ("subject_id", "record_name", "channel", "start_s", "values", "q_nan_frac")


@dataclass
class Prepared:
    """Model-ready rows of one modality plus what must travel with the model."""

    train: np.ndarray
    tuning: np.ndarray
    shape: Shape
    data_version: str
    stats: dict[str, Any]  # fitted normalisation statistics (logged as an artifact)
    shift: float | np.ndarray | None = None  # a scalar, or one value per input column
    scale: float | np.ndarray | None = None
    counts: dict[str, int] = field(default_factory=dict)


def data_version(files: list[Path]) -> str:
    """A content hash of the input files (names and bytes), stable across machines."""
    h = hashlib.sha256()
    for path in sorted(files):
        with path.open("rb") as fh:
            h.update(path.name.encode() + hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()[:16]


def parquet_files(folder: Path, stage: str) -> list[Path]:
    check_finished(folder, stage)
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise DataError(f"{folder}: no *.parquet windows; run `medae run {stage}` first")
    return files


def require_columns(df: pl.DataFrame | pl.LazyFrame, columns: tuple[str, ...], where: str):
    have = set(df.collect_schema().names())
    missing = [c for c in columns if c not in have]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}")


def read_ehr_windows(folder: Path) -> pl.DataFrame:
    """All EHR windows sorted by their keys (Polars does not keep file order in scans)."""
    lf = pl.scan_parquet(parquet_files(folder, "featurize_ehr"))
    require_columns(lf, EHR_COLUMNS, str(folder))
    windows = lf.collect().sort("subject_id", "stay_id", "window_start")
    if windows.height == 0:
        raise DataError(f"{folder}: no EHR windows; featurize_ehr wrote none (no ICU stay "
                        "with events in ehr.source? see the clean_ehr report)")
    return windows


def read_ehr_stats(stats_path: Path) -> dict[str, Any]:
    """featurize_ehr's statistics; an error naming the file when missing or unreadable."""
    if not stats_path.exists():
        raise DataError(f"{stats_path}: EHR statistics not found; run `medae run featurize_ehr`")
    try:
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{stats_path}: cannot read the EHR statistics ({error_reason(exc)}); "
                        "run `medae run featurize_ehr` again") from None
    if not isinstance(stats, dict) or not {"n_bins", "variables"} <= stats.keys():
        raise DataError(f"{stats_path}: not featurize_ehr's statistics (no n_bins and "
                        "variables); run `medae run featurize_ehr` again")
    return stats


def ehr_target_width(df: pl.DataFrame, stats: dict[str, Any], folder: Path,
                     stats_path: Path) -> int:
    """n_bins x variables from the statistics, checked against the windows' ``values``."""
    n_values = int(stats["n_bins"]) * len(stats["variables"])
    width = df["values"].list.len().max()
    if width != n_values:
        raise DataError(f"{folder}: column 'values' has {width} entries per window but "
                        f"{stats_path.name} describes {n_values} (n_bins x variables)")
    return n_values


def load_ehr(params: Any) -> Prepared:
    cfg = params.train_ehr
    folder, stats_path = params.path(cfg.features), params.path(cfg.stats)
    stats = read_ehr_stats(stats_path)
    df = read_ehr_windows(folder)
    rows = {s: ehr_inputs(df.filter(pl.col("split") == s)) for s in ("train", "tuning")}
    train = rows["train"][: cfg.max_rows] if cfg.max_rows else rows["train"]
    n_values = ehr_target_width(df, stats, folder, stats_path)
    shape = ehr_shape(train.shape[1], n_values, int(stats["n_bins"]))
    files = parquet_files(folder, "featurize_ehr") + [stats_path]
    return Prepared(train, rows["tuning"], shape, data_version(files), stats,
                    counts={"train_rows": len(train), "tuning_rows": len(rows["tuning"])})


def hash_split(name: str, tuning: float, held_out: float) -> str:
    """Deterministic split of a record without a known subject, from its name.

    >>> hash_split("3000003_0003", 0.1, 0.1)
    'train'
    """
    u = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 2**32
    return "held_out" if u < held_out else "tuning" if u < held_out + tuning else "train"


def assign_splits(df: pl.DataFrame, splits_file: Path, tuning: float,
                  held_out: float) -> pl.DataFrame:
    """Subject splits from MEDS when known (same as the EHR side), else by record name."""
    by_name = {n: hash_split(n, tuning, held_out) for n in df["record_name"].unique().to_list()}
    fallback = pl.col("record_name").replace_strict(by_name, return_dtype=pl.String)
    if splits_file.exists():
        splits = pl.read_parquet(splits_file, columns=["subject_id", "split"]).unique("subject_id")
        df = df.join(splits, on="subject_id", how="left", maintain_order="left")
        return df.with_columns(pl.coalesce(pl.col("split"), fallback).alias("split"))
    return df.with_columns(fallback.alias("split"))


def read_channel_windows(folder: Path, channel: str, max_nan_frac: float,
                         columns: tuple[str, ...] = WAVE_COLUMNS
                         ) -> tuple[pl.DataFrame, list[Path]]:
    """The ``channel`` windows passing ``max_nan_frac``, sorted by record and time, and the
    files they came from."""
    files = parquet_files(folder, "window_waveforms")
    try:
        lf = pl.scan_parquet(files)
        require_columns(lf, columns, str(folder))
        df = lf.filter(pairs.usable(channel, max_nan_frac)).select(*columns).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        # the files are named after their records, and Polars may name one
        raise DataError(f"{folder}: cannot read the waveform windows "
                        f"({hide_record_files(error_reason(exc), files)})") from None
    if df.height == 0:
        raise DataError(f"{folder}: no '{channel}' windows with q_nan_frac <= {max_nan_frac}")
    if "values" in df.columns:
        check_one_width(df, folder, channel)
    return df.sort("record_name", "start_s"), files


def check_one_width(windows: pl.DataFrame, folder: Path, channel: str) -> None:
    """A model takes rows of one width: every window of the channel must have as many samples
    (records windowed with other ``window_waveforms`` params do not)."""
    counts = (windows.group_by(pl.col("values").list.len().alias("samples"))
              .agg(pl.col("record_name").n_unique().alias("records"),
                   pl.col("record_name").min().alias("first"))
              .sort("records", "samples", descending=[True, False]))
    if counts.height > 1:
        odd = counts.row(1, named=True)
        found = ", ".join(f"{r['samples']} in {r['records']} record(s)"
                          for r in counts.iter_rows(named=True))
        raise DataError(f"{folder}: '{channel}' windows of different lengths ({found}), e.g. "
                        f"{record_file(folder / (odd['first'] + '.parquet'))}; re-run "
                        f"`medae run window_waveforms` with one set of params")


def load_waveforms(params: Any) -> Prepared:
    cfg = params.train_waveforms
    df, files = read_channel_windows(params.path(cfg.features), cfg.channel, cfg.max_nan_frac)
    df = assign_splits(df, params.path(cfg.splits), cfg.tuning_fraction, cfg.held_out_fraction)
    train = waveform_inputs(df.filter(pl.col("split") == "train"))
    tuning = waveform_inputs(df.filter(pl.col("split") == "tuning"))
    if len(tuning) == 0:  # too few records for a record-level tuning split: hold out windows
        log.warning("no '%s' records fell in the tuning split; using every 10th train window",
                    cfg.channel)
        tuning, train = train[::10], np.delete(train, np.s_[::10], axis=0)
    train = train[: cfg.max_rows] if cfg.max_rows else train
    shift, scale = float(np.nanmean(train)), float(np.nanstd(train))
    stats = {"channel": cfg.channel, "mean": shift, "std": scale, "fitted_on": "train",
             "rows": len(train), "samples_per_window": train.shape[1]}
    return Prepared(train, tuning, waveform_shape(train.shape[1], cfg.channel),
                    data_version(files), stats, shift, scale,
                    counts={"train_rows": len(train), "tuning_rows": len(tuning)})


def train_and_register(params: Any, modality: str, section: str, data: Prepared):
    """Fit, log and register one modality's model; returns the stage summary."""
    import mlflow
    import torch

    from medae.models.build import build_model
    from medae.training import tracking
    from medae.training.loop import fit

    cfg = getattr(params, section)
    tracking.setup(params, modality)
    torch.manual_seed(cfg.optim.seed)  # weight init is part of a reproducible run
    model = build_model(cfg.model, data.shape)
    if data.shift is not None:
        model.set_normalisation(torch.tensor(data.shift), torch.tensor(data.scale))
    model.init_from_data(torch.from_numpy(np.array(data.train[:20000])))
    ckpt_dir = params.path(cfg.checkpoint_dir) / modality
    if cfg.system_metrics:
        mlflow.set_system_metrics_sampling_interval(cfg.system_metrics_interval_s)
        mlflow.set_system_metrics_samples_before_logging(1)
    params_hash = params.section_hash(section)
    with mlflow.start_run(run_name=section, log_system_metrics=cfg.system_metrics) as run:
        mlflow.log_params({**tracking.flat_params("model", cfg.model.model_dump(mode="json")),
                           **tracking.flat_params("optim", cfg.optim.model_dump(mode="json")),
                           "data_version": data.data_version, "params_hash": params_hash,
                           **data.counts})
        result = fit(model, data.train, data.tuning, cfg.optim, checkpoint_dir=ckpt_dir,
                     resume=cfg.resume, data_version=data.data_version,
                     on_epoch_end=lambda epoch, m: mlflow.log_metrics(m, step=epoch))
        for epoch, m in enumerate(result.state.history[: result.resumed_from], start=1):
            mlflow.log_metrics(m, step=epoch)  # epochs done before an interruption
        best = result.best
        metrics = {"best_tuning_loss": best["tuning_loss"],
                   tracking.TUNING_METRIC: best["tuning_recon"],
                   "best_epoch": result.state.best_epoch + 1,
                   "epochs_run": result.state.epoch}
        mlflow.log_metrics(metrics)
        tracking.log_artifacts_dir(run_artifacts(model, result, data, cfg, section, modality,
                                                  params_hash))
        info = tracking.log_model(model, modality)
        version = int(info.registered_model_version)
        run_id = run.info.run_id
    champion = tracking.promote_if_better(modality, version, metrics[tracking.TUNING_METRIC])
    pointer = tracking.write_pointer(params.path(cfg.pointer), version=version, run_id=run_id,
                                     metrics=metrics, champion=champion,
                                     data_version=data.data_version, modality=modality)
    tracking.write_loss_csv(result.state.history, params.path(cfg.loss_csv))
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # the model now lives in MLflow
    return {**pointer, **data.counts, "device": result.device,
            "resumed_from_epoch": result.resumed_from}


def run_artifacts(model, result, data: Prepared, cfg, section: str, modality: str,
                  params_hash: str) -> dict[str, Any]:
    """Loss curve, normalisation statistics, resolved config (+ reconstructions for waveforms)."""
    from medae.training import tracking

    artifacts: dict[str, Any] = {
        "loss_curve.png": lambda p: tracking.loss_curve_png(result.state.history, p),
        "normalisation.json": data.stats,
        "config.json": {section: cfg.model_dump(mode="json"),
                        "shape": data.shape.model_dump(mode="json"),
                        "data_version": data.data_version, "params_hash": params_hash,
                        "device": result.device},
    }
    if modality == "waveforms":
        artifacts["reconstruction.png"] = lambda p: reconstruction_plot(model, data.tuning, p)
    return artifacts


def reconstruction_plot(model, rows: np.ndarray, path: Path) -> None:
    import torch

    from medae.training import tracking

    pick = rows[: min(4, len(rows))]
    with torch.no_grad():
        recon = model.cpu()(torch.from_numpy(pick)).numpy()
    tracking.reconstruction_png(pick, recon, path)


def run_ehr(params: Any) -> dict[str, Any]:
    """Stage ``train_ehr``."""
    return train_and_register(params, "ehr", "train_ehr", load_ehr(params))


def run_waveforms(params: Any) -> dict[str, Any]:
    """Stage ``train_waveforms``."""
    return train_and_register(params, "waveforms", "train_waveforms", load_waveforms(params))
