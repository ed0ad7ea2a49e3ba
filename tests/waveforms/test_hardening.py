"""Broken WFDB headers and data at the unit level: each gives a data-quality entry or a
quarantine reason, never a silent result; failures hide the record's identity from logs."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from medae.errors import DataError
from medae.waveforms import windows
from medae.waveforms.catalog import build_catalog
from medae.waveforms.config import WindowWaveforms
from medae.waveforms.windows import RecordJob, process_record, window_record

PATTERN = r"^[ps](\d{5,})(?:[-_].*)?$"
SECONDS = 20  # of MIT-BIH 100 (360 Hz, two leads, format 212: 3 bytes a frame)


def mitdb_copy(physionet: Path, folder: Path, name: str, *, n_frames: int | None = None,
               fs: str = "360", gain: str = "200", data_frames: int = SECONDS * 360) -> Path:
    """The first ``data_frames`` of MIT-BIH 100 as record ``folder/name``, its header
    declaring ``n_frames`` (default: the data's) at rate ``fs`` with ADC gain ``gain``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.dat").write_bytes((physionet / "mitdb" / "100.dat").read_bytes()
                                         [: data_frames * 3])
    # The shipped header has a comment first, a blank line and CRLF endings: keep the
    # record line and the two signal lines.
    lines = [line.strip() for line in (physionet / "mitdb" / "100.hea").read_text()
             .splitlines() if line.strip() and not line.startswith("#")]
    record = lines[0].split()
    lines[0] = " ".join([name, record[1], fs, str(data_frames if n_frames is None
                                                  else n_frames)])
    for i in (1, 2):
        fields = lines[i].split()
        fields[0] = f"{name}.dat"
        fields[2] = gain
        lines[i] = " ".join(fields)
    (folder / f"{name}.hea").write_text("\n".join(lines[:3]) + "\n")
    return folder / name


def job(path: Path, tmp_path: Path, subject_id: int | None = None,
        beats: bool = False) -> RecordJob:
    return RecordJob(path.name, str(path), subject_id, None, (), WindowWaveforms(beats=beats),
                     str(tmp_path / "w.parquet"), str(tmp_path / "b.parquet") if beats else None)


def test_non_numeric_sampling_rate_is_quarantined_with_the_reason(physionet, tmp_path):
    mitdb_copy(physionet, tmp_path / "p10012853", "p10012853-fs", fs="fast")
    mitdb_copy(physionet, tmp_path / "p10012853", "p10012853-ok")
    catalog, quarantine = build_catalog(tmp_path, PATTERN)
    assert catalog["path"].to_list() == ["p10012853/p10012853-ok"]
    assert quarantine.to_dicts() == [{
        "path": "p10012853/p10012853-fs",
        "reason": "p10012853/p10012853-fs.hea: sampling frequency 'fast' is not a number"}]


def test_data_longer_than_header_is_reported(physionet, tmp_path):
    path = mitdb_copy(physionet, tmp_path, "short", n_frames=10 * 360)
    report = process_record(job(path, tmp_path))
    assert report["data_longer_than_header"] == 10 * 360  # frames past the declared 10 s
    assert report["windows_produced"] == 2  # the declared 10 s, two leads
    clean = process_record(job(mitdb_copy(physionet, tmp_path, "full"), tmp_path))
    assert "data_longer_than_header" not in clean and "empty_record" not in clean


def test_zero_length_record_is_reported_empty(physionet, tmp_path):
    path = mitdb_copy(physionet, tmp_path, "empty", data_frames=0)
    report = process_record(job(path, tmp_path))
    assert report["empty_record"] is True and report["windows_produced"] == 0
    assert pl.read_parquet(tmp_path / "w.parquet").height == 0
    # The run report's headline (the DQ report's totals) counts it.
    short = process_record(job(mitdb_copy(physionet, tmp_path, "short", n_frames=3600),
                               tmp_path))
    totals = windows._totals({"empty": report, "short": short, "bad": {"error": "x"}})
    assert (totals["records_empty"], totals["records_data_longer_than_header"],
            totals["records_failed"]) == (1, 1, 1)


