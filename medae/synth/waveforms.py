"""MIMIC-style bedside waveform records (ECG II, PLETH, ABP) linked to the synthetic ICU stays.

Each selected stay gets one multi-segment record starting inside the stay, in the layout of the
MIMIC-III waveform database matched subset::

    <out>/RECORDS                      p10/p10000118/ ...
    <out>/p10/p10000118/RECORDS        p10000118-2183-01-29-05-12
    <out>/p10/p10000118/p10000118-2183-01-29-05-12.hea   master: layout + segments + ~ gaps
    <out>/p10/p10000118/3000001_layout.hea               0-length, every channel
    <out>/p10/p10000118/3000001_0001.{hea,dat} ...       the data segments

The heart rate follows the same per-stay trajectory as the charted heart rate
(:func:`medae.synth.cohort.heart_rate_mean`). Records are format 80 at 125 Hz like MIMIC-III, or
(a share of them) format 16 with ECG II at 250 Hz in the same record as 2 samples per 125 Hz
frame, like MIMIC-IV. Artifacts are injected at :data:`WAVEFORM_ARTIFACT_RATES`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from medae.io import atomic_dir
from medae.synth.cohort import as_arrays, heart_rate_mean, latent_at
from medae.synth.items import VITALS
from medae.synth.wfdb_write import (
    SignalSpec,
    annotation_bytes,
    encode_frames,
    layout_header,
    master_header,
    segment_header,
    to_digital,
)

log = logging.getLogger(__name__)

FRAME_FS = 125.0
RECORD_SECONDS = 300.0   # default seconds of signal per record (~ gaps of 2-20 s come on top)
MULTIRATE_SHARE = 0.5    # share of records with ECG at 250 Hz (format 16)
FIRST_RECORD_ID = 3_000_001
RECORDS_PER_BATCH = 100      # records per worker task
PARALLEL_MIN_RECORDS = 400   # below this, worker start-up costs more than it saves
# The stay fields record generation reads (latent trajectory, heart-rate offset, stay end).
STAY_FIELDS = ("severity", "trend", "osc_amp", "osc_period_h", "osc_phase", "t0_s", "t1_s",
               "hr_offset", "out_s")
NUMERICS_HOURS = 12.0    # longest numerics record (1 sample per minute)
NUMERICS_UNITS = {"HR": "bpm", "PULSE": "bpm", "RESP": "pm", "SpO2": "%", "ABPSys": "mmHg",
                  "ABPDias": "mmHg", "ABPMean": "mmHg"}

# Probabilities per segment (per record for mains noise and strong wander). docs/synth.md
# lists the same numbers; the summary of write_waveforms counts what was injected.
WAVEFORM_ARTIFACT_RATES: dict[str, float] = {
    "nan_gap": 0.4,          # 1-5 s of invalid samples (NaN) in one channel
    "flat_line": 0.3,        # 2-8 s of a constant value (lead off) in ECG or PLETH
    "clipping": 0.3,         # 1-4 s motion burst saturating the ADC in ECG or ABP
    "channel_missing": 0.3,  # ABP (or PLETH, 1 in 3) absent from the segment
    "mains_noise": 0.3,      # per record: 50 or 60 Hz hum on ECG
    "strong_wander": 0.3,    # per record: 0.2-0.35 mV baseline wander on ECG
    "gap": 0.5,              # a ~ gap of 2-20 s before a segment (not the first)
}

# Storage as in MIMIC-III (format 80) and MIMIC-IV style format 16 records.
SPECS_80 = {"II": SignalSpec("II", "mV", 127, -64, 8),
            "PLETH": SignalSpec("PLETH", "NU", 255, -128, 8),
            "ABP": SignalSpec("ABP", "mmHg", 1.28, -109, 8)}
SPECS_16 = {"II": SignalSpec("II", "mV", 500, 0, 12, spf=2),
            "PLETH": SignalSpec("PLETH", "NU", 4095, -2048, 12),
            "ABP": SignalSpec("ABP", "mmHg", 100, 0, 16)}

# PQRST as Gaussians around the R peak: (centre s, width s, amplitude mV); the T wave moves
# with the RR interval (QT shortens at high rates).
ECG_WAVES = [(-0.20, 0.025, 0.12), (-0.035, 0.010, -0.10), (0.0, 0.011, 1.0),
             (0.035, 0.010, -0.25)]
T_WAVE = (0.30, 0.045, 0.30)


@dataclass(frozen=True)
class RecordPlan:
    """Where one record goes and how it is laid out."""

    subject_id: int
    stay_row: int
    record_id: int
    start_s: int            # epoch seconds of the first sample
    segments: list[tuple[int, int, list[str]]]  # (start frame, n frames, channels); gaps between
    total_frames: int
    multirate: bool
    has_abp: bool           # the stay has an arterial line

    @property
    def name(self) -> str:
        start = dt.datetime.fromtimestamp(self.start_s, dt.UTC)
        return f"p{self.subject_id}-{start:%Y-%m-%d-%H-%M}"

    @property
    def folder(self) -> str:
        return f"p{str(self.subject_id)[:2]}/p{self.subject_id}"


def beat_times(hr_bpm: np.ndarray, fs: float, rng: np.random.Generator) -> np.ndarray:
    """R-peak times (s) for an instantaneous heart rate sampled at ``fs``, with sinus arrhythmia.

    >>> t = beat_times(np.full(600, 60.0), 10.0, np.random.default_rng(0))
    >>> 58 <= len(t) <= 61, bool(np.allclose(np.diff(t).mean(), 1.0, atol=0.05))
    (True, True)
    """
    seconds = np.arange(len(hr_bpm)) / fs
    rsa = 1 + 0.03 * np.sin(2 * np.pi * 0.25 * seconds + rng.uniform(0, 2 * np.pi))
    phase = np.cumsum(hr_bpm * rsa / 60.0) / fs + rng.uniform(0, 1)
    beats = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
    return beats / fs


def _time_to_beats(t: np.ndarray, beats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each time: seconds since the previous beat, until the next one, and that RR."""
    # Pad with one beat before and after so every time has a neighbour on each side.
    first = min(beats[0] if len(beats) else 0.0, t.min(initial=0.0)) - 1.0
    last = max(beats[-1] if len(beats) else 0.0, t.max(initial=0.0)) + 1.0
    padded = np.concatenate([[first], beats, [last]])
    nxt = np.clip(np.searchsorted(padded, t, side="right"), 1, len(padded) - 1)
    prev_t, next_t = padded[nxt - 1], padded[nxt]
    return t - prev_t, t - next_t, next_t - prev_t


