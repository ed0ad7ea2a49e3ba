"""Signal processing that treats NaN gaps properly: contiguous finite runs are filtered and
resampled separately (one NaN would otherwise turn a whole ``sosfiltfilt`` output into NaN),
short gaps are bridged by linear interpolation first, and everything else is vectorised.

>>> import numpy as np
>>> x = np.r_[np.ones(5), np.nan, np.nan, np.ones(4) * 2]
>>> finite_runs(np.isfinite(x)).tolist()
[[0, 5], [7, 11]]
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal as sps


def finite_runs(valid: np.ndarray) -> np.ndarray:
    """``(n_runs, 2)`` array of ``[start, stop)`` of the True runs in a boolean mask.

    >>> finite_runs(np.array([False, True, True, False, True])).tolist()
    [[1, 3], [4, 5]]
    """
    edges = np.diff(np.r_[0, valid.astype(np.int8), 0])
    return np.c_[np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)]


def bridge_short_gaps(x: np.ndarray, max_gap: int) -> np.ndarray:
    """Linearly interpolate NaN gaps of at most ``max_gap`` samples that have data on both
    sides (single dropped samples are common and should not split a run).

    >>> bridge_short_gaps(np.array([1.0, np.nan, 3.0, np.nan, np.nan, np.nan, 7.0]), 1).tolist()
    [1.0, 2.0, 3.0, nan, nan, nan, 7.0]
    """
    nan = ~np.isfinite(x)
    if max_gap <= 0 or not nan.any():
        return x
    gaps = finite_runs(nan)
    inner = (gaps[:, 0] > 0) & (gaps[:, 1] < len(x)) & (gaps[:, 1] - gaps[:, 0] <= max_gap)
    if not inner.any():
        return x
    fill = np.zeros(len(x), dtype=bool)
    for start, stop in gaps[inner]:
        fill[start:stop] = True
    out = x.copy()
    idx = np.arange(len(x))
    good = ~nan
    out[fill] = np.interp(idx[fill], idx[good], x[good])
    return out


@lru_cache(maxsize=256)
def filter_sos(fs: float, band: tuple[float | None, float | None], mains: float | None,
               order: int = 2) -> np.ndarray | None:
    """Second-order sections of a Butterworth band-pass (or high/low-pass when one edge is
    ``None``) cascaded with a mains notch; edges at or above Nyquist are left out."""
    nyq = fs / 2.0
    low, high = band
    low = low if low and low < nyq * 0.95 else None
    high = high if high and high < nyq * 0.95 else None
    sections = []
    if low and high:
        sections.append(sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos"))
    elif low:
        sections.append(sps.butter(order, low, btype="highpass", fs=fs, output="sos"))
    elif high:
        sections.append(sps.butter(order, high, btype="lowpass", fs=fs, output="sos"))
    if mains and mains < nyq * 0.95 and (high is None or mains < high * 1.5):
        b, a = sps.iirnotch(mains, Q=30.0, fs=fs)
        sections.append(sps.tf2sos(b, a))
    return np.vstack(sections) if sections else None


def filtfilt_runs(x: np.ndarray, sos: np.ndarray | None) -> np.ndarray:
    """Zero-phase filter each finite run separately; runs too short to filter become NaN.

    >>> sos = filter_sos(100.0, (0.5, 20.0), None)
    >>> y = filtfilt_runs(np.r_[np.sin(np.arange(300) / 5), np.nan, np.ones(5)], sos)
    >>> bool(np.isfinite(y[:300]).all()), bool(np.isnan(y[300:]).all())
    (True, True)
    """
    if sos is None:
        return x.astype(np.float64, copy=True)
    out = np.full(len(x), np.nan)
    padlen = 3 * (2 * len(sos) + 1)  # scipy's default padlen for sosfiltfilt
    for start, stop in finite_runs(np.isfinite(x)):
        if stop - start > padlen:
            out[start:stop] = sps.sosfiltfilt(sos, x[start:stop])
    return out


def rational_ratio(fs_in: float, fs_out: float, max_den: int = 1000) -> tuple[int, int]:
    """``(up, down)`` with ``fs_in * up / down`` close to ``fs_out`` (small factors keep the
    polyphase filter short; the exact rate reached is reported with the output).

    >>> rational_ratio(360.0, 125.0), rational_ratio(249.89, 125.0)
    ((25, 72), (1, 2))
    """
    frac = Fraction(fs_out / fs_in).limit_denominator(max_den)
    return frac.numerator, frac.denominator


@lru_cache(maxsize=64)
def _poly_fir(up: int, down: int) -> np.ndarray:
    """The anti-aliasing FIR for ``resample_poly``: scipy's Kaiser(5) design with 6 instead
    of 10 zero crossings per side, 40% less work for a passband ripple below 1e-4."""
    rate = max(up, down)
    return sps.firwin(2 * 6 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))


def resample_runs(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase-resample each finite run to ``fs_out`` and place it on the output grid
    (run start rounded to the nearest output sample); gaps stay NaN.

    >>> y = resample_runs(np.r_[np.ones(40), np.nan * np.ones(20), np.ones(40)], 100.0, 50.0)
    >>> len(y), int(np.isnan(y).sum())
    (50, 10)
    """
    if fs_in == fs_out:
        return x.astype(np.float64, copy=False)
    up, down = rational_ratio(fs_in, fs_out)
    n_out = int(np.ceil(len(x) * up / down))
    out = np.full(n_out, np.nan)
    for start, stop in finite_runs(np.isfinite(x)):
        piece = sps.resample_poly(x[start:stop], up, down, window=_poly_fir(up, down),
                                  padtype="line")
        first = int(round(start * up / down))
        last = min(first + len(piece), n_out)
        out[first:last] = piece[: last - first]
    return out


