"""R-peak detection and beat extraction on MIT-BIH records against their .atr annotations."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb

from medae.waveforms.beats import (
    BEAT_SYMBOLS,
    detect_r_peaks,
    extract_beats,
    f1_score,
    match_peaks,
)


def reference_beats(record) -> np.ndarray:
    ann = wfdb.rdann(str(record), "atr")
    return np.array([s for s, sym in zip(ann.sample, ann.symbol, strict=True)
                     if sym in BEAT_SYMBOLS], dtype=np.int64)


@pytest.mark.parametrize("name", ["100", "101", "103"])
def test_r_peak_f1_at_least_099(physionet, name):
    record = physionet / "mitdb" / name
    signal = wfdb.rdrecord(str(record), channels=[0]).p_signal[:, 0]
    peaks = detect_r_peaks(signal, 360.0)
    tp, fp, fn = match_peaks(peaks, reference_beats(record), int(0.15 * 360))
    assert peaks.dtype == np.int64
    assert f1_score(tp, fp, fn) >= 0.99, (tp, fp, fn)


def test_detector_survives_nan_gaps(physionet):
    record = physionet / "mitdb" / "100"
    signal = wfdb.rdrecord(str(record), channels=[0], sampto=360 * 120).p_signal[:, 0]
    signal[360 * 40: 360 * 50] = np.nan  # a 10 s gap: beats on both sides must still be found
    ref = reference_beats(record)
    ref = ref[(ref < 360 * 120) & ((ref < 360 * 40) | (ref >= 360 * 50))]
    tp, fp, fn = match_peaks(detect_r_peaks(signal, 360.0), ref, int(0.15 * 360))
    assert f1_score(tp, fp, fn) >= 0.99
    assert np.isnan(signal).sum() == 3600  # the input was not modified


def test_detector_on_flat_and_short_input_finds_nothing():
    assert len(detect_r_peaks(np.zeros(360 * 20), 360.0)) == 0
    assert len(detect_r_peaks(np.ones(10), 360.0)) == 0


def test_extract_beats_contract_and_reference_symbols(physionet):
    table = extract_beats(physionet / "mitdb" / "100", fs_out=125.0)
    ref = reference_beats(physionet / "mitdb" / "100")
    assert table.values.dtype == np.float32 and table.r_peak_sample.dtype == np.int64
    assert table.values.shape == (len(table), int(round(0.7 * 125)))
    assert table.fs == 125.0 and table.channel == "ecg_ii" and table.native_fs == 360.0
    assert len(table.symbols) == len(table)
    tp, fp, fn = match_peaks(table.r_peak_sample, ref, 54)
    assert f1_score(tp, fp, fn) >= 0.99
    # 100 has 33 atrial premature beats (A) and one ventricular (V) among normal beats.
    counts = {s: table.symbols.count(s) for s in set(table.symbols)}
    assert counts["N"] > 2200 and counts.get("A", 0) >= 30 and counts.get("V", 0) == 1
    assert np.allclose(table.values.mean(axis=1), 0, atol=1e-4)  # per-beat z-score


def test_extract_beats_native_rate_other_lead_and_multisegment(physionet):
    v5 = extract_beats(physionet / "mitdb" / "100", "V5", reference=None, normalize="none")
    assert v5.channel == "ecg_v5" and v5.fs == 360.0 and v5.values.shape[1] == 252
    assert set(v5.symbols) == {None}
    multi = extract_beats(physionet / "mimic3wdb" / "p000878" / "p000878-2137-10-26-16-57")
    assert multi.channel == "ecg_ii" and len(multi) > 5
    assert len(multi.skipped_segments) == 30  # segments whose files are absent are skipped
    # r_peak_sample is on the record's time line: segment 0002 starts at frame 5750.
    assert multi.r_peak_sample.min() >= 5750
