"""window_waveforms on every real record: schema, counts, rates, drops by reason, gaps,
linkage, bounded reads and incremental re-runs."""

from __future__ import annotations

import datetime as dt
import json
import os

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from medae.waveforms import windows
from medae.waveforms.config import WindowWaveforms
from medae.waveforms.dsp import filter_sos, filtfilt_runs
from medae.waveforms.windows import BEAT_SCHEMA, WINDOW_SCHEMA, RecordJob, process_record

MITDB = ["100", "101", "103", "105", "106", "108", "109", "111", "118", "119"]


def windows_of(params, name: str) -> pl.DataFrame:
    return pl.read_parquet(params.path(params.window_waveforms.out) / f"{name}.parquet")


def job_for(physionet, tmp_path, rel: str, cfg: WindowWaveforms, **kw) -> RecordJob:
    name = rel.rsplit("/", 1)[-1]
    fields = dict(record_name=name, path=str(physionet / rel), subject_id=None,
                  base_datetime=None, stays=(), cfg=cfg, out_file=str(tmp_path / "w.parquet"),
                  beats_file=None)
    fields.update(kw)
    return RecordJob(**fields)


def test_every_record_processed_none_failed(wf_run):
    _, catalog, summary, report = wf_run
    assert summary["records"] == catalog.height == 18
    assert summary["quarantined"] == 0 and summary["processed"] == 18
    assert all("error" not in r for r in report["records"].values())


def test_the_dvc_metric_holds_the_totals_and_no_record_name(wf_run):
    """`dvc metrics show` prints every number of a metric file: the per-record report (keyed
    by record names, which embed MIMIC subject ids) is an output, its totals the metric."""
    params, catalog, _, report = wf_run
    path = params.path(params.window_waveforms.totals)
    totals = json.loads(path.read_text())
    assert totals == {"stage": "window_waveforms", "totals": report["totals"]}
    assert totals["totals"]["windows_produced"] == sum(
        r["windows_produced"] for r in report["records"].values())

    def keys(tree):
        return {k for key, v in tree.items() for k in (key, *keys(v))} if isinstance(
            tree, dict) else set()
    assert keys(report) & set(catalog["record_name"])  # the report names them ...
    assert not keys(totals) & set(catalog["record_name"])  # ... the metric does not


def test_schema_matches_contract(wf_run):
    params = wf_run[0]
    out = params.path(params.window_waveforms.out)
    for file in sorted(out.glob("*.parquet")):
        assert pq.read_schema(file).remove_metadata() == WINDOW_SCHEMA, file.name
    beats = params.path(params.window_waveforms.beats_out)
    assert pq.read_schema(beats / "100.parquet").remove_metadata() == BEAT_SCHEMA


@pytest.mark.parametrize("name", MITDB)
def test_mitdb_window_counts_add_up(wf_run, name):
    params, _, _, report = wf_run
    rec = report["records"][name]
    for channel, counts in rec["channels"].items():
        # 650,000 samples at 360 Hz = 1805.6 s: 180 complete 10 s windows per lead.
        assert counts["produced"] + sum(counts["dropped"].values()) == 180, channel
    df = windows_of(params, name)
    assert df.height == rec["windows_produced"]
    assert set(df["fs"].unique()) == {125.0}
    assert df["values"].list.len().unique().to_list() == [1250]
    assert df["q_beat"].min() >= 0.5  # kept ECG windows passed the beat-quality threshold


def test_clean_record_keeps_every_window_and_values_are_normalised(wf_run):
    params, _, _, report = wf_run
    assert report["records"]["100"]["windows_produced"] == 360
    df = windows_of(params, "100").filter(pl.col("channel") == "ecg_ii").sort("start_s")
    assert df["start_s"].to_list() == [10.0 * k for k in range(180)]
    values = np.stack(df["values"].to_numpy())
    assert values.dtype == np.float32 and np.isfinite(values).all()
    assert np.allclose(values.mean(axis=1), 0, atol=1e-4)
    assert np.allclose(values.std(axis=1), 1, atol=1e-3)
    assert df["window_start"].null_count() == 180 and df["subject_id"].null_count() == 180


