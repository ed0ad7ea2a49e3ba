"""``window_waveforms``: catalogued WFDB records to filtered, resampled, quality-checked,
normalised windows (and ECG beats), one Parquet file per record.

Each record is one executor item (a bad record is quarantined, not fatal) and is read in
bounded chunks, so memory does not grow with record length. Per channel and chunk: harmonise
the name, bridge short NaN gaps, resample each finite run to the configured rate, filter each
run (zero-phase band-pass + mains notch), cut windows, score them (NaN, flat-line and clipping
fractions, amplitude range, ECG beat quality), drop those failing the thresholds (counted per
reason), normalise the rest. Output rows are streamed to the record's file, which replaces the
previous version only once complete. Unchanged records (same catalog fingerprint, params and
stays) are skipped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medae.errors import DataError, MedaeError, error_reason
from medae.io import atomic_path, ensure_dir, read_state, write_json_atomic
from medae.privacy.record_names import hide_record, show_record
from medae.waveforms.beats import (
    beat_quality,
    cut_beats,
    detect_r_peaks,
    load_reference,
    peaks_to_native,
    pick_ecg_channel,
    symbols_for,
)
from medae.waveforms.channels import canonical_channel, channel_kind
from medae.waveforms.config import WindowWaveforms
from medae.waveforms.dsp import (
    bridge_short_gaps,
    filter_sos,
    filtfilt_runs,
    flat_mask,
    nearest_index,
    normalise_windows,
    rational_ratio,
    resample_runs,
)
from medae.waveforms.reader import (
    Chunk,
    Segment,
    iter_chunks,
    record_segments,
    refuse_empty_source,
)

log = logging.getLogger(__name__)

DROP_REASONS = ("gap", "clipping", "out_of_range", "flat", "low_amplitude", "beat_quality")
FINGERPRINTS = "_fingerprints.json"
# Bumped when the same record and params give other windows, so unchanged records are redone:
# 2 = a window's length from the configured rate (was the rate reached: 1,249 samples at
# 124.945 Hz); 3 = beats only inside kept windows (were also cut from rejected stretches).
FORMAT_VERSION = 3
# Dictionary-encoding float arrays is slow and useless; byte-stream-split + fast zstd makes
# the values column both quicker to write and smaller.
PARQUET_OPTIONS = dict(compression="zstd", compression_level=1,
                       use_dictionary=["record_name", "channel", "symbol"],
                       use_byte_stream_split=["values.list.element"])
FLOAT_LIST = pa.list_(pa.float32())
WINDOW_SCHEMA = pa.schema([
    ("subject_id", pa.int64()), ("record_name", pa.string()), ("channel", pa.string()),
    ("window_start", pa.timestamp("us")), ("start_s", pa.float64()), ("fs", pa.float64()),
    ("stay_id", pa.int64()), ("values", FLOAT_LIST), ("q_nan_frac", pa.float32()),
    ("q_flat_frac", pa.float32()), ("q_clip_frac", pa.float32()), ("q_range", pa.float32()),
    ("q_beat", pa.float32()),
])
BEAT_SCHEMA = pa.schema([
    ("subject_id", pa.int64()), ("record_name", pa.string()), ("channel", pa.string()),
    ("r_peak_sample", pa.int64()), ("fs", pa.float64()), ("values", FLOAT_LIST),
    ("symbol", pa.string()),
])


@dataclass(frozen=True)
class RecordJob:
    """Everything a worker needs to window one record (small and picklable)."""

    record_name: str
    path: str  # header path without .hea
    subject_id: int | None
    base_datetime: dt.datetime | None
    stays: tuple[tuple[int, dt.datetime, dt.datetime], ...]
    cfg: WindowWaveforms
    out_file: str
    beats_file: str | None


@dataclass
class ChannelPlan:
    """How one signal of a segment is processed."""

    index: int
    raw: str
    canonical: str
    kind: str
    fs_in: float
    fs_out: float  # the rate actually reached (fs_in * up / down)
    window: int  # samples (window_s x the configured rate), taken at fs_out
    stride: int

    @classmethod
    def make(cls, seg: Segment, index: int, canonical: str, cfg: WindowWaveforms):
        kind = channel_kind(canonical)
        fs_in = seg.fs(index)
        target = cfg.rates.get(kind, fs_in)
        up, down = rational_ratio(fs_in, target)
        fs_out = fs_in * up / down
        # Window and stride in samples from the target rate, not the rate reached: a record
        # at 249.89 Hz reaches 124.945 Hz, and 10 s of it would be 1,249 samples where every
        # other record's ECG window has 1,250. A channel's windows must all have one length
        # (models take fixed-width rows); the window then spans 1,250 / 124.945 s.
        return cls(index, seg.sig_names[index], canonical, kind, fs_in, fs_out,
                   int(round(cfg.window_s * target)), max(1, int(round(cfg.stride_s * target))))


@dataclass
class RecordReport:
    """Per-record data-quality counts (windows produced / dropped per reason and channel)."""

    produced: Counter = field(default_factory=Counter)
    dropped: dict[str, Counter] = field(default_factory=dict)
    beats: int = 0
    skipped_segments: list[dict[str, str]] = field(default_factory=list)
    skipped_channels: dict[str, str] = field(default_factory=dict)
    # Set only when they apply, so a clean record's entry keeps its usual keys.
    data_longer_than_header: int = 0  # frames in the data files past the declared length
    empty_record: bool = False  # no sample to read: none declared, or only gaps
    beats_out_of_range: int = 0  # beats left out: R peak outside physical_range
    beats_withheld: int = 0  # beats left out: R peak in no kept window
    length_from_data_file: bool = False  # the header declares no length: the file's is used

    def as_dict(self) -> dict[str, Any]:
        dropped_total = Counter()
        for counts in self.dropped.values():
            dropped_total.update(counts)
        notes = {key: value for key, value in (
            ("data_longer_than_header", self.data_longer_than_header),
            ("empty_record", self.empty_record),
            ("beats_out_of_range", self.beats_out_of_range),
            ("beats_withheld", self.beats_withheld),
            ("length_from_data_file", self.length_from_data_file)) if value}
        return {**notes,
            "windows_produced": sum(self.produced.values()),
            "windows_dropped": {r: dropped_total.get(r, 0) for r in DROP_REASONS},
            "channels": {c: {"produced": self.produced.get(c, 0),
                             "dropped": {r: self.dropped.get(c, Counter()).get(r, 0)
                                         for r in DROP_REASONS}}
                         for c in sorted(set(self.produced) | set(self.dropped))},
            "beats": self.beats,
            "skipped_segments": self.skipped_segments,
            "skipped_channels": dict(sorted(self.skipped_channels.items())),
        }


# ---------------------------------------------------------------------------------------------
# Per-window quality and selection (pure functions on arrays)


def window_fraction(mask: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Fraction of True samples of ``mask`` in each window ``[start, start + length)``.

    >>> window_fraction(np.array([1, 1, 0, 0, 1, 0], bool), np.array([0, 2, 3]), 3).tolist()
    [0.6666666666666666, 0.3333333333333333, 0.3333333333333333]
    """
    csum = np.r_[0, np.cumsum(mask, dtype=np.int64)]
    return (csum[starts + length] - csum[starts]) / float(length)


