"""ECG beats: a fast vectorised R-peak detector, beat extraction centred on R peaks, a
beat-based window quality score and the peak matching used to score detectors.

The detector is a Pan-Tompkins-style energy detector made fully vectorised: 5-15 Hz zero-phase
band-pass (per finite run, so gaps do not poison it), squared slope, 120 ms moving integration,
an adaptive threshold from the 98th percentile of the envelope in 4 s blocks, a 250 ms
refractory period, then each peak moved to the largest band-passed deflection within 75 ms.
It runs at tens of thousands of times real time on one core.

>>> import numpy as np
>>> fs = 250.0
>>> t = np.arange(int(20 * fs)) / fs
>>> ecg = np.exp(-((t[:, None] - np.arange(0.5, 20, 0.8)) ** 2) / 2e-4).sum(axis=1)
>>> peaks = detect_r_peaks(ecg, fs)
>>> len(peaks), int(peaks[0])
(25, 125)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import signal as sps
from scipy.ndimage import uniform_filter1d

from medae.errors import DataError
from medae.waveforms.channels import canonical_channel, is_ecg
from medae.waveforms.dsp import (
    bridge_short_gaps,
    filter_sos,
    filtfilt_runs,
    normalise_windows,
    resample_runs,
)

# WFDB annotation codes that mark a beat (everything else is rhythm, noise or comment).
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")

QRS_BAND = (5.0, 15.0)
ECG_BAND = (0.5, 40.0)


def detect_r_peaks(signal: np.ndarray, fs: float, *, threshold: float = 0.3,
                   refractory_s: float = 0.25) -> np.ndarray:
    """R-peak sample indices (int64, sorted) of one ECG lead; NaN gaps are allowed.

    ``threshold`` is the fraction of the local envelope level (98th percentile over 4 s
    blocks) a QRS must reach; ``refractory_s`` is the shortest RR interval accepted.
    """
    x = bridge_short_gaps(np.asarray(signal, dtype=np.float64), int(0.05 * fs))
    if len(x) < int(0.5 * fs):
        return np.empty(0, dtype=np.int64)
    band = filtfilt_runs(x, filter_sos(float(fs), QRS_BAND, None))
    band = np.nan_to_num(band, nan=0.0)
    slope = np.diff(band, prepend=band[0])
    envelope = uniform_filter1d(slope * slope, max(1, int(0.12 * fs)))
    # What filtering leaves of a constant is rounding error (~1e-16 of its level): an
    # envelope below this floor is silence, never a QRS (a flat lead gave 352 "beats").
    scale = float(np.nanmax(np.abs(x))) if np.isfinite(x).any() else 0.0
    level = _block_level(envelope, int(4 * fs), (1e-9 * scale) ** 2)
    peaks, _ = sps.find_peaks(envelope, height=threshold * level,
                              distance=max(1, int(refractory_s * fs)))
    return _refine(peaks, np.abs(band), int(0.075 * fs))


def _block_level(envelope: np.ndarray, block: int, silence: float = 0.0) -> np.ndarray:
    """A per-sample envelope level: the 98th percentile of each block, linearly
    interpolated between block centres, floored so silent stretches trigger nothing (at a
    tenth of the median block's level, and at ``silence``: the level of numerical noise).

    >>> _block_level(np.r_[np.zeros(4), np.ones(4)], 4).tolist()[::2]
    [0.05, 0.05, 0.525, 1.0]
    >>> float(_block_level(np.full(8, 1e-30), 4, silence=1e-20).max())
    1e-20
    """
    n_blocks = max(1, len(envelope) // block)
    usable = envelope[: n_blocks * block] if len(envelope) >= block else envelope
    ref = np.percentile(usable.reshape(n_blocks, -1), 98, axis=1)
    floor = 0.1 * np.median(ref) if np.median(ref) > 0 else np.finfo(float).tiny
    ref = np.maximum(ref, max(floor, silence))
    centres = (np.arange(n_blocks) + 0.5) * (len(usable) / n_blocks)
    return np.interp(np.arange(len(envelope)), centres, ref)


def _refine(peaks: np.ndarray, magnitude: np.ndarray, half_width: int) -> np.ndarray:
    """Move each peak to the largest ``magnitude`` within ``half_width`` samples."""
    if len(peaks) == 0:
        return peaks.astype(np.int64)
    offsets = np.arange(-half_width, half_width + 1)
    idx = np.clip(peaks[:, None] + offsets[None, :], 0, len(magnitude) - 1)
    best = idx[np.arange(len(peaks)), np.argmax(magnitude[idx], axis=1)]
    return np.unique(best).astype(np.int64)


def peaks_to_native(peaks: np.ndarray, fs: float, native: np.ndarray,
                    native_fs: float) -> np.ndarray:
    """Map peaks found on a resampled signal (at ``fs``) back to the native samples of
    ``native`` (at ``native_fs``): the largest deviation from the local mean within one
    resampled sample either side (cheaper than detecting again at the native rate).

    >>> native = np.zeros(100); native[37] = 5.0
    >>> peaks_to_native(np.array([12]), 10.0, native, 30.0).tolist()
    [37]
    """
    if len(peaks) == 0:
        return peaks.astype(np.int64)
    ratio = native_fs / fs
    half = max(1, int(np.ceil(ratio)))
    centre = np.round(peaks * ratio).astype(np.int64)
    idx = np.clip(centre[:, None] + np.arange(-half, half + 1)[None, :], 0, len(native) - 1)
    seg = np.nan_to_num(native[idx], nan=0.0)
    wide = np.clip(centre[:, None] + np.arange(-4 * half, 4 * half + 1)[None, :], 0,
                   len(native) - 1)
    local = np.nanmean(native[wide], axis=1, keepdims=True)
    best = idx[np.arange(len(peaks)), np.argmax(np.abs(seg - np.nan_to_num(local)), axis=1)]
    return np.unique(best)


def match_peaks(detected: np.ndarray, reference: np.ndarray,
                tolerance: int) -> tuple[int, int, int]:
    """``(true positives, false positives, false negatives)`` pairing each reference peak
    with the nearest unused detection within ``tolerance`` samples (one-to-one).

    >>> match_peaks(np.array([10, 50, 90]), np.array([12, 95, 200]), 5)
    (2, 1, 1)
    """
    det = np.sort(np.asarray(detected, dtype=np.int64))
    ref = np.sort(np.asarray(reference, dtype=np.int64))
    if len(det) == 0 or len(ref) == 0:
        return 0, len(det), len(ref)
    right = np.clip(np.searchsorted(det, ref), 0, len(det) - 1)
    left = np.clip(right - 1, 0, len(det) - 1)
    pick = np.where(np.abs(det[left] - ref) <= np.abs(det[right] - ref), left, right)
    close = np.abs(det[pick] - ref) <= tolerance
    tp = len(np.unique(pick[close]))  # a detection pairs with at most one reference
    return tp, len(det) - tp, len(ref) - tp


def f1_score(tp: int, fp: int, fn: int) -> float:
    """F1 = 2TP / (2TP + FP + FN). ``f1_score(9, 1, 0)`` is about 0.947."""
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def beat_quality(filtered: np.ndarray, fs: float, peaks: np.ndarray, starts: np.ndarray,
                 length: int, *, half_width_s: float = 0.2) -> np.ndarray:
    """Per-window ECG quality in [0, 1]: the mean correlation of each beat with the next one
    inside the window (a regular, clean rhythm scores near 1; noise, artefact and missed beats
    score low), set to 0 when the window holds too few beats or a heart rate outside 30-220.

    ``filtered`` is the band-passed signal, ``peaks`` its R peaks, ``starts`` window starts
    (samples) and ``length`` the window length (samples).
    """
    half = int(half_width_s * fs)
    peaks = peaks[(peaks >= half) & (peaks < len(filtered) - half)]
    score = np.zeros(len(starts), dtype=np.float32)
    if len(peaks) < 2 or len(starts) == 0:
        return score
    beats = filtered[peaks[:, None] + np.arange(-half, half + 1)[None, :]]
    beats = beats - np.nanmean(beats, axis=1, keepdims=True)
    norm = np.sqrt(np.nansum(beats * beats, axis=1))
    corr = np.nansum(beats[:-1] * beats[1:], axis=1) / np.maximum(norm[:-1] * norm[1:], 1e-12)
    corr = np.nan_to_num(np.clip(corr, 0.0, 1.0))
    # Pair k (beats k, k+1) belongs to a window when both beats lie inside it.
    first = np.searchsorted(peaks, starts)
    last = np.searchsorted(peaks, starts + length) - 1  # index of the last beat inside
    n_pairs = np.maximum(last - first, 0)
    csum = np.r_[0.0, np.cumsum(corr)]
    sums = csum[np.minimum(first + n_pairs, len(corr))] - csum[np.minimum(first, len(corr))]
    mean_corr = np.where(n_pairs > 0, sums / np.maximum(n_pairs, 1), 0.0)
    bpm = 60.0 * (n_pairs + 1) / (length / fs)
    plausible = (n_pairs >= 2) & (bpm >= 30) & (bpm <= 220)
    score[:] = np.where(plausible, mean_corr, 0.0)
    return score


@dataclass
class BeatTable:
    """Fixed-length beats of one ECG lead, centred on R peaks.

    ``values`` (n_beats, beat_len) float32 at ``fs``; ``r_peak_sample`` int64 at the record's
    native rate; ``symbols`` the reference annotation symbol of each beat (``None`` when there
    is no reference or no reference beat within 150 ms).
    """

    values: np.ndarray
    r_peak_sample: np.ndarray
    symbols: list[str | None]
    fs: float
    channel: str = ""
    native_fs: float = 0.0
    skipped_segments: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.r_peak_sample)


def pick_ecg_channel(names: list[str], channel: str | None) -> int | None:
    """Index of ``channel`` (raw or canonical name) in ``names``; ``None`` picks the first
    ECG lead, preferring lead II.

    >>> pick_ecg_channel(["ABP", "V", "II"], None), pick_ecg_channel(["MLII", "V5"], "ecg_v5")
    (2, 1)
    """
    canon = [canonical_channel(n) for n in names]
    if channel is not None:
        for i, (raw, can) in enumerate(zip(names, canon, strict=True)):
            if channel in (raw, can):
                return i
        return None
    if "ecg_ii" in canon:
        return canon.index("ecg_ii")
    return next((i for i, c in enumerate(canon) if c and is_ecg(c)), None)


def extract_beats(record_path: str | Path, channel: str | None = None, *,
                  fs_out: float | None = None, before_s: float = 0.25, after_s: float = 0.45,
                  reference: str | None = "atr", normalize: str = "zscore",
                  chunk_s: float = 300.0) -> BeatTable:
    """Detect R peaks on one ECG lead of a WFDB record and cut fixed-length beats.

    The record is read in ``chunk_s`` chunks (never whole), band-passed 0.5-40 Hz per finite
    run, optionally resampled to ``fs_out``; each beat spans ``before_s`` before to
    ``after_s`` after its R peak and is normalised per beat (``zscore``, ``robust`` or
    ``none``). Beats too close to a segment edge or overlapping a gap are left out. Works on
    single- and multi-segment records (missing segment files are skipped and listed).
    """
    from medae.waveforms.reader import iter_chunks, record_segments

    path = Path(record_path)
    if path.suffix == ".hea":
        path = path.with_suffix("")
    segments, skipped, _ = record_segments(path)
    pad_s = max(5.0, 2 * (before_s + after_s))
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    fs_used, native_fs, chosen = float(fs_out or 0.0), 0.0, ""
    for seg in segments:
        index = pick_ecg_channel(list(seg.sig_names), channel)
        if index is None:
            continue
        chosen, native_fs = seg.sig_names[index], seg.fs(index)
        fs_used = float(fs_out or native_fs)
        chunk_frames = max(1, int(chunk_s * seg.frame_fs))
        pad_frames = int(pad_s * seg.frame_fs)
        spf = seg.samps_per_frame[index]
        for chunk in iter_chunks(seg, chunk_frames, pad_frames, [index]):
            x = chunk.channels[0].values
            offset = (seg.start_frame + chunk.frame0) * spf  # native sample of x[0]
            core = ((chunk.core_start - chunk.frame0) * spf, (chunk.core_stop - chunk.frame0) * spf)
            parts.append(_beats_in_chunk(x, native_fs, fs_used, core, offset,
                                         before_s, after_s, normalize))
    if not chosen:
        raise DataError(f"{path}: no ECG channel"
                        + (f" named {channel!r}" if channel else "") + " in any readable segment")
    length = int(round((before_s + after_s) * fs_used))
    values = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, length), np.float32)
    peaks = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
    symbols = symbols_for(peaks, load_reference(path, reference), native_fs)
    return BeatTable(values, peaks, symbols, fs_used, canonical_channel(chosen) or chosen,
                     native_fs, [s.name for s in skipped])


def _beats_in_chunk(x, fs_in, fs_out, core, offset, before_s, after_s, normalize):
    """Beats whose R peak lies in the chunk's core: (values float32, native peak samples)."""
    peaks = detect_r_peaks(x, fs_in)
    peaks = peaks[(peaks >= core[0]) & (peaks < core[1])]
    filtered = filtfilt_runs(bridge_short_gaps(x, int(0.05 * fs_in)),
                             filter_sos(float(fs_in), ECG_BAND, None))
    if fs_out != fs_in:
        filtered = resample_runs(filtered, fs_in, fs_out)
    beats, kept = cut_beats(filtered, fs_out, peaks, fs_in, before_s, after_s, normalize)
    return beats, kept + offset


def cut_beats(filtered: np.ndarray, fs: float, peaks: np.ndarray, native_fs: float,
              before_s: float, after_s: float, normalize: str) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-length beats from ``filtered`` (at ``fs``) around ``peaks`` (native samples):
    ``(values float32 (n, len), peaks kept)``; beats running off the ends or over a gap are
    left out.

    >>> sig = np.sin(np.arange(100) / 3.0)
    >>> values, kept = cut_beats(sig, 10.0, np.array([1, 50, 99]), 10.0, 0.2, 0.3, "none")
    >>> values.shape, kept.tolist()
    ((1, 5), [50])
    """
    before, length = int(round(before_s * fs)), int(round((before_s + after_s) * fs))
    centre = np.round(peaks * (fs / native_fs)).astype(np.int64)
    keep = (centre - before >= 0) & (centre - before + length <= len(filtered))
    centre, peaks = centre[keep], peaks[keep]
    beats = filtered[(centre - before)[:, None] + np.arange(length)[None, :]]
    finite = np.isfinite(beats).all(axis=1)
    return normalise_windows(beats[finite], normalize).astype(np.float32), peaks[finite]


def load_reference(path: Path, extension: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Reference beat annotations ``(samples int64, symbols)`` of a record, or ``None``."""
    if not extension or not path.with_name(f"{path.name}.{extension}").exists():
        return None
    import wfdb

    ann = wfdb.rdann(str(path), extension)
    is_beat = np.array([s in BEAT_SYMBOLS for s in ann.symbol], dtype=bool)
    return (np.asarray(ann.sample, dtype=np.int64)[is_beat],
            np.asarray(ann.symbol, dtype=object)[is_beat])


def symbols_for(peaks: np.ndarray, reference: tuple[np.ndarray, np.ndarray] | None,
                fs: float, tolerance_s: float = 0.15) -> list[str | None]:
    """The reference beat symbol within ``tolerance_s`` of each peak, or ``None``.

    >>> symbols_for(np.array([10, 500]), (np.array([12, 300]), np.array(["N", "V"])), 100.0)
    ['N', None]
    """
    if reference is None or len(reference[0]) == 0 or not len(peaks):
        return [None] * len(peaks)
    ref, ref_symbols = reference
    right = np.clip(np.searchsorted(ref, peaks), 0, len(ref) - 1)
    left = np.clip(right - 1, 0, len(ref) - 1)
    nearest = np.where(np.abs(ref[left] - peaks) <= np.abs(ref[right] - peaks), left, right)
    close = np.abs(ref[nearest] - peaks) <= int(tolerance_s * fs)
    return [str(ref_symbols[n]) if ok else None for n, ok in zip(nearest, close, strict=True)]