def test_quality_drops_by_reason(wf_run):
    records = wf_run[3]["records"]
    # mixedsignals' respiration trace sits on the ADC rails: every window is dropped as clipped.
    resp = records["mixedsignals"]["channels"]["resp"]
    assert resp["produced"] == 0 and resp["dropped"]["clipping"] == 23
    # Its three ECG leads and ABP end in an invalid-sample gap: the last window is dropped.
    for channel in ("ecg_ii", "ecg_iii", "ecg_v", "abp"):
        assert records["mixedsignals"]["channels"][channel] == {
            "produced": 22, "dropped": {"gap": 1, "clipping": 0, "out_of_range": 0, "flat": 0,
                                        "low_amplitude": 0, "beat_quality": 0}}
    s1 = records["s00001-2896-10-10-00-31"]["windows_dropped"]
    assert s1["flat"] > 0 and s1["beat_quality"] > 0
    # Two of its segments carry uncalibrated signals (ADC gain 1.0: ECG to +-95 "mV", ABP
    # down to -72 "mmHg"): their windows fall outside the physiological range.
    channels = records["s00001-2896-10-10-00-31"]["channels"]
    assert {c: channels[c]["dropped"]["out_of_range"] for c in ("ecg_ii", "ecg_v", "abp")} \
        == {"ecg_ii": 2, "ecg_v": 1, "abp": 3}
    assert sum(r["windows_dropped"]["out_of_range"] for r in records.values()) == 6
    assert records["s00001-2896-10-10-00-31"]["beats_out_of_range"] == 8  # its lead II
    # s00001-2896-10-09-01-56 is a layout header and a 60 s gap ("~"): no sample to read.
    assert records["s00001-2896-10-09-01-56"]["empty_record"] is True
    assert (wf_run[2]["records_empty"], wf_run[2]["records_data_longer_than_header"]) == (1, 0)
    totals = wf_run[2]["windows_dropped"]
    assert totals == {reason: sum(r["windows_dropped"][reason] for r in records.values())
                      for reason in windows.DROP_REASONS}


def test_multi_rate_record_keeps_native_rates(physionet, tmp_path):
    cfg = WindowWaveforms(rates={}, beats=False)
    process_record(job_for(physionet, tmp_path, "mimic3wdb/03700181", cfg))
    df = pl.read_parquet(tmp_path / "w.parquet")
    rates = dict(df.select("channel", "fs").unique().rows())
    assert rates == {"ecg_mcl1": 500.0, "abp": 125.0, "resp": 125.0}
    lengths = dict(df.select("channel", pl.col("values").list.len()).unique().rows())
    assert lengths == {"ecg_mcl1": 5000, "abp": 1250, "resp": 1250}
    process_record(job_for(physionet, tmp_path, "mimic3wdb/mixedsignals", cfg))
    native = dict(pl.read_parquet(tmp_path / "w.parquet").select("channel", "fs").unique().rows())
    assert native == pytest.approx({"ecg_ii": 249.89, "ecg_iii": 249.89, "ecg_v": 249.89,
                                    "abp": 124.945, "ppg": 124.945})  # resp: all clipped
    # Resampled: configured 125 Hz for the 249.89 Hz ECG of mixedsignals is reached as the
    # nearest small ratio (1/2), and the true rate is what fs reports.
    process_record(job_for(physionet, tmp_path, "mimic3wdb/mixedsignals",
                           WindowWaveforms(beats=False)))
    mixed = pl.read_parquet(tmp_path / "w.parquet")
    fs = dict(mixed.select("channel", "fs").unique().rows())
    assert fs["ecg_ii"] == pytest.approx(124.945) and fs["ppg"] == pytest.approx(124.945)
    # ... and every window still has the 10 s x 125 Hz = 1,250 samples of every other
    # record's (models take fixed-width rows): it spans 1,250 / 124.945 s
    lengths = dict(mixed.select("channel", pl.col("values").list.len()).unique().rows())
    assert lengths == {"ecg_ii": 1250, "ecg_iii": 1250, "ecg_v": 1250, "abp": 1250, "ppg": 1250}
    starts = mixed.filter(pl.col("channel") == "ecg_ii")["start_s"].sort().diff().drop_nulls()
    assert starts.min() == pytest.approx(1250 / 124.945)