def drop_reasons(q: dict[str, np.ndarray], kind: str, cfg: WindowWaveforms) -> np.ndarray:
    """The first failed check of each window as an index into DROP_REASONS, -1 when kept.

    >>> cfg = WindowWaveforms()
    >>> q = {"nan": np.array([0.0, 0.1, 0.0, 0.0]), "flat": np.array([0.0, 0.0, 0.5, 0.0]),
    ...      "clip": np.zeros(4), "out": np.array([0.0, 0.0, 0.0, 1.0]), "range": np.ones(4),
    ...      "beat": np.ones(4)}
    >>> [DROP_REASONS[r] if r >= 0 else "kept" for r in drop_reasons(q, "ecg", cfg)]
    ['kept', 'gap', 'flat', 'out_of_range']
    """
    max_nan = 0.0 if cfg.gap_policy == "drop" else cfg.max_nan_frac
    checks = [q["nan"] > max_nan, q["clip"] > cfg.max_clip_frac,
              q["out"] > cfg.max_out_of_range_frac, q["flat"] > cfg.max_flat_frac,
              q["range"] < cfg.min_range.get(kind, -np.inf),
              (q["beat"] < cfg.min_q_beat) if kind == "ecg" else np.zeros(len(q["nan"]), bool)]
    failed = np.vstack(checks)
    first = np.argmax(failed, axis=0)
    return np.where(failed.any(axis=0), first, -1)


