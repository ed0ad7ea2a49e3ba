"""Tiny windows tables in the contract format (docs/contracts.md), built in memory."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl

LIST = pl.List(pl.Float32)


def ehr_windows(n_stays: int = 60, bins: int = 6, variables: int = 4, seed: int = 0,
                observed: float = 0.7) -> tuple[pl.DataFrame, dict]:
    """Windows whose values follow a per-stay level plus a trend (something to learn), death
    shifting the first variable's level, splits by subject, as featurize_ehr writes them."""
    rng = np.random.default_rng(seed)
    rows = []
    for stay in range(n_stays):
        dead = int(stay % 3 == 0)  # every split gets both classes
        level = rng.normal(size=variables) + 1.5 * dead * (np.arange(variables) == 0)
        slope = rng.normal(scale=0.3, size=variables)
        split = "train" if stay % 10 < 7 else "tuning" if stay % 10 < 9 else "held_out"
        for w in range(3):
            t = np.arange(bins)[:, None] + w * bins
            truth = level + slope * t / bins + rng.normal(scale=0.2, size=(bins, variables))
            mask = (rng.random((bins, variables)) < observed).astype(np.float32)
            values = truth.copy()
            for b in range(1, bins):  # forward fill unobserved bins, as featurisation does
                values[b] = np.where(mask[b] > 0, truth[b], values[b - 1])
            values[0] = np.where(mask[0] > 0, truth[0], 0.0)
            start = dt.datetime(2150, 1, 1) + dt.timedelta(hours=6 * w)
            rows.append({
                "subject_id": 1000 + stay, "hadm_id": 2000 + stay, "stay_id": 3000 + stay,
                "window_start": start, "window_end": start + dt.timedelta(hours=bins),
                "split": split, "values": values.ravel().tolist(), "mask": mask.ravel().tolist(),
                "delta": np.zeros(bins * variables).tolist(),
                "static": [float(rng.normal()), float(stay % 2)], "label_mortality": dead,
            })
    df = pl.DataFrame(rows, schema_overrides={
        "values": LIST, "mask": LIST, "delta": LIST, "static": LIST,
        "label_mortality": pl.Int8, "window_start": pl.Datetime("us"),
        "window_end": pl.Datetime("us")})
    stats = {"variables": [f"v{i}" for i in range(variables)], "n_bins": bins, "bin_hours": 1,
             "mean": {}, "std": {}, "static": ["age", "sex_male"], "age_mean": 60.0,
             "age_std": 15.0, "fitted_on": "train"}
    return df, stats


