"""Generated WFDB records: wfdb reads every one back, layout like MIMIC, HR matches the chart."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import wfdb
from scipy.signal import find_peaks

from medae.synth.generate import generate

SUBJECTS = 20


@pytest.fixture(scope="session")
def synth_wave(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthwave")
    summary = generate(out, subjects=SUBJECTS, seed=11, waveforms=True, waveform_share=1.0,
                       waveform_seconds=90.0)
    return out, summary


def waves(synth_wave) -> Path:
    return synth_wave[0] / "waveforms"


def listed(root: Path) -> list[Path]:
    """Record paths (without .hea) listed by the top RECORDS file and each folder's RECORDS."""
    found = []
    for folder in (root / "RECORDS").read_text().split():
        assert folder.endswith("/") and folder.startswith("p1")
        found += [root / folder / name for name in (root / folder / "RECORDS").read_text().split()]
    return found


def records(root: Path) -> list[Path]:
    """The multi-segment waveform records (each has a numerics twin named ``<record>n``)."""
    paths = [p for p in listed(root) if not p.name.endswith("n")]
    assert sorted(p.with_name(p.name + "n") for p in paths) == sorted(
        p for p in listed(root) if p.name.endswith("n"))
    return paths


def is_multirate(header: wfdb.io.MultiRecord, folder: Path) -> bool:
    seg = next(s for s in header.seg_name if s != "~" and not s.endswith("_layout"))
    return "16x2" in (folder / f"{seg}.hea").read_text()


def test_every_record_reads_back(synth_wave):
    root, summary = waves(synth_wave), synth_wave[1]
    paths = records(root)
    assert len(paths) == summary["waveforms"]["records"] >= SUBJECTS
    # master + layout + numerics headers per record, plus one per segment
    assert len(list(root.rglob("*.hea"))) == len(paths) * 3 + summary["waveforms"]["segments"]
    kinds = set()
    for path in paths:
        header = wfdb.rdheader(str(path))
        assert header.seg_name[0].endswith("_layout") and header.seg_len[0] == 0
        assert header.fs == 125 and header.base_date is not None
        multirate = is_multirate(header, path.parent)
        kinds.add(multirate)
        rec = wfdb.rdrecord(str(path), m2s=True, smooth_frames=not multirate)
        assert rec.sig_name[:2] == ["II", "PLETH"] and set(rec.sig_name) <= {"II", "PLETH", "ABP"}
        if multirate:
            assert rec.samps_per_frame[0] == 2
            assert len(rec.e_p_signal[0]) == 2 * header.sig_len
            assert len(rec.e_p_signal[1]) == header.sig_len
        else:
            assert rec.p_signal.shape == (header.sig_len, len(rec.sig_name))
        for seg in header.seg_name[1:]:
            if seg != "~":
                wfdb.rdrecord(str(path.parent / seg))  # every segment is a record too
        ann = wfdb.rdann(str(path), "atr")  # reference R peaks, in 125 Hz frames
        assert ann.fs == 125 and set(ann.symbol) == {"N"}
        assert ann.sample.min() >= 0 and ann.sample.max() < header.sig_len
    assert kinds == {True, False}  # both the MIMIC-III (fmt 80) and 250 Hz (fmt 16) styles


def test_layout_and_names_are_mimic_style(synth_wave):
    root = waves(synth_wave)
    stays = pl.read_csv(synth_wave[0] / "icu/icustays.csv.gz", try_parse_dates=True)
    gaps = 0
    for path in records(root):
        subject = int(path.parent.name[1:])
        assert path.parent.parent.name == path.parent.name[:3]
        assert path.name.startswith(f"p{subject}-")
        header = wfdb.rdheader(str(path))
        gaps += header.seg_name.count("~")
        start = dt.datetime.combine(header.base_date, header.base_time)
        assert path.name.endswith(start.strftime("%Y-%m-%d-%H-%M"))
        end = start + dt.timedelta(seconds=header.sig_len / header.fs)
        inside = stays.filter(pl.col("subject_id") == subject, pl.col("intime") <= start,
                              pl.col("outtime") >= end)
        assert inside.height == 1, path.name
    assert gaps > 0