def grid_offset(chunk: Chunk, frame_fs: float, plan: ChannelPlan) -> int:
    """The index on the segment's output grid (at ``plan.fs_out``) of the chunk's first
    sample: local output index + offset = segment-wide output index."""
    return int(round(chunk.frame0 * plan.fs_out / frame_fs))


def window_starts(chunk: Chunk, frame_fs: float, plan: ChannelPlan, n_out: int) -> np.ndarray:
    """Local output indices of the windows that start in the chunk's core (on the segment's
    stride grid) and end inside the chunk."""
    rate = plan.fs_out / frame_fs
    g0 = grid_offset(chunk, frame_fs, plan)
    lo = int(np.ceil(chunk.core_start * rate - 1e-9))
    hi = int(np.ceil(chunk.core_stop * rate - 1e-9))
    first = -(-lo // plan.stride) * plan.stride
    starts = np.arange(first, hi, plan.stride, dtype=np.int64) - g0
    return starts[(starts >= 0) & (starts + plan.window <= n_out)]


def outside_range(x: np.ndarray, limits: tuple[float, float] | None) -> np.ndarray:
    """Samples outside the physiological ``limits`` (NaN is a gap, not out of range).

    >>> outside_range(np.array([0.5, 25.0, np.nan, -30.0]), (-20.0, 20.0)).tolist()
    [False, True, False, True]
    >>> outside_range(np.array([1e9]), None).tolist()
    [False]
    """
    if limits is None:
        return np.zeros(len(x), bool)
    with np.errstate(invalid="ignore"):
        return (x < limits[0]) | (x > limits[1])


def in_windows(points: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Whether each point lies in some window ``[start, start + length)``; ``starts`` sorted.

    >>> in_windows(np.array([0, 5, 12, 25, 31]), np.array([0, 10, 30]), 10).tolist()
    [True, True, True, False, True]
    >>> in_windows(np.array([3]), np.array([], dtype=np.int64), 10).tolist()
    [False]
    """
    # The latest start at or before a point covers it if any window does (equal lengths).
    last = np.searchsorted(starts, points, side="right") - 1
    return (last >= 0) & (points < starts[np.clip(last, 0, None)] + length) if len(
        starts) else np.zeros(len(points), bool)


@dataclass
class ChannelResult:
    """The kept windows of one signal in one chunk, their quality and the drop counts."""

    starts_s: np.ndarray  # seconds from record start
    values: np.ndarray  # (n_kept, window) float32
    quality: dict[str, np.ndarray]  # kept windows only
    reasons: Counter
    beats: tuple[np.ndarray, np.ndarray, float] | None = None  # values, native peaks, fs
    beats_out_of_range: int = 0  # beats not cut: R peak outside the physiological range
    beats_withheld: int = 0  # beats not cut: R peak in no kept window (signal failed quality)
    kept_starts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # grid


def score_windows(x: np.ndarray, clipped: np.ndarray, y: np.ndarray, z: np.ndarray,
                  starts: np.ndarray, plan: ChannelPlan,
                  cfg: WindowWaveforms) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Quality indices of each window (``nan``, ``flat``, ``clip``, ``out``, ``range``,
    ``beat``) and, for ECG, the R peaks found on the resampled signal ``y``.

    Flat lines, clipping and physiologically impossible values (``out``) are found on the
    native samples ``x`` (exact values, before filtering hides an offset) and mapped onto the
    output grid; NaN fraction and range come from the filtered signal ``z``.
    """
    idx = nearest_index(len(z), plan.fs_in, plan.fs_out, len(x))
    flat = flat_mask(x, max(2, int(cfg.flat_min_s.get(plan.kind, 2.0) * plan.fs_in)))
    windows = z[starts[:, None] + np.arange(plan.window)[None, :]]
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        q = {"nan": window_fraction(~np.isfinite(z), starts, plan.window),
             "flat": window_fraction(flat[idx], starts, plan.window),
             "clip": window_fraction(clipped[idx], starts, plan.window),
             "out": window_fraction(outside_range(x, cfg.physical_range.get(plan.kind))[idx],
                                    starts, plan.window),
             "range": np.nan_to_num(np.nanmax(windows, axis=1) - np.nanmin(windows, axis=1))
             if len(starts) else np.empty(0)}
    if plan.kind != "ecg":
        q["beat"] = np.full(len(starts), np.nan)
        return q, None
    # Detect at the output rate (3x fewer samples than 360 Hz); beats refine on native data.
    peaks = detect_r_peaks(y, plan.fs_out)
    q["beat"] = beat_quality(z, plan.fs_out, peaks, starts, plan.window)
    return q, peaks


def process_channel(x: np.ndarray, clipped: np.ndarray, plan: ChannelPlan, chunk: Chunk,
                    seg: Segment, cfg: WindowWaveforms, want_beats: bool,
                    kept_before: np.ndarray | None = None) -> ChannelResult:
    """Resample, filter, window, score and normalise one signal of one chunk.

    Beats (``want_beats``) are cut only where a kept window lies: ``kept_before`` are the
    segment-grid starts of the windows kept in earlier chunks that may reach into this one
    (a window starting in the previous core can cover this core's first beats).
    """
    y = resample_runs(bridge_short_gaps(x, int(cfg.bridge_gap_s * plan.fs_in)),
                      plan.fs_in, plan.fs_out)
    mains = cfg.mains_hz if plan.kind in cfg.notch_kinds else None
    band = tuple(cfg.bands[plan.kind]) if plan.kind in cfg.bands else (None, None)
    z = filtfilt_runs(y, filter_sos(plan.fs_out, band, mains))
    starts = window_starts(chunk, seg.frame_fs, plan, len(z))
    q, peaks = score_windows(x, clipped, y, z, starts, plan, cfg)
    reason = drop_reasons(q, plan.kind, cfg)
    keep = reason < 0
    with _quiet_nan_warnings():
        values = normalise_windows(z[starts[keep, None] + np.arange(plan.window)[None, :]],
                                   cfg.normalize).astype(np.float32)
    t0 = (seg.start_frame + chunk.frame0) / seg.frame_fs
    g0 = grid_offset(chunk, seg.frame_fs, plan)
    result = ChannelResult(
        starts_s=t0 + starts[keep] / plan.fs_out, values=values,
        quality={k: v[keep].astype(np.float32) for k, v in q.items() if k != "out"},
        reasons=Counter(DROP_REASONS[r] for r in reason[~keep]), kept_starts=g0 + starts[keep])
    if want_beats and peaks is not None:
        native = peaks_to_native(peaks, plan.fs_out, x, plan.fs_in)
        kept = np.concatenate([kept_before if kept_before is not None
                               else np.empty(0, np.int64), result.kept_starts])
        result.beats, result.beats_out_of_range, result.beats_withheld = _chunk_beats(
            x, z, native, plan, chunk, seg, cfg, kept - g0)
    return result


def _chunk_beats(x, z, peaks, plan: ChannelPlan, chunk: Chunk, seg: Segment,
                 cfg: WindowWaveforms,
                 kept_starts: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray, float], int, int]:
    """Beats with their R peak in the chunk's core and in a kept window (``kept_starts``,
    local output indices): ``(values, peaks on the record's native sample line (segment
    offset included), the beats' actual sampling rate)``, how many were left out because
    their R peak is outside the physiological range, and how many because no kept window
    holds them."""
    spf = seg.samps_per_frame[plan.index]
    core = ((chunk.core_start - chunk.frame0) * spf, (chunk.core_stop - chunk.frame0) * spf)
    peaks = peaks[(peaks >= core[0]) & (peaks < core[1])]
    # Per-beat normalisation would hide a wrong gain or an uncalibrated lead, as it would
    # for windows: such beats are left out and counted.
    implausible = outside_range(x[peaks], cfg.physical_range.get(plan.kind))
    peaks = peaks[~implausible]
    # Nor are beats cut where the windows failed quality (a flat line, gaps, a wrong rate):
    # each one normalised to unit scale would pass noise off as a beat.
    held = in_windows(np.round(peaks * (plan.fs_out / plan.fs_in)).astype(np.int64),
                      kept_starts, plan.window)
    peaks = peaks[held]
    up, down = rational_ratio(plan.fs_in, cfg.beat_fs)
    fs = plan.fs_in * up / down
    if abs(fs - plan.fs_out) < 1e-9:
        filtered = z  # the windows' filtered signal is already at the beats' rate
    else:
        band = tuple(cfg.bands.get("ecg", (None, None)))
        xf = filtfilt_runs(bridge_short_gaps(x, int(cfg.bridge_gap_s * plan.fs_in)),
                           filter_sos(plan.fs_in, band, None))
        filtered = resample_runs(xf, plan.fs_in, fs)
    values, kept = cut_beats(filtered, fs, peaks, plan.fs_in, cfg.beat_before_s,
                             cfg.beat_after_s, cfg.normalize)
    return ((values, kept + (seg.start_frame + chunk.frame0) * spf, fs),
            int(implausible.sum()), int((~held).sum()))


@contextmanager
def _quiet_nan_warnings() -> Iterator[None]:
    """All-NaN windows are expected (they are dropped); numpy's warnings about them are not
    news."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# ---------------------------------------------------------------------------------------------
# One record


def _float_lists(values: np.ndarray) -> pa.Array:
    n, width = values.shape if values.ndim == 2 else (0, 0)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * width)
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type=pa.float32()))


def _stay_ids(times: np.ndarray | None, stays, n: int) -> pa.Array:
    """The stay containing each time (``intime <= t < outtime``), else null."""
    if times is None or not stays:
        return pa.nulls(n, pa.int64())
    ids = np.array([s[0] for s in stays], dtype=np.int64)
    starts = np.array([np.datetime64(s[1], "us") for s in stays])
    ends = np.array([np.datetime64(s[2], "us") for s in stays])
    pos = np.searchsorted(starts, times, side="right") - 1
    inside = (pos >= 0) & (times < ends[np.clip(pos, 0, None)])
    return pa.array(np.where(inside, ids[np.clip(pos, 0, None)], 0), mask=~inside,
                    type=pa.int64())


def _window_table(job: RecordJob, channel: str, res: ChannelResult, fs: float) -> pa.Table:
    n = len(res.starts_s)
    times = None
    if job.base_datetime is not None:
        base = np.datetime64(job.base_datetime, "us")
        times = base + np.round(res.starts_s * 1e6).astype("timedelta64[us]")
    q_beat = res.quality["beat"]
    return pa.table({
        "subject_id": pa.array([job.subject_id] * n, type=pa.int64()),
        "record_name": pa.array([job.record_name] * n, type=pa.string()),
        "channel": pa.array([channel] * n, type=pa.string()),
        "window_start": pa.array(times, type=pa.timestamp("us")) if times is not None
        else pa.nulls(n, pa.timestamp("us")),
        "start_s": pa.array(res.starts_s, type=pa.float64()),
        "fs": pa.array(np.full(n, fs), type=pa.float64()),
        "stay_id": _stay_ids(times, job.stays, n),
        "values": _float_lists(res.values),
        "q_nan_frac": pa.array(res.quality["nan"]), "q_flat_frac": pa.array(res.quality["flat"]),
        "q_clip_frac": pa.array(res.quality["clip"]), "q_range": pa.array(res.quality["range"]),
        "q_beat": pa.array(q_beat, mask=np.isnan(q_beat), type=pa.float32()),
    }, schema=WINDOW_SCHEMA)


def _beat_table(job: RecordJob, channel: str, values: np.ndarray, peaks: np.ndarray,
                fs: float, reference, native_fs: float) -> pa.Table:
    n = len(peaks)
    return pa.table({
        "subject_id": pa.array([job.subject_id] * n, type=pa.int64()),
        "record_name": pa.array([job.record_name] * n, type=pa.string()),
        "channel": pa.array([channel] * n, type=pa.string()),
        "r_peak_sample": pa.array(peaks, type=pa.int64()),
        "fs": pa.array(np.full(n, fs), type=pa.float64()),
        "values": _float_lists(values),
        "symbol": pa.array(symbols_for(peaks, reference, native_fs), type=pa.string()),
    }, schema=BEAT_SCHEMA)


def plan_channels(seg: Segment, cfg: WindowWaveforms,
                  report: RecordReport) -> list[ChannelPlan]:
    """The signals of a segment to window (one per canonical channel); the others are
    recorded in the report with the reason."""
    plans, seen = [], set()
    for i, raw in enumerate(seg.sig_names):
        canonical = canonical_channel(raw)
        if canonical is None:
            report.skipped_channels[raw] = "not a known waveform channel"
        elif cfg.channels is not None and canonical not in cfg.channels:
            report.skipped_channels[raw] = "not in window_waveforms.channels"
        elif seg.fs(i) < cfg.min_native_fs:
            report.skipped_channels[raw] = "sampling rate below min_native_fs"
        elif canonical in seen:
            report.skipped_channels[raw] = f"second signal mapped to {canonical}"
        else:
            seen.add(canonical)
            plans.append(ChannelPlan.make(seg, i, canonical, cfg))
    return plans


def process_record(job: RecordJob) -> dict[str, Any]:
    """Window one record into ``job.out_file`` (and its beats into ``job.beats_file``);
    returns its data-quality report."""
    path = Path(job.path)
    segments, skipped, _ = record_segments(path)
    report = RecordReport(
        skipped_segments=[{"segment": s.name, "reason": s.reason} for s in skipped],
        data_longer_than_header=sum(s.extra_frames for s in segments),
        length_from_data_file=any(s.length_from_file for s in segments),
        empty_record=not skipped and sum(s.n_frames for s in segments) == 0)
    # Reference annotations index the single-segment record's own sample line.
    reference = (load_reference(path, job.cfg.reference_annotation)
                 if len(segments) == 1 and segments[0].path == str(path) else None)
    with (atomic_path(job.out_file) as tmp, _beat_sink(job.beats_file) as beat_writer,
          pq.ParquetWriter(tmp, WINDOW_SCHEMA, **PARQUET_OPTIONS) as writer):
        for seg in segments:
            _process_segment(job, seg, writer, beat_writer, reference, report)
    return report.as_dict()


def window_record(job: RecordJob) -> dict[str, Any]:
    """:func:`process_record` as an executor item: a failure's message hides the record's
    path and subject id (the executor logs it), and the stage puts the path back in the DQ
    report."""
    try:
        return process_record(job)
    except Exception as exc:  # noqa: BLE001 - every failure quarantines the record
        message = (str(exc).splitlines()[0] if isinstance(exc, DataError) and str(exc)
                   else error_reason(exc, typed=True))
        raise DataError(hide_record(message,
                                    job.path, job.subject_id)) from None


def _process_segment(job: RecordJob, seg: Segment, writer, beat_writer, reference,
                     report: RecordReport) -> None:
    cfg = job.cfg
    plans = plan_channels(seg, cfg, report)
    if not plans:
        return
    beat_index = (pick_ecg_channel([p.raw for p in plans], cfg.beat_channel)
                  if beat_writer is not None else None)
    pad = int((cfg.window_s + _settle_s(plans, cfg)) * seg.frame_fs)
    chunk_frames = max(1, int(cfg.chunk_s * seg.frame_fs))
    kept_before = None  # the beat lead's kept windows that may reach into the next chunk
    for chunk in iter_chunks(seg, chunk_frames, pad, [p.index for p in plans]):
        tables = []
        for j, (plan, data) in enumerate(zip(plans, chunk.channels, strict=True)):
            res = process_channel(data.values, data.clipped, plan, chunk, seg, cfg,
                                  want_beats=j == beat_index, kept_before=kept_before)
            if j == beat_index:
                reach = -(-plan.window // plan.stride)  # windows that can cover one point
                kept_before = np.concatenate([kept_before if kept_before is not None
                                              else np.empty(0, np.int64),
                                              res.kept_starts])[-reach:]
            report.produced[plan.canonical] += len(res.starts_s)
            report.dropped.setdefault(plan.canonical, Counter()).update(res.reasons)
            tables.append((plan.canonical, _window_table(job, plan.canonical, res, plan.fs_out)))
            report.beats_out_of_range += res.beats_out_of_range
            report.beats_withheld += res.beats_withheld
            if res.beats is not None and len(res.beats[1]):
                report.beats += len(res.beats[1])
                beat_writer.write_table(_beat_table(job, plan.canonical, *res.beats,
                                                    reference, plan.fs_in))
        for _, table in sorted(tables, key=lambda t: t[0]):
            writer.write_table(table)


def _settle_s(plans: list[ChannelPlan], cfg: WindowWaveforms) -> float:
    """Padding read either side of a chunk so filters settle before windows start: a few time
    constants of the lowest high-pass edge in use (0.05 Hz needs a minute), at least 5 s."""
    lows = [cfg.bands[p.kind][0] for p in plans if p.kind in cfg.bands and cfg.bands[p.kind][0]]
    return max([5.0] + [3.0 / low for low in lows])


@contextmanager
def _beat_sink(file: str | None) -> Iterator[pq.ParquetWriter | None]:
    """An atomic Parquet writer for the record's beats, or ``None`` when beats are off."""
    if file is None:
        yield None
        return
    with atomic_path(file) as tmp, pq.ParquetWriter(tmp, BEAT_SCHEMA,
                                                    **PARQUET_OPTIONS) as writer:
        yield writer


# ---------------------------------------------------------------------------------------------
# The stage


def load_stays_or_none(params) -> Any:
    """EHR stays (subject_id, hadm_id, stay_id, intime, outtime) when the EHR side provides
    them, else ``None`` (linkage is then skipped and ``stay_id`` stays null)."""
    try:
        from medae.ehr.stays import load_stays
    except ImportError:
        log.info("medae.ehr.stays is not available: windows are not linked to ICU stays")
        return None
    try:
        return load_stays(params)
    except (MedaeError, FileNotFoundError, OSError) as exc:
        log.warning("EHR stays could not be loaded (%s): windows are not linked to stays", exc)
        return None


def _stays_by_subject(stays) -> dict[int, tuple]:
    if stays is None or stays.height == 0:
        return {}
    rows = (stays.select("subject_id", "stay_id", "intime", "outtime")
            .drop_nulls().sort("subject_id", "intime", "stay_id"))
    out: dict[int, list] = {}
    for subject, stay, intime, outtime in rows.iter_rows():
        out.setdefault(int(subject), []).append((int(stay), intime, outtime))
    return {k: tuple(v) for k, v in out.items()}


def record_fingerprint(row: dict[str, Any], params_hash: str, stays: tuple) -> str:
    """A hash of what one record's output depends on: its files, the params, its stays and
    ``FORMAT_VERSION``."""
    blob = json.dumps([row["fingerprint"], row["path"], params_hash, stays, FORMAT_VERSION],
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _jobs(params, catalog, stays_by_subject):
    cfg = params.window_waveforms
    out = params.path(cfg.out)
    beats_out = params.path(cfg.beats_out)
    source = params.path(params.waveforms.source).resolve()
    params_hash = params.section_hash("waveforms", "window_waveforms")
    seen: dict[str, str] = {}
    for index, row in enumerate(catalog.sort("path").iter_rows(named=True)):
        name = row["record_name"]
        if name in seen:
            yield index, row, None, (f"duplicate record name: {row['path']} is not windowed, "
                                     f"{seen[name]} is (first by path)"), None
            continue
        seen[name] = row["path"]
        stays = stays_by_subject.get(row["subject_id"], ()) if row["subject_id"] is not None \
            else ()
        job = RecordJob(name, str(source / row["path"]), row["subject_id"], row["base_datetime"],
                        stays, cfg, str(out / f"{name}.parquet"),
                        str(beats_out / f"{name}.parquet") if cfg.beats else None)
        yield index, row, job, None, record_fingerprint(row, params_hash, stays)


def _row_number(label: str) -> int:
    return int(label.rsplit(" ", 1)[-1])


def work_estimate(row: dict[str, Any]) -> int:
    """Samples a record's readable segments hold, all channels (a catalog row's cost).

    >>> work_estimate({"channels": ["II", "V"], "segments": [
    ...     {"n_frames": 100, "has_data": True}, {"n_frames": 900, "has_data": False}]})
    200
    """
    frames = sum(s["n_frames"] or 0 for s in row["segments"] or [] if s["has_data"])
    return frames * max(1, len(row["channels"] or []))


def run(params) -> dict[str, Any]:
    """Stage ``window_waveforms``: window every catalogued record that changed."""
    import polars as pl

    from medae.executor import map_items

    cfg = params.window_waveforms
    catalog_file = params.path(params.catalog_waveforms.out)
    if not catalog_file.exists():
        raise DataError(f"{catalog_file}: waveform catalog not found; run catalog_waveforms")
    catalog = pl.read_parquet(catalog_file)
    if catalog.height == 0:  # never remove every output because nothing was catalogued
        refuse_empty_source(params, catalog_file)
    out, report_file = params.path(cfg.out), params.path(cfg.report)
    ensure_dir(out)
    if cfg.beats:
        ensure_dir(params.path(cfg.beats_out))
    old_prints = read_state(out / FINGERPRINTS)
    old_report = read_state(report_file).get("records", {})
    stays = _stays_by_subject(load_stays_or_none(params))

    records: dict[str, Any] = {}
    prints: dict[str, str] = {}
    todo: list[tuple[str, RecordJob, str, str, int]] = []
    paths: dict[str, str] = {}
    duplicates = Counter()
    for index, row, job, problem, fp in _jobs(params, catalog, stays):
        name = row["record_name"]
        if problem is not None:
            duplicates[name] += 1  # one entry each: "<name>#dup1", "<name>#dup2", ...
            records[f"{name}#dup{duplicates[name]}"] = {"error": problem, "duplicate": True}
            continue
        outputs = [Path(job.out_file)] + ([Path(job.beats_file)] if job.beats_file else [])
        if (old_prints.get(name) == fp and name in old_report and "error" not in old_report[name]
                and all(p.exists() for p in outputs)):
            records[name], prints[name] = old_report[name], fp
        else:
            # Logs name a record by its catalog row: MIMIC names embed the subject id.
            label = f"catalog row {index}"
            paths[label] = row["path"]
            todo.append((name, job, fp, label, work_estimate(row)))
    # Longest records first, so that no worker is left alone with a long one at the end.
    todo.sort(key=lambda t: -t[4])
    skipped = len(prints)
    log.info("window_waveforms: %d records to process, %d unchanged", len(todo), skipped)
    result = map_items(window_record, [t[1] for t in todo], params.executor,
                       names=[t[3] for t in todo], desc="window_waveforms", on_error="collect")
    failed = {f.name: show_record(f.error, paths[f.name]) for f in result.failures}
    for (name, _, fp, label, _), value in zip(todo, result.values, strict=True):
        if label in failed:
            records[name] = {"error": failed[label]}
        else:
            records[name], prints[name] = value, fp
    if duplicates:
        log.warning("window_waveforms: %d records not windowed: their name is another "
                    "record's (duplicate names); their paths are in %s",
                    sum(duplicates.values()), report_file)
    if failed:
        log.warning("window_waveforms: %d records quarantined (%s); their paths and reasons "
                    "are in %s", len(failed), ", ".join(sorted(failed, key=_row_number)),
                    report_file)
    # A failed record's earlier outputs go too: later stages would read them as current.
    # Removed before the fingerprints and report are published, so a kill in between leaves
    # the record to be redone, never stale files beside a report that calls them current.
    failed_names = {name for name, _, _, label, _ in todo if label in failed}
    removed = _remove_outputs(out, params.path(cfg.beats_out),
                              set(catalog["record_name"].to_list()) - failed_names)
    for name in failed_names:
        if removed.get(name):
            records[name]["outputs_removed"] = removed[name]
    write_json_atomic(out / FINGERPRINTS, dict(sorted(prints.items())))
    totals = _totals(records)
    head = {"stage": "window_waveforms", "totals": totals}
    write_json_atomic(report_file, {**head, "records": dict(sorted(records.items()))})
    write_json_atomic(params.path(cfg.totals), head)  # the DVC metric: no record names
    return {"records": len(records), "processed": len(todo) - len(failed),
            "unchanged": skipped, "quarantined": len(failed), **totals,
            "out": str(out), "report": str(report_file)}


def _totals(records: dict[str, Any]) -> dict[str, Any]:
    dropped = Counter()
    produced = beats = withheld = 0
    for rec in records.values():
        if "error" in rec:
            continue
        produced += rec["windows_produced"]
        beats += rec["beats"]
        withheld += rec.get("beats_withheld", 0)
        dropped.update(rec["windows_dropped"])
    return {"windows_produced": produced, "beats": beats, "beats_withheld": withheld,
            "windows_dropped": {r: dropped.get(r, 0) for r in DROP_REASONS},
            "records_failed": sum("error" in r for r in records.values()),
            "records_duplicate": sum(bool(r.get("duplicate")) for r in records.values()),
            # Headline counts of the per-record notes, so the run report shows them.
            "records_empty": sum(bool(r.get("empty_record")) for r in records.values()),
            "records_data_longer_than_header": sum(
                bool(r.get("data_longer_than_header")) for r in records.values())}


def _remove_outputs(out: Path, beats_out: Path, keep: set[str]) -> Counter:
    """Delete the window and beat files of every record not in ``keep`` (records no longer
    catalogued, and records that failed this run); returns the files removed per record.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("a", "b"):
    ...     _ = (folder / f"{name}.parquet").write_bytes(b"")
    >>> dict(_remove_outputs(folder, folder / "beats", {"a"})), sorted(folder.iterdir())[0].name
    ({'b': 1}, 'a.parquet')
    """
    removed: Counter = Counter()
    for folder in (out, beats_out):
        if not folder.is_dir():
            continue
        for file in sorted(folder.glob("*.parquet")):
            if file.stem not in keep:
                file.unlink()
                removed[file.stem] += 1
    if removed:  # counted, not named: record names embed subject ids
        log.info("removed %d output files of records not catalogued or failed",
                 sum(removed.values()))
    return removed