def ecg_wave(t: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Lead II ECG (mV) from a PQRST template placed at every R peak.

    >>> t = np.arange(0, 2, 0.004)
    >>> sig = ecg_wave(t, np.array([0.5, 1.5]))
    >>> round(float(sig.max()), 2), float(t[sig.argmax()]) in (0.5, 1.5)
    (1.0, True)
    """
    since, until, rr = _time_to_beats(t, beats)
    sig = np.zeros_like(t)
    for centre, width, amp in ECG_WAVES:
        rel = since if centre >= 0 else until
        sig += amp * np.exp(-0.5 * ((rel - centre) / width) ** 2)
    centre, width, amp = T_WAVE
    sig += amp * np.exp(-0.5 * ((since - centre * np.sqrt(rr)) / (width * np.sqrt(rr))) ** 2)
    return sig


def pulse_wave(t: np.ndarray, beats: np.ndarray, delay: float) -> np.ndarray:
    """A 0..1 arterial pulse per beat (fast upstroke, decay, dicrotic notch), ``delay`` s after R.

    >>> p = pulse_wave(np.arange(0, 2, 0.008), np.array([0.2, 1.2]), 0.2)
    >>> 0.9 < float(p.max()) <= 1.0, float(p.min()) >= 0.0
    (True, True)
    """
    since, _, rr = _time_to_beats(t - delay, beats)
    rise = np.exp(-0.5 * ((since - 0.09) / 0.035) ** 2)
    decay = np.where(since > 0.09, np.exp(-(since - 0.09) / (0.35 * rr)), 0.0)
    notch = 0.12 * np.exp(-0.5 * ((since - 0.09 - 0.28 * np.sqrt(rr)) / 0.03) ** 2)
    return np.clip(np.maximum(rise, decay) + notch, 0, 1)


def plan_records(stays: pl.DataFrame, share: float, seconds: float,
                 rng: np.random.Generator) -> list[RecordPlan]:
    """Pick ``share`` of the ICU stays and lay out one record inside each."""
    chosen = np.flatnonzero(rng.random(stays.height) < share)
    in_s, out_s = stays["in_s"].to_numpy(), stays["out_s"].to_numpy()
    plans = []
    for k, row in enumerate(chosen):
        stay_len = out_s[row] - in_s[row]
        length = min(seconds, 0.5 * stay_len)
        has_abp = bool(stays["aline"][int(row)])
        segments, total = _segment_layout(int(length * FRAME_FS), has_abp, rng)
        spare = max(stay_len - total / FRAME_FS, 0)  # the whole span, gaps included, fits
        start = int(in_s[row] + rng.uniform(0.05, 0.95) * spare)
        plans.append(RecordPlan(int(stays["subject_id"][int(row)]), int(row),
                                FIRST_RECORD_ID + k, start, segments, total,
                                bool(rng.random() < MULTIRATE_SHARE), has_abp))
    return plans


def _segment_layout(n_frames: int, has_abp: bool,
                    rng: np.random.Generator) -> tuple[list[tuple[int, int, list[str]]], int]:
    """2-4 data segments with optional ~ gaps between them; channels vary per segment."""
    n_seg = int(rng.integers(2, 5))
    cuts = np.sort(rng.choice(np.arange(1, 20), size=n_seg - 1, replace=False)) / 20
    bounds = np.round(np.concatenate([[0], cuts, [1]]) * n_frames).astype(int)
    segments, cursor = [], 0
    for i in range(n_seg):
        if i and rng.random() < WAVEFORM_ARTIFACT_RATES["gap"]:
            cursor += int(rng.uniform(2, 20) * FRAME_FS)
        channels = ["II", "PLETH"] + (["ABP"] if has_abp else [])
        if rng.random() < WAVEFORM_ARTIFACT_RATES["channel_missing"]:
            drop = "ABP" if has_abp and rng.random() < 2 / 3 else "PLETH"
            channels.remove(drop)
        length = int(bounds[i + 1] - bounds[i])
        segments.append((cursor, length, channels))
        cursor += length
    return segments, cursor


def record_signals(plan: RecordPlan, stays: dict[str, np.ndarray],
                   rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Physical signals over the whole record span (gaps included; they are cut out later),
    and the R-peak times (s from the record start)."""
    row = plan.stay_row
    seconds = plan.total_frames / FRAME_FS
    t_coarse = np.arange(0, seconds + 1.0)
    x = latent_at(stays, plan.start_s + t_coarse, np.full(len(t_coarse), row))
    hr = heart_rate_mean(x, np.full(len(x), stays["hr_offset"][row]))
    abp = VITALS["abp_sys"], VITALS["abp_dia"]
    sys_, dia = (v.base + v.effect * x for v in abp)
    ecg_fs = FRAME_FS * (2 if plan.multirate else 1)
    t_ecg = np.arange(plan.total_frames * (2 if plan.multirate else 1)) / ecg_fs
    t = np.arange(plan.total_frames) / FRAME_FS
    beats = beat_times(np.interp(t_ecg, t_coarse, hr), ecg_fs, rng)
    resp = np.sin(2 * np.pi * rng.uniform(0.2, 0.35) * t)
    ecg = (ecg_wave(t_ecg, beats) + 0.06 * np.interp(t_ecg, t, resp)
           + 0.04 * np.sin(2 * np.pi * 0.03 * t_ecg + rng.uniform(0, 6))
           + 0.012 * rng.standard_normal(len(t_ecg)))
    ppg = 0.15 + 0.65 * pulse_wave(t, beats, 0.25) * (1 - 0.1 * resp) \
        + 0.005 * rng.standard_normal(len(t))
    pressure = np.interp(t, t_coarse, dia) + np.interp(t, t_coarse, sys_ - dia) \
        * pulse_wave(t, beats, 0.18) + 2 * resp + 0.5 * rng.standard_normal(len(t))
    return {"II": ecg, "PLETH": ppg, "ABP": pressure}, beats


def inject_record_artifacts(signals: dict[str, np.ndarray], plan: RecordPlan,
                            rng: np.random.Generator, counts: Counter) -> None:
    """Mains hum, strong wander, and per segment NaN gaps, flat lines and clipping (in place)."""
    ecg_fs = FRAME_FS * (2 if plan.multirate else 1)
    t_ecg = np.arange(len(signals["II"])) / ecg_fs
    if rng.random() < WAVEFORM_ARTIFACT_RATES["mains_noise"]:
        hz = 50.0 if rng.random() < 0.5 else 60.0
        signals["II"] += rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * hz * t_ecg)
        counts["mains_noise"] += 1
    if rng.random() < WAVEFORM_ARTIFACT_RATES["strong_wander"]:
        signals["II"] += rng.uniform(0.2, 0.35) * np.sin(2 * np.pi * 0.15 * t_ecg)
        counts["strong_wander"] += 1
    for start, n, channels in plan.segments:
        # NaN gaps last, so a later burst never overwrites them.
        for kind, pool, seconds in (("flat_line", ["II", "PLETH"], (2, 8)),
                                    ("clipping", ["II", "ABP"], (1, 4)),
                                    ("nan_gap", channels, (1, 5))):
            present = [c for c in pool if c in channels]
            if not present or rng.random() >= WAVEFORM_ARTIFACT_RATES[kind]:
                continue
            channel = present[int(rng.integers(len(present)))]
            _burst(signals, channel, kind, start, n, seconds, plan, rng)
            counts[kind] += 1