def test_missing_segment_files_are_reported_not_fatal(wf_run):
    params, _, _, report = wf_run
    s1 = report["records"]["s00001-2896-10-10-00-31"]
    assert s1["skipped_segments"] == [
        {"segment": f"3975656_00{n}", "reason": "data file missing"} for n in ("09", "10", "11")]
    assert s1["windows_produced"] > 3000
    p878 = report["records"]["p000878-2137-10-26-16-57"]
    assert len(p878["skipped_segments"]) == 30
    df = windows_of(params, "p000878-2137-10-26-16-57")
    # Base date known: absolute time = base + offset of the segment on the record's time line.
    base = dt.datetime(2137, 10, 26, 16, 57, 9)
    for start, start_s in df.select("window_start", "start_s").rows():
        assert start == base + dt.timedelta(seconds=start_s)
    assert set(df["subject_id"]) == {878}


def test_numerics_and_unknown_channels_are_skipped_with_reason(wf_run):
    rec = wf_run[3]["records"]["s00001-2896-10-10-00-31n"]
    assert rec["windows_produced"] == 0
    assert rec["skipped_channels"]["RESP"] == "sampling rate below min_native_fs"
    assert rec["skipped_channels"]["HR"] == "not a known waveform channel"


def test_beats_table_carries_reference_symbols(wf_run):
    params = wf_run[0]
    beats = pl.read_parquet(params.path(params.window_waveforms.beats_out) / "100.parquet")
    assert beats["channel"].unique().to_list() == ["ecg_ii"]
    assert beats.height > 2200 and beats["r_peak_sample"].is_sorted()
    assert beats["symbol"].value_counts().filter(pl.col("symbol") == "N")["count"][0] > 2200
    assert beats["values"].list.len().unique().to_list() == [88]  # 0.7 s at 125 Hz


def test_gap_windows_dropped_or_masked(physionet, tmp_path):
    sos = filter_sos(125.0, (0.5, 40.0), None)
    x = np.sin(np.arange(5000) / 7.0)
    x[2000:2100] = np.nan
    y = filtfilt_runs(x, sos)
    assert np.isnan(y[2000:2100]).all() and np.isfinite(y[:2000]).all()
    assert np.isfinite(y[2100:]).all()  # one gap does not poison the rest
    cfg_mask = WindowWaveforms(gap_policy="mask", max_nan_frac=1.0, beats=False,
                               max_clip_frac=1.0)
    process_record(job_for(physionet, tmp_path, "mimic3wdb/mixedsignals", cfg_mask))
    masked = pl.read_parquet(tmp_path / "w.parquet").filter(pl.col("channel") == "ecg_ii")
    assert masked.height == 23 and masked["q_nan_frac"].max() > 0
    worst = masked.sort("q_nan_frac")["values"][-1].to_numpy()
    assert np.isnan(worst).any() and np.isfinite(worst).any()  # gap stays NaN, rest normalised


def test_stay_linkage(physionet, tmp_path):
    base = dt.datetime(2137, 10, 26, 16, 57, 9)
    stays = ((42, base, base + dt.timedelta(seconds=60)),
             (43, base + dt.timedelta(hours=1), base + dt.timedelta(hours=2)))
    job = job_for(physionet, tmp_path, "mimic3wdb/03700181", WindowWaveforms(beats=False),
                  subject_id=7, base_datetime=base, stays=stays)
    process_record(job)
    df = pl.read_parquet(tmp_path / "w.parquet").filter(pl.col("channel") == "abp")
    linked = dict(df.select("start_s", "stay_id").rows())
    assert linked[0.0] == 42 and linked[50.0] == 42 and linked[60.0] is None
    assert set(df["subject_id"]) == {7}