def write_ehr(folder: Path, stats_path: Path, **kwargs) -> pl.DataFrame:
    df, stats = ehr_windows(**kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    df.write_parquet(folder / "part_0000.parquet")
    stats_path.write_text(json.dumps(stats))
    return df


def waveform_windows(records: int = 6, per_record: int = 20, length: int = 128,
                     seed: int = 0) -> pl.DataFrame:
    """ECG-like windows (a few harmonics per record) plus a PPG channel of another length."""
    rng = np.random.default_rng(seed)
    rows = []
    t = np.arange(length) / 64.0
    for r in range(records):
        rate = rng.uniform(1.0, 2.0)
        for w in range(per_record):
            phase = rng.uniform(0, 2 * np.pi)
            x = np.sin(2 * np.pi * rate * t + phase) + 0.3 * np.sin(6 * np.pi * rate * t + phase)
            x = (x + rng.normal(scale=0.05, size=length)).astype(np.float32)
            for channel, values in (("ecg_ii", x), ("ppg", x[: length // 2])):
                rows.append({"subject_id": 10 + r, "record_name": f"rec{r:02d}",
                             "channel": channel, "window_start": None, "start_s": 2.0 * w,
                             "fs": 64.0, "stay_id": None, "values": values.tolist(),
                             "q_nan_frac": 0.0, "q_flat_frac": 0.0, "q_clip_frac": 0.0,
                             "q_range": 2.0, "q_beat": None})
    return pl.DataFrame(rows, schema_overrides={
        "values": LIST, "window_start": pl.Datetime("us"), "stay_id": pl.Int64,
        "q_nan_frac": pl.Float32, "q_flat_frac": pl.Float32, "q_clip_frac": pl.Float32,
        "q_range": pl.Float32, "q_beat": pl.Float32}, infer_schema_length=None)


def write_waveforms(folder: Path, **kwargs) -> pl.DataFrame:
    df = waveform_windows(**kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in df.group_by("record_name", maintain_order=True):
        part.write_parquet(folder / f"{name[0]}.parquet")
    return df


WAVE_ONLY_STAYS = (5000, 5001, 5002, 5003)  # linked stays with no EHR window


def linked_waveform_windows(ehr: pl.DataFrame, length: int = 128, fs: float = 64.0,
                            wave_only_windows: int = 10, seed: int = 0) -> pl.DataFrame:
    """``ecg_ii`` windows (``length / fs`` s long) linked to the stays of ``ehr``, by the
    stay's position ``i`` in the stay order:

    - ``i % 4 in (0, 3)``: two windows inside every EHR window (+1 h, then +2 h);
    - ``i % 4 == 1``: one window inside the first EHR window, one straddling the second's end;
    - ``i % 4 == 2``: none (EHR-only stays);

    plus ``wave_only_windows`` windows 10 s apart for each of :data:`WAVE_ONLY_STAYS`, one
    unlinked window (no ``stay_id``) and a ``ppg`` copy of every window (another channel).
    """
    rng = np.random.default_rng(seed)
    stays = ehr.select("subject_id", "stay_id").unique().sort("stay_id").rows()
    starts = dict(ehr.group_by("stay_id").agg(pl.col("window_start").sort()).rows())
    ends = dict(ehr.group_by("stay_id").agg(pl.col("window_end").sort()).rows())
    span = dt.timedelta(seconds=length / fs)
    times: list[tuple[int, int | None, dt.datetime]] = []
    for i, (subject, stay) in enumerate(stays):
        if i % 4 in (0, 3):
            times += [(subject, stay, s + dt.timedelta(hours=h)) for s in starts[stay]
                      for h in (2, 1)]  # written later-first: the pairing must sort by time
        elif i % 4 == 1:
            times += [(subject, stay, starts[stay][0] + dt.timedelta(minutes=30)),
                      (subject, stay, ends[stay][1] - span / 2)]
    for k, stay in enumerate(WAVE_ONLY_STAYS):
        times += [(9000 + k, stay, dt.datetime(2151, 1, 1) + dt.timedelta(seconds=10 * w))
                  for w in range(wave_only_windows)]
    times.append((9999, None, dt.datetime(2150, 1, 1, 1)))
    rows = []
    t = np.arange(length) / fs
    for n, (subject, stay, start) in enumerate(times):
        x = np.sin(2 * np.pi * rng.uniform(1.0, 2.0) * t + rng.uniform(0, 2 * np.pi))
        x = (x + rng.normal(scale=0.05, size=length)).astype(np.float32)
        for channel in ("ecg_ii", "ppg"):
            rows.append({"subject_id": subject, "record_name": f"rec{stay}", "channel": channel,
                         "window_start": start, "start_s": float(n), "fs": fs, "stay_id": stay,
                         "values": x.tolist(), "q_nan_frac": 0.0, "q_flat_frac": 0.0,
                         "q_clip_frac": 0.0, "q_range": 2.0, "q_beat": None})
    return pl.DataFrame(rows, schema_overrides={
        "values": LIST, "window_start": pl.Datetime("us"), "stay_id": pl.Int64,
        "q_nan_frac": pl.Float32, "q_flat_frac": pl.Float32, "q_clip_frac": pl.Float32,
        "q_range": pl.Float32, "q_beat": pl.Float32}, infer_schema_length=None)


def write_linked_waveforms(folder: Path, ehr: pl.DataFrame, **kwargs) -> pl.DataFrame:
    df = linked_waveform_windows(ehr, **kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in df.group_by("record_name", maintain_order=True):
        part.write_parquet(folder / f"{name[0]}.parquet")
    return df