def test_absurd_gain_drops_windows_as_out_of_range(physionet, tmp_path):
    path = mitdb_copy(physionet, tmp_path, "gain", gain="1e-12")  # ~1e14 mV
    report = process_record(job(path, tmp_path, beats=True))
    assert report["windows_produced"] == 0
    assert report["windows_dropped"]["out_of_range"] == 2 * SECONDS // 10
    # Its beats go too (per-beat normalisation would hide the scale just as well), counted.
    # (25 R peaks: the 23 beats of the scaled record plus 2 too close to the ends to cut.)
    assert (report["beats"], report["beats_out_of_range"]) == (0, 25)
    assert pl.read_parquet(tmp_path / "b.parquet").height == 0
    # The same limits keep every window and beat of the correctly scaled record.
    ok = process_record(job(mitdb_copy(physionet, tmp_path, "ok"), tmp_path, beats=True))
    assert ok["windows_dropped"]["out_of_range"] == 0 and ok["beats"] == 23
    assert "beats_out_of_range" not in ok


def test_failed_record_message_hides_its_path_and_subject(physionet, tmp_path):
    path = mitdb_copy(physionet, tmp_path / "p10012853", "p10012853-long", n_frames=72000)
    with pytest.raises(DataError) as err:
        window_record(job(path, tmp_path, subject_id=10012853))
    assert str(err.value) == ("<record>: data file holds 7200 of the 72000 frames the header "
                              "declares")


def test_catalog_logs_quarantined_records_by_row(physionet, tmp_path, make_wf_params, caplog):
    from medae.waveforms import catalog

    mitdb_copy(physionet, tmp_path / "src" / "p10012853", "p10012853-fs", fs="fast")
    params = make_wf_params(tmp_path / "src", tmp_path / "out")
    with caplog.at_level(logging.WARNING, logger="medae"):
        assert catalog.run(params)["quarantined"] == 1
    assert "10012853" not in caplog.text
    assert "quarantined record (row 0 of " in caplog.text
    assert "<record>.hea: sampling frequency 'fast' is not a number" in caplog.text


def test_failed_record_loses_its_earlier_outputs(physionet, tmp_path, make_wf_params):
    """A record that fails keeps no window or beat file from an earlier run: later stages
    (pair_windows, training) would read them as its current output."""
    from medae.waveforms import catalog

    src = tmp_path / "src"
    rec1 = mitdb_copy(physionet, src, "rec1")
    mitdb_copy(physionet, src, "rec2")
    params = make_wf_params(src, tmp_path / "out")
    catalog.run(params)
    windows.run(params)
    out, beats = (params.path(params.window_waveforms.out),
                  params.path(params.window_waveforms.beats_out))
    assert (out / "rec1.parquet").exists() and (beats / "rec1.parquet").exists()
    with open(rec1.with_suffix(".dat"), "r+b") as fh:
        fh.truncate(1000)
    catalog.run(params)
    summary = windows.run(params)
    assert (summary["records_failed"], summary["processed"]) == (1, 0)
    assert sorted(f.name for f in out.glob("*.parquet")) == ["rec2.parquet"]
    assert sorted(f.name for f in beats.glob("*.parquet")) == ["rec2.parquet"]
    report = json.loads(params.path(params.window_waveforms.report).read_text())
    assert report["records"]["rec1"]["outputs_removed"] == 2
    assert "rec1" not in json.loads((out / "_fingerprints.json").read_text())


def lead_record(folder: Path, name: str, digital: np.ndarray) -> Path:
    """One MLII lead of ``digital`` samples (format 16, 200/mV, 360 Hz) as record ``name``."""
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=360.0, units=["mV"], sig_name=["MLII"], d_signal=digital[:, None],
                fmt=["16"], adc_gain=[200.0], baseline=[0], write_dir=str(folder))
    return folder / name


def mitdb_lead(physionet: Path, seconds: int = SECONDS) -> np.ndarray:
    import wfdb

    rec = wfdb.rdrecord(str(physionet / "mitdb" / "100"), sampto=seconds * 360,
                        physical=False, channels=[0])
    return rec.d_signal[:, 0].astype(np.int64) - 1024