def test_chunk_size_does_not_change_results(physionet, tmp_path):
    """Bounded reads: 60 s chunks give the same windows as 600 s chunks (filters settle in
    the padding), so memory can be bounded without changing outputs."""
    outs = {}
    for chunk in (60.0, 600.0):
        cfg = WindowWaveforms(chunk_s=chunk, beats=False)
        job = job_for(physionet, tmp_path, "mimic3wdb/03700181", cfg,
                      out_file=str(tmp_path / f"c{int(chunk)}.parquet"))
        process_record(job)
        outs[chunk] = pl.read_parquet(job.out_file).sort("channel", "start_s")
    a, b = outs[60.0], outs[600.0]
    assert a.select("channel", "start_s").equals(b.select("channel", "start_s"))
    for channel in ("ecg_mcl1", "abp", "resp"):
        va, vb = (np.stack(d.filter(pl.col("channel") == channel)["values"].to_numpy())
                  for d in (a, b))
        assert np.max(np.abs(va - vb)) < 1e-3, channel


def test_incremental_rerun_skips_unchanged_records(physionet, tmp_path, make_wf_params):
    from medae.waveforms import catalog

    src = tmp_path / "src"
    src.mkdir()
    for name in ("100", "101"):  # headers copied (their mtime changes below), data linked
        (src / f"{name}.hea").write_text((physionet / "mitdb" / f"{name}.hea").read_text())
        for ext in ("dat", "atr"):
            (src / f"{name}.{ext}").symlink_to(physionet / "mitdb" / f"{name}.{ext}")
    params = make_wf_params(src, tmp_path / "out")
    catalog.run(params)
    first = windows.run(params)
    out = params.path(params.window_waveforms.out)
    stamp = {f.name: f.stat().st_mtime_ns for f in out.glob("*.parquet")}
    second = windows.run(params)
    assert (first["processed"], second["processed"], second["unchanged"]) == (2, 0, 2)
    assert {f.name: f.stat().st_mtime_ns for f in out.glob("*.parquet")} == stamp
    assert second["windows_produced"] == first["windows_produced"]
    # A changed record (new mtime) is reprocessed; a changed param reprocesses everything.
    os.utime(src / "101.hea", ns=(10**18, 10**18), follow_symlinks=False)
    catalog.run(params)
    assert windows.run(params)["processed"] == 1
    changed = make_wf_params(src, tmp_path / "out", "window_waveforms.normalize=robust")
    assert windows.run(changed)["processed"] == 2
    fingerprints = json.loads((out / "_fingerprints.json").read_text())
    assert sorted(fingerprints) == ["100", "101"]


def test_bad_record_is_quarantined_not_fatal(physionet, tmp_path, make_wf_params):
    from medae.waveforms import catalog

    src = tmp_path / "src"
    src.mkdir()
    (src / "100.hea").symlink_to(physionet / "mitdb" / "100.hea")
    (src / "100.dat").symlink_to(physionet / "mitdb" / "100.dat")
    (src / "trunc.hea").write_text((physionet / "mitdb" / "100.hea").read_text()
                                   .replace("100.dat", "trunc.dat").replace("100 ", "trunc ", 1))
    (src / "trunc.dat").write_bytes((physionet / "mitdb" / "100.dat").read_bytes()[:1000])
    # Two worker processes: the failure crosses a process boundary and is still collected.
    params = make_wf_params(src, tmp_path / "out", "executor.workers=2")
    catalog.run(params)
    summary = windows.run(params)
    assert (summary["processed"], summary["quarantined"]) == (1, 1)
    report = json.loads(params.path(params.window_waveforms.report).read_text())
    assert report["records"]["trunc"]["error"] == (
        "DataError: trunc: data file holds 333 of the 650000 frames the header declares")
    assert report["records"]["100"]["windows_produced"] == 360


def test_record_with_repaired_header_is_windowed(physionet, tmp_path):
    src = physionet / "mimic3wdb" / "03700181"
    lines = src.with_suffix(".hea").read_text().splitlines()
    lines[0] = "03700181 3 125 75000 15/08/1994 17:27:45"  # date before time: wfdb refuses
    (tmp_path / "03700181.hea").write_text("\n".join(lines) + "\n")
    (tmp_path / "03700181.dat").symlink_to(src.with_suffix(".dat"))
    base = dt.datetime(1994, 8, 15, 17, 27, 45)
    report = process_record(job_for(tmp_path, tmp_path, "03700181",
                                    WindowWaveforms(beats=False), base_datetime=base))
    df = pl.read_parquet(tmp_path / "w.parquet")
    assert report["windows_produced"] == df.height == 180
    assert df["window_start"].min() == base