def nearest_index(n_out: int, fs_in: float, fs_out: float, n_in: int) -> np.ndarray:
    """For each output sample, the input sample at (or just before) the same time."""
    return np.minimum((np.arange(n_out) * (fs_in / fs_out)).astype(np.int64), n_in - 1)


def flat_mask(x: np.ndarray, min_len: int, tol: float = 0.0) -> np.ndarray:
    """True on samples inside runs of at least ``min_len`` samples that do not change by more
    than ``tol`` from one sample to the next (a disconnected lead, a frozen transducer).

    >>> flat_mask(np.array([1.0, 2, 2, 2, 2, 3]), 3).tolist()
    [False, True, True, True, True, False]
    """
    if len(x) < 2:
        return np.zeros(len(x), dtype=bool)
    runs = finite_runs(np.abs(np.diff(x)) <= tol)
    runs = runs[runs[:, 1] - runs[:, 0] + 1 >= min_len]  # n equal steps = n + 1 samples
    # Mark the long runs with +1/-1 edges and a cumulative sum (no Python loop over runs).
    edges = np.zeros(len(x) + 1, dtype=np.int32)
    np.add.at(edges, runs[:, 0], 1)
    np.add.at(edges, runs[:, 1] + 1, -1)
    return np.cumsum(edges[:-1]) > 0


def window_view(x: np.ndarray, length: int, stride: int) -> np.ndarray:
    """``(n_windows, length)`` read-only view of ``x`` (no copy).

    >>> window_view(np.arange(7), 3, 2).tolist()
    [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
    """
    if len(x) < length:
        return np.empty((0, length), dtype=x.dtype)
    return np.lib.stride_tricks.sliding_window_view(x, length)[::stride]


def normalise_windows(w: np.ndarray, method: str) -> np.ndarray:
    """Per-window normalisation, NaN-aware: ``zscore`` (mean/std), ``robust`` (median and
    IQR/1.349) or ``none``. Constant windows map to 0.

    >>> normalise_windows(np.array([[1.0, 2.0, 3.0]]), "zscore").round(3).tolist()
    [[-1.225, 0.0, 1.225]]
    """
    if method == "none" or w.size == 0:
        return w
    if method == "zscore":
        centre = np.nanmean(w, axis=1, keepdims=True)
        scale = np.nanstd(w, axis=1, keepdims=True)
    elif method == "robust":
        q1, centre, q3 = np.nanpercentile(w, [25, 50, 75], axis=1, keepdims=True)
        scale = (q3 - q1) / 1.349
    else:
        raise ValueError(f"unknown normalisation {method!r}")
    scale = np.where(scale > 1e-12, scale, 1.0)
    return (w - centre) / scale