def test_no_beats_from_signal_whose_windows_all_failed(physionet, tmp_path):
    """Beats are cut only inside kept windows: a flat lead, a lead with a gap every 3 s
    (gap_policy drop) and a header rate 10x too low keep no window and give no beat (each
    beat normalised to unit scale would pass noise off as an ECG beat); the R peaks left out
    are counted as beats_withheld."""
    lead = mitdb_lead(physionet)
    gappy = lead.copy()
    for start in range(0, len(gappy), 3 * 360):
        gappy[start + 100: start + 120] = -32768  # WFDB invalid sample: a NaN gap
    cases = {"flat": lead_record(tmp_path, "flat", np.full(len(lead), 100)),
             "gappy": lead_record(tmp_path, "gappy", gappy),
             "rate": mitdb_copy(physionet, tmp_path, "rate", fs="36")}
    for name, path in cases.items():
        report = process_record(job(path, tmp_path, beats=True))
        assert report["windows_produced"] == 0, name
        assert report["beats"] == 0, name
        assert pl.read_parquet(tmp_path / "b.parquet").height == 0, name
        assert windows._totals({name: report})["beats"] == 0
    assert report["beats_withheld"] > 100  # the rate case: its "beats" were all withheld
    # The clean lead keeps every beat: all its windows pass.
    ok = process_record(job(lead_record(tmp_path, "ok", lead), tmp_path, beats=True))
    assert (ok["windows_produced"], ok["beats"]) == (2, 23) and "beats_withheld" not in ok


def test_beats_follow_kept_windows_across_chunks(physionet, tmp_path):
    """A beat is kept when a kept window holds it, whichever chunk the window started in."""
    lead = mitdb_lead(physionet, 60)
    lead[25 * 360: 25 * 360 + 20] = -32768  # a short gap: the third window is dropped
    path = lead_record(tmp_path, "part", lead)
    found = {}
    for chunk_s in (7.0, 600.0):
        cfg = WindowWaveforms(beats=True, chunk_s=chunk_s)
        report = process_record(RecordJob("part", str(path), None, None, (), cfg,
                                          str(tmp_path / "w.parquet"),
                                          str(tmp_path / "b.parquet")))
        assert report["windows_dropped"]["gap"] == 1 and report["windows_produced"] == 5
        peaks = pl.read_parquet(tmp_path / "b.parquet")["r_peak_sample"].to_numpy()
        assert not ((peaks >= 20 * 360) & (peaks < 30 * 360)).any()
        found[chunk_s] = peaks
    assert np.array_equal(found[7.0], found[600.0])


def test_empty_or_unmounted_source_never_wipes_outputs(physionet, tmp_path, make_wf_params,
                                                       caplog):
    """A source yielding no record while earlier outputs exist is refused by both stages
    (window_waveforms would remove every record's output); a first run only warns."""
    from medae.waveforms import catalog

    src = tmp_path / "src"
    src.mkdir()
    params = make_wf_params(src, tmp_path / "out")
    with caplog.at_level(logging.WARNING, logger="medae"):
        assert catalog.run(params)["records"] == 0  # first run, nothing there: a warning
    assert "no WFDB record found" in caplog.text
    assert windows.run(params)["records"] == 0
    mitdb_copy(physionet, src, "rec1")
    catalog.run(params)
    windows.run(params)
    out = params.path(params.window_waveforms.out)
    catalogue = params.path(params.catalog_waveforms.out)
    before = {f: f.read_bytes() for f in (*out.glob("*"), catalogue)}
    for file in src.iterdir():  # the source is unmounted
        file.unlink()
    with pytest.raises(DataError, match=r"src: no WFDB record found \(waveforms.source\), "
                                        r"but earlier runs left 2 window/beat files"):
        catalog.run(params)
    # Even with an empty catalog in place (DVC deletes a stage's outputs before it runs).
    pl.read_parquet(catalogue).clear().write_parquet(catalogue)
    with pytest.raises(DataError, match=r"catalog.parquet: the waveform catalog lists no "
                                        r"record, but earlier runs left 2"):
        windows.run(params)
    assert all(f.read_bytes() == data for f, data in before.items() if f != catalogue)
    assert (params.path(params.window_waveforms.beats_out) / "rec1.parquet").exists()