def test_artifacts_are_present(synth_wave):
    root, counts = waves(synth_wave), synth_wave[1]["waveforms"]
    for kind in ("nan_gap", "flat_line", "clipping", "channel_missing", "mains_noise",
                 "strong_wander", "gap"):
        assert counts[kind] > 0, kind
    nan_segments = clipped = 0
    for path in records(root):
        header = wfdb.rdheader(str(path))
        for seg in header.seg_name[1:]:
            if seg == "~":
                continue
            rec = wfdb.rdrecord(str(path.parent / seg), physical=False, smooth_frames=False)
            for sig, fmt in zip(rec.e_d_signal, rec.fmt, strict=True):
                invalid = -128 if fmt == "80" else -32768
                nan_segments += bool((sig == invalid).any())
                high = 127 if fmt == "80" else 2 ** (rec.adc_res[0] - 1) - 1
                clipped += bool((sig == high).sum() > 20)
    assert nan_segments >= counts["nan_gap"] and clipped > 0


def test_heart_rate_matches_charted(synth_wave):
    root = waves(synth_wave)
    chart = pl.read_csv(synth_wave[0] / "icu/chartevents.csv.gz", try_parse_dates=True,
                        schema_overrides={"value": pl.String, "valuenum": pl.Float64})
    hr_chart = chart.filter(pl.col("itemid") == 220045, pl.col("valuenum").is_between(20, 250))
    checked = 0
    for path in records(root)[:8]:
        header = wfdb.rdheader(str(path))
        multirate = is_multirate(header, path.parent)
        rec = wfdb.rdrecord(str(path), m2s=True, channels=[0], smooth_frames=not multirate)
        ecg = rec.e_p_signal[0] if multirate else rec.p_signal[:, 0]
        fs = 250 if multirate else 125
        ecg = np.nan_to_num(ecg - np.nanmedian(ecg))
        peaks, _ = find_peaks(ecg, height=0.55, distance=int(0.33 * fs))
        rr = np.diff(peaks) / fs
        rr = rr[(rr > 0.3) & (rr < 1.6)]
        wave_hr = 60 / np.median(rr)
        ann = wfdb.rdann(str(path), "atr")
        assert 60 / np.median(np.diff(ann.sample) / 125) == pytest.approx(wave_hr, abs=3)
        start = dt.datetime.combine(header.base_date, header.base_time)
        near = hr_chart.filter(pl.col("subject_id") == int(path.parent.name[1:]),
                               (pl.col("charttime") - start).abs() < dt.timedelta(hours=2))
        if near.height >= 2:
            assert wave_hr == pytest.approx(near["valuenum"].median(), abs=12), path.name
            checked += 1
    assert checked >= 4


def test_numerics_follow_the_charted_vitals(synth_wave):
    root = waves(synth_wave)
    chart = pl.read_csv(synth_wave[0] / "icu/chartevents.csv.gz", try_parse_dates=True,
                        schema_overrides={"value": pl.String, "valuenum": pl.Float64})
    checked = 0
    for path in records(root)[:8]:
        num = wfdb.rdrecord(str(path.with_name(path.name + "n")))
        assert num.fs == pytest.approx(1 / 60) and num.sig_name[:4] == ["HR", "PULSE", "RESP",
                                                                          "SpO2"]
        start = dt.datetime.combine(num.base_date, num.base_time)
        end = start + dt.timedelta(minutes=num.sig_len)
        charted = chart.filter(pl.col("subject_id") == int(path.parent.name[1:]),
                               pl.col("itemid") == 220045,
                               pl.col("charttime").is_between(start, end),
                               pl.col("valuenum").is_between(20, 250))
        if charted.height >= 3:
            assert np.median(num.p_signal[:, 0]) == pytest.approx(
                charted["valuenum"].median(), abs=8)
            checked += 1
    assert checked >= 4


def test_same_seed_gives_identical_waveform_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        generate(folder, subjects=6, seed=5, waveforms=True, waveform_share=1.0,
                 waveform_seconds=30.0)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert any(f.suffix == ".dat" for f in files)
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_annotation_bytes_equal_wfdb_wrann(tmp_path):
    from medae.synth.wfdb_write import annotation_bytes

    samples = np.array([3, 100, 1500, 1600, 40_000, 40_100])  # includes SKIPs (> 1023)
    wfdb.wrann("ref", "atr", samples, symbol=["N"] * len(samples), fs=125,
               write_dir=str(tmp_path))
    assert annotation_bytes(samples, 125) == (tmp_path / "ref.atr").read_bytes()


def test_bytes_do_not_depend_on_batching(tmp_path, monkeypatch):
    import medae.synth.waveforms as synth_waveforms

    def run(folder: Path) -> dict[Path, bytes]:
        generate(folder, subjects=5, seed=8, waveforms=True, waveform_share=1.0,
                 waveform_seconds=20.0)
        return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    whole = run(tmp_path / "whole")
    monkeypatch.setattr(synth_waveforms, "RECORDS_PER_BATCH", 2)
    assert run(tmp_path / "split") == whole