def _burst(signals: dict[str, np.ndarray], channel: str, kind: str, seg_start: int,
           seg_len: int, seconds: tuple[float, float], plan: RecordPlan,
           rng: np.random.Generator) -> None:
    spf = 2 if (channel == "II" and plan.multirate) else 1
    length = min(int(rng.uniform(*seconds) * FRAME_FS), seg_len // 2)
    first = seg_start + int(rng.integers(0, max(seg_len - length, 1)))
    window = slice(first * spf, (first + length) * spf)
    sig = signals[channel]
    if kind == "nan_gap":
        sig[window] = np.nan
    elif kind == "flat_line":
        sig[window] = sig[window.start]
    else:  # a motion burst far beyond the ADC range: the stored signal saturates
        sig[window] += 1e3 * np.sign(rng.standard_normal()) * np.hanning(window.stop - window.start)


def write_record(folder: Path, plan: RecordPlan, signals: dict[str, np.ndarray]) -> int:
    """Write master, layout and segment headers plus .dat files; returns segments written."""
    specs = SPECS_16 if plan.multirate else SPECS_80
    fmt = 16 if plan.multirate else 80
    start = dt.datetime.fromtimestamp(plan.start_s, dt.UTC)
    prefix = str(plan.record_id)
    used = [c for c in ("II", "PLETH", "ABP") if any(c in ch for _, _, ch in plan.segments)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}_layout.hea").write_text(
        layout_header(f"{prefix}_layout", [specs[c] for c in used], FRAME_FS, start))
    entries, cursor = [], 0
    for i, (seg_start, n, channels) in enumerate(plan.segments, start=1):
        if seg_start > cursor:
            entries.append(("~", seg_start - cursor))
        name = f"{prefix}_{i:04d}"
        seg_specs = [specs[c] for c in channels]
        digital = [to_digital(signals[c][seg_start * s.spf:(seg_start + n) * s.spf], s, fmt)
                   for c, s in zip(channels, seg_specs, strict=True)]
        seg_time = start + dt.timedelta(seconds=seg_start / FRAME_FS)
        (folder / f"{name}.hea").write_text(
            segment_header(name, seg_specs, digital, fmt, FRAME_FS, seg_time))
        (folder / f"{name}.dat").write_bytes(encode_frames(digital, seg_specs, fmt))
        entries.append((name, n))
        cursor = seg_start + n
    (folder / f"{plan.name}.hea").write_text(
        master_header(plan.name, f"{prefix}_layout", entries, len(used), FRAME_FS, start))
    return len(plan.segments)