def test_annotation_files_are_part_of_the_fingerprint(physionet, tmp_path, make_wf_params):
    """Adding or changing a record's .atr redoes the record (its beats' reference symbols)."""
    from medae.waveforms import catalog

    mitdb_copy(physionet, tmp_path / "src", "100")
    params = make_wf_params(tmp_path / "src", tmp_path / "out")

    def fingerprint() -> str:
        return build_catalog(tmp_path / "src", PATTERN)[0]["fingerprint"][0]

    bare = fingerprint()
    catalog.run(params)
    assert windows.run(params)["processed"] == 1
    beats = params.path(params.window_waveforms.beats_out) / "100.parquet"
    assert pl.read_parquet(beats)["symbol"].null_count() == 23
    atr = tmp_path / "src" / "100.atr"
    atr.write_bytes((physionet / "mitdb" / "100.atr").read_bytes())
    added = fingerprint()
    assert added != bare
    catalog.run(params)
    assert windows.run(params)["processed"] == 1  # the reference symbols are read now
    assert pl.read_parquet(beats)["symbol"].null_count() == 0
    os.utime(atr, ns=(10**18, 10**18))
    assert fingerprint() not in (bare, added)


def test_header_without_length_reads_the_data_files_frames(physionet, tmp_path):
    """A record line with no sample count ('r 2 360'): wfdb reads every frame the data
    file holds, and so do the catalog and the window stage (said in the report)."""
    path = mitdb_copy(physionet, tmp_path / "src", "nolen")
    header = path.with_suffix(".hea")
    lines = header.read_text().splitlines()
    lines[0] = "nolen 2 360"
    header.write_text("\n".join(lines) + "\n")
    row = build_catalog(tmp_path / "src", PATTERN)[0].row(0, named=True)
    assert (row["n_frames"], row["duration_s"]) == (SECONDS * 360, SECONDS)
    report = process_record(job(path, tmp_path, beats=True))
    assert report["windows_produced"] == 2 * SECONDS // 10 and report["beats"] == 23
    assert report["length_from_data_file"] is True
    assert "length_from_data_file" not in process_record(
        job(mitdb_copy(physionet, tmp_path, "ok"), tmp_path))


@pytest.mark.parametrize(("factor", "caught"), [(10, None), (0.1, None),
                                                (100, "out_of_range"), (0.02, "low_amplitude")])
def test_what_the_quality_checks_catch_of_a_wrong_gain(physionet, tmp_path, factor, caught):
    """The limits docs/waveforms.md states: values up to 10x off either way pass unnoticed
    (per-window normalisation hides them); 100x too large and 50x too small are dropped."""
    path = mitdb_copy(physionet, tmp_path, "gain", gain=repr(200 / factor))
    report = process_record(job(path, tmp_path))
    dropped = {k: v for k, v in report["windows_dropped"].items() if v}
    assert dropped == ({} if caught is None else {caught: 2 * SECONDS // 10})


def test_duplicate_names_each_reported_and_warned(physionet, tmp_path, make_wf_params,
                                                  caplog):
    """Three folders with the same record: the first by path is windowed, the other two each
    get an entry with their path, and both stages warn (counts only)."""
    from medae.waveforms import catalog

    for folder in ("a", "b", "c"):
        mitdb_copy(physionet, tmp_path / "src" / folder, "rec")
    params = make_wf_params(tmp_path / "src", tmp_path / "out")
    with caplog.at_level(logging.WARNING, logger="medae"):
        catalog.run(params)
        summary = windows.run(params)
    assert "2 catalogued records share their name" in caplog.text
    assert "2 records not windowed: their name is another record's" in caplog.text
    report = json.loads(params.path(params.window_waveforms.report).read_text())
    assert report["records"]["rec#dup1"]["error"] == (
        "duplicate record name: b/rec is not windowed, a/rec is (first by path)")
    assert report["records"]["rec#dup2"]["error"].startswith("duplicate record name: c/rec")
    assert (summary["records_duplicate"], report["records"]["rec"]["windows_produced"]) == (2, 4)


def test_non_ascii_record_name_is_quarantined_with_the_reason(physionet, tmp_path):
    """wfdb drops non-ASCII characters ('réc_ü' -> 'rc_') and then misses the data file."""
    path = mitdb_copy(physionet, tmp_path, "réc_ü")
    mitdb_copy(physionet, tmp_path, "ok")
    catalog, quarantine = build_catalog(tmp_path, PATTERN)
    assert catalog["record_name"].to_list() == ["ok"]
    assert quarantine.to_dicts() == [{"path": path.name, "reason": (
        "réc_ü.hea: record name has characters other than ASCII letters, digits, '_' and '-', "
        "which wfdb drops (it would read another record's files)")}]