def write_numerics(folder: Path, plan: RecordPlan, stays: dict[str, np.ndarray],
                   rng: np.random.Generator) -> int:
    """The companion numerics record ``<record>n`` (1 sample/min, format 16, gain 10), as in the
    MIMIC-III matched subset: HR, PULSE, RESP, SpO2 and, with an arterial line, ABP
    systolic/diastolic/mean, from the same latent trajectory as the charted vitals. It spans
    from the waveform record's start to the end of the stay (at most NUMERICS_HOURS)."""
    minutes = int(min(NUMERICS_HOURS * 60, (stays["out_s"][plan.stay_row] - plan.start_s) // 60))
    t = plan.start_s + 60 * np.arange(max(minutes, 1))
    x = latent_at(stays, t, np.full(len(t), plan.stay_row))
    hr = heart_rate_mean(x, np.full(len(t), stays["hr_offset"][plan.stay_row]))
    values = {"HR": hr, "PULSE": hr + rng.normal(0, 1, len(t)),
              "RESP": VITALS["rr"].base + VITALS["rr"].effect * x,
              "SpO2": np.minimum(VITALS["spo2"].base + VITALS["spo2"].effect * x, 100)}
    if plan.has_abp:
        sys_, dia = (VITALS[n].base + VITALS[n].effect * x for n in ("abp_sys", "abp_dia"))
        values |= {"ABPSys": sys_, "ABPDias": dia, "ABPMean": (sys_ + 2 * dia) / 3}
    specs = [SignalSpec(name, NUMERICS_UNITS[name], 10, 0, 16) for name in values]
    digital = [to_digital(np.round(v + rng.normal(0, 0.5, len(t))), spec, 16)
               for v, spec in zip(values.values(), specs, strict=True)]
    name, dat = f"{plan.name}n", f"{plan.record_id}n.dat"
    start = dt.datetime.fromtimestamp(plan.start_s, dt.UTC)
    (folder / f"{name}.hea").write_text(segment_header(
        name, specs, digital, 16, 1 / 60, start, dat=dat, fs_field="0.0166666666667/125",
        with_date=True))
    (folder / dat).write_bytes(encode_frames(digital, specs, 16))
    return len(t)


def write_beat_annotations(folder: Path, plan: RecordPlan, beats: np.ndarray) -> int:
    """Reference R peaks as ``<record>.atr`` (symbol ``N``, 125 Hz frame numbers), as the
    PhysioNet databases ship them; beats inside ~ gaps are left out. Returns the beat count."""
    frames = np.round(beats * FRAME_FS).astype(np.int64)
    inside = np.zeros(len(frames), dtype=bool)
    for start, n, _ in plan.segments:
        inside |= (frames >= start) & (frames < start + n)
    frames = np.unique(frames[inside])
    (folder / f"{plan.name}.atr").write_bytes(annotation_bytes(frames, FRAME_FS))
    return len(frames)


@dataclass(frozen=True)
class RecordBatch:
    """A picklable unit of work for one worker: records, their stream numbers, their stays."""

    seed: int
    root: str
    numbered: list[tuple[int, RecordPlan]]  # (random stream number, plan with local stay_row)
    stays: dict[str, np.ndarray]            # only the rows and fields these records need


def write_batch(batch: RecordBatch) -> dict[str, int]:
    """Generate and write every record of ``batch``; returns the artifact/segment counts."""
    from medae.synth.generate import STREAM_WAVE, stream_rng

    counts: Counter = Counter()
    for number, plan in batch.numbered:
        rng = stream_rng(batch.seed, STREAM_WAVE, number)
        folder = Path(batch.root) / plan.folder
        signals, beats = record_signals(plan, batch.stays, rng)
        inject_record_artifacts(signals, plan, rng, counts)
        counts["segments"] += write_record(folder, plan, signals)
        counts["beats"] += write_beat_annotations(folder, plan, beats)
        counts["numerics_samples"] += write_numerics(folder, plan, batch.stays, rng)
        counts["multirate"] += plan.multirate
    return dict(counts)


def _batches(plans: list[RecordPlan], stays: dict[str, np.ndarray], seed: int,
             root: Path) -> list[RecordBatch]:
    batches = []
    for first in range(0, len(plans), RECORDS_PER_BATCH):
        chunk = plans[first:first + RECORDS_PER_BATCH]
        rows = np.array([p.stay_row for p in chunk])
        local = [(first + k + 1, replace(p, stay_row=k)) for k, p in enumerate(chunk)]
        batches.append(RecordBatch(seed, str(root), local,
                                   {f: stays[f][rows] for f in STAY_FIELDS}))
    return batches


def write_waveforms(out: Path, cohort, *, seed: int, share: float,
                    seconds: float = RECORD_SECONDS) -> dict:
    """Write records for ``share`` of the ICU stays under ``out`` (replaced atomically).

    Large sets fan out over local processes through :func:`medae.executor.map_items`; every
    record has its own random stream, so the bytes do not depend on how work is split.
    """
    from medae.synth.generate import STREAM_WAVE, stream_rng

    stays = cohort.stays
    plans = plan_records(stays, share, seconds, stream_rng(seed, STREAM_WAVE, 0))
    counts: Counter = Counter()
    with atomic_dir(out) as staging:
        batches = _batches(plans, as_arrays(stays), seed, staging)
        if len(plans) >= PARALLEL_MIN_RECORDS:
            from medae.config import ExecutorConfig
            from medae.executor import map_items

            results = map_items(write_batch, batches, ExecutorConfig(),
                                names=[f"records {b.numbered[0][0]}+" for b in batches],
                                desc="waveform record batches").values
        else:
            results = [write_batch(b) for b in batches]
        for result in results:
            counts.update(result)
        _write_records_files(staging, plans)
    counts["gap"] = sum(len(_gaps(p)) for p in plans)
    counts["channel_missing"] = sum(len(ch) < (3 if p.has_abp else 2)
                                    for p in plans for _, _, ch in p.segments)
    log.info("waveforms: %d records for %d stays under %s", len(plans), stays.height, out)
    return {"dir": str(out), "records": len(plans), **dict(sorted(counts.items()))}


def _gaps(plan: RecordPlan) -> list[int]:
    """Lengths (frames) of the ~ gaps between the data segments."""
    ends = [start + n for start, n, _ in plan.segments[:-1]]
    return [nxt[0] - end for end, nxt in zip(ends, plan.segments[1:], strict=True)
            if nxt[0] > end]



def _write_records_files(root: Path, plans: list[RecordPlan]) -> None:
    """PhysioNet ``RECORDS`` lists: subject folders at the top, record names in each folder."""
    by_folder: dict[str, list[str]] = {}
    for plan in plans:
        by_folder.setdefault(plan.folder, []).extend([plan.name, f"{plan.name}n"])
    (root / "RECORDS").write_text("".join(f"{f}/\n" for f in sorted(by_folder)))
    for folder, names in by_folder.items():
        (root / folder / "RECORDS").write_text("".join(f"{n}\n" for n in sorted(names)))
