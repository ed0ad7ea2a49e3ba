"""Waveform pipeline benchmark: medae's full chain against NeuroKit2 and raw wfdb reads.

Prints, side by side in one run (medians over --repeats):
  1. medae full chain (read, harmonise, resample, filter, window, quality, normalise, beats,
     Parquet write) on every real record, in multiples of real time per core (1 process);
  2. NeuroKit2 ``ecg_clean`` + ``ecg_peaks`` on the ECG lead of the same records, and medae's
     full chain and medae's R-peak detection on those records, with the ratios;
  3. raw ``wfdb.rdrecord`` of the same records (the floor), as a ratio to the full chain;
  4. peak RSS of one worker windowing a generated --long-hours record (117 h by default);
  5. speed-up of the stage's executor from 1 to 2 workers.

Usage: .venv/bin/python benchmarks/waveform_pipeline.py [--repeats 3] [--long-hours 117]
       [--source ../shared/realdata/physionet]. The machine load (uptime) is printed: on a
shared machine wall-clock figures are pessimistic, CPU-time figures less so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medae.config import ExecutorConfig  # noqa: E402
from medae.executor import map_items  # noqa: E402
from medae.waveforms.beats import detect_r_peaks, pick_ecg_channel  # noqa: E402
from medae.waveforms.catalog import build_catalog  # noqa: E402
from medae.waveforms.config import WaveformSource, WindowWaveforms  # noqa: E402
from medae.waveforms.reader import record_segments  # noqa: E402
from medae.waveforms.windows import RecordJob, process_record  # noqa: E402


@dataclass
class Timing:
    wall: float
    cpu: float


def timed(fn, *args) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def median_timing(fn, repeats: int, *args) -> Timing:
    runs = [timed(fn, *args) for _ in range(repeats)]
    return Timing(statistics.median(r.wall for r in runs), statistics.median(r.cpu for r in runs))


def record_seconds(path: Path) -> float:
    """Seconds of signal in the readable segments of a record."""
    segments, _, _ = record_segments(path)
    return sum(s.n_frames / s.frame_fs for s in segments)


def job(path: Path, out: Path, cfg: WindowWaveforms, tag: str = "") -> RecordJob:
    name = path.name + tag
    return RecordJob(name, str(path), None, None, (), cfg, str(out / f"{name}.parquet"),
                     str(out / f"{name}.beats.parquet"))


def run_chain(jobs: list[RecordJob]) -> None:
    for j in jobs:
        process_record(j)


def ecg_leads(paths: list[Path]) -> list[tuple[np.ndarray, float]]:
    """The ECG lead (lead II preferred) of each single-segment record, read whole."""
    import wfdb

    leads = []
    for path in paths:
        header = wfdb.rdheader(str(path))
        index = pick_ecg_channel(list(header.sig_name), None)
        rec = wfdb.rdrecord(str(path), channels=[index], smooth_frames=False)
        fs = float(header.fs) * int(header.samps_per_frame[index])
        leads.append((np.nan_to_num(rec.e_p_signal[0]), fs))
    return leads


def run_neurokit(leads) -> None:
    import neurokit2 as nk

    for signal, fs in leads:
        cleaned = nk.ecg_clean(signal, sampling_rate=int(round(fs)))
        nk.ecg_peaks(cleaned, sampling_rate=int(round(fs)))


def run_neurokit_full(leads) -> None:
    """``ecg_process``: clean, peaks, rate, quality and delineation (NeuroKit2's full chain)."""
    import warnings

    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for signal, fs in leads:
            nk.ecg_process(signal, sampling_rate=int(round(fs)))


def run_neurokit_quality(leads) -> None:
    """``ecg_clean`` + ``ecg_quality`` (the closest NeuroKit2 analogue of windows + q_beat)."""
    import neurokit2 as nk

    for signal, fs in leads:
        cleaned = nk.ecg_clean(signal, sampling_rate=int(round(fs)))
        nk.ecg_quality(cleaned, sampling_rate=int(round(fs)))


def run_detector(leads) -> None:
    for signal, fs in leads:
        detect_r_peaks(signal, fs)


def run_rdrecord(paths: list[Path]) -> None:
    import wfdb

    for path in paths:
        header = wfdb.rdheader(str(path))
        if getattr(header, "seg_name", None) is None:
            wfdb.rdrecord(str(path), smooth_frames=False)
        else:
            for seg in record_segments(path)[0]:
                wfdb.rdrecord(seg.path, smooth_frames=False)


def write_long_record(folder: Path, hours: float) -> Path:
    """A 3-signal 125 Hz format-80 record (ECG II, PLETH, ABP) of ``hours`` hours, written
    one hour at a time (its data file is 1.35 MB per hour)."""
    fs, name = 125, f"long{int(hours)}h"
    n = int(hours * 3600 * fs)
    (folder / f"{name}.hea").write_text(
        f"{name} 3 {fs} {n} 00:00:00 01/01/2150\n"
        f"{name}.dat 80 100/mV 8 0 0 0 0 II\n"
        f"{name}.dat 80 100/NU 8 0 0 0 0 PLETH\n"
        f"{name}.dat 80 1(-100)/mmHg 8 0 0 0 0 ABP\n")
    rng = np.random.default_rng(0)
    t_beat = np.arange(fs) / fs
    qrs = 1.1 * np.exp(-((t_beat - 0.3) ** 2) / (2 * 0.012**2)) \
        + 0.25 * np.exp(-((t_beat - 0.6) ** 2) / (2 * 0.05**2))
    with open(folder / f"{name}.dat", "wb") as out:
        for start in range(0, n, 3600 * fs):
            m = min(3600 * fs, n - start)
            t = (start + np.arange(m)) / fs
            phase = (t % 0.8) / 0.8
            ecg = np.interp(phase * fs * 0.8, np.arange(fs), qrs) + rng.normal(0, 0.03, m)
            ppg = 0.6 * np.sin(2 * np.pi * t / 0.8) ** 2 + rng.normal(0, 0.02, m)
            abp = 95 + 25 * np.sin(2 * np.pi * t / 0.8) + rng.normal(0, 1, m)
            digital = np.stack([ecg * 100, ppg * 100, abp - 100], axis=1)
            frames = np.clip(np.round(digital), -127, 127).astype(np.int16) + 128
            out.write(frames.astype(np.uint8).tobytes())
    return folder / name


CHILD = """
import sys, time
from pathlib import Path
from medae.waveforms.config import WindowWaveforms
from medae.waveforms.windows import RecordJob, process_record
path, out = Path(sys.argv[1]), Path(sys.argv[2])
t = time.perf_counter(); c = time.process_time()
report = process_record(RecordJob(path.name, str(path), None, None, (), WindowWaveforms(),
                                  str(out / "w.parquet"), str(out / "b.parquet")))
# VmHWM: this process's own peak RSS (ru_maxrss would include the parent it was forked from).
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(time.perf_counter() - t, time.process_time() - c, report["windows_produced"], hwm / 1024)
"""


def long_record_worker(path: Path, out: Path) -> tuple[float, float, int, float]:
    """Window ``path`` in a fresh worker process: (wall s, cpu s, windows, peak RSS MiB)."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"long-record worker failed: {proc.stderr.strip()[-500:]}")
    wall, cpu, windows, rss = proc.stdout.split()
    return float(wall), float(cpu), int(windows), float(rss)


def workers_speedup(paths: list[Path], out: Path, copies: int) -> tuple[float, float, float]:
    """Wall seconds of the stage's executor over ``copies`` x the records with 1 and with 2
    workers, and the start-up cost of a 2-worker pool alone (spawned workers import numpy,
    scipy, pyarrow and wfdb before their first record)."""
    cfg = WindowWaveforms()
    jobs = [job(p, out, cfg, f"_{k}") for k in range(copies) for p in paths]
    result = []
    for workers in (1, 2):
        t = time.perf_counter()
        done = map_items(process_record, jobs, ExecutorConfig(workers=workers, progress=False),
                         names=[j.record_name for j in jobs], on_error="raise")
        assert len(done.values) == len(jobs)
        result.append(time.perf_counter() - t)
    t = time.perf_counter()
    map_items(record_seconds, paths[:2], ExecutorConfig(workers=2, progress=False))
    return result[0], result[1], time.perf_counter() - t


def f1_table(source: Path) -> None:
    """R-peak F1 against .atr beat annotations (150 ms tolerance) for every MIT-BIH record:
    the detector on the native 360 Hz lead, and the beats the window stage writes (detected
    at 125 Hz, refined on native samples)."""
    import pyarrow.parquet as pq
    import wfdb

    from medae.waveforms.beats import BEAT_SYMBOLS, f1_score, match_peaks

    print("\nR-peak F1 vs .atr (150 ms), lead MLII:  record  native-detector  stage-beats")
    with tempfile.TemporaryDirectory(prefix="medae-f1-") as tmp:
        for header in sorted((source / "mitdb").glob("*.hea")):
            path = header.with_suffix("")
            ann = wfdb.rdann(str(path), "atr")
            ref = np.array([s for s, sym in zip(ann.sample, ann.symbol, strict=True)
                            if sym in BEAT_SYMBOLS])
            lead = wfdb.rdrecord(str(path), channels=[0]).p_signal[:, 0]
            native = f1_score(*match_peaks(detect_r_peaks(lead, 360.0), ref, 54))
            j = job(path, Path(tmp), WindowWaveforms())
            process_record(j)
            peaks = pq.read_table(j.beats_file, columns=["r_peak_sample"])[0].to_numpy()
            stage = f1_score(*match_peaks(peaks, ref, 54))
            print(f"{'':40s} {path.name:>6s} {native:16.4f} {stage:12.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "realdata" /
                        "physionet")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-hours", type=float, default=117.0)
    parser.add_argument("--copies", type=int, default=4,
                        help="copies of the records for the 1 -> 2 workers measurement")
    args = parser.parse_args()

    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f} (1/5/15 min) on {os.cpu_count()} cores")
    catalog, _ = build_catalog(args.source.resolve(), WaveformSource().subject_pattern)
    # Numerics records (one sample a minute) hold no waveform: their hours would flatter us.
    catalog = catalog.filter(catalog["frame_fs"] >= WindowWaveforms().min_native_fs)
    paths = [args.source.resolve() / p for p in catalog["path"].to_list()]
    seconds = {p: record_seconds(p) for p in paths}
    total_s = sum(seconds.values())
    single_ecg = [p for p, canon, multi in catalog.select("path", "canonical", "multi_segment")
                  .rows() for p in [args.source.resolve() / p]
                  if not multi and any(c and c.startswith("ecg") for c in canon)]
    ecg_s = sum(seconds[p] for p in single_ecg)
    cfg = WindowWaveforms()

    with tempfile.TemporaryDirectory(prefix="medae-bench-") as tmp:
        out = Path(tmp)
        jobs = [job(p, out, cfg) for p in paths]
        run_chain(jobs[:1])  # warm imports and caches
        chain = median_timing(run_chain, args.repeats, jobs)
        ecg_jobs = [job(p, out, cfg) for p in single_ecg]
        chain_ecg = median_timing(run_chain, args.repeats, ecg_jobs)
        leads = ecg_leads(single_ecg)
        run_neurokit(leads[:1])
        nk = median_timing(run_neurokit, args.repeats, leads)
        detector = median_timing(run_detector, args.repeats, leads)
        # NeuroKit2's slower paths on the first 5 minutes of each lead (throughput is per
        # second of signal, so the shorter input only bounds the run time).
        # (MIT-BIH leads only: ecg_quality fails on the short and gap-filled MIMIC leads.)
        short = [(sig[: int(300 * fs)], fs) for (sig, fs), p in zip(leads, single_ecg,
                                                                    strict=True)
                 if p.parent.name == "mitdb"]
        short_s = sum(len(sig) / fs for sig, fs in short)
        nk_quality = median_timing(run_neurokit_quality, 1, short)
        nk_full = median_timing(run_neurokit_full, 1, short)
        read = median_timing(run_rdrecord, args.repeats, paths)

        print(f"\nrecords: {len(paths)} ({total_s / 3600:.2f} h of signal); ECG records for "
              f"the NeuroKit2 comparison: {len(single_ecg)} ({ecg_s / 3600:.2f} h)")
        print(f"{'measure':58s} {'wall s':>8s} {'x real time':>12s} {'cpu s':>8s} "
              f"{'x (cpu)':>10s}")
        rows = [("medae full chain, all records, 1 core", chain, total_s),
                ("raw wfdb.rdrecord, all records (floor)", read, total_s),
                ("medae full chain, ECG records (all channels)", chain_ecg, ecg_s),
                ("medae detect_r_peaks, ECG lead of those records", detector, ecg_s),
                ("NeuroKit2 ecg_clean + ecg_peaks, same leads", nk, ecg_s),
                ("NeuroKit2 ecg_clean + ecg_quality, 5 min of MIT-BIH", nk_quality, short_s),
                ("NeuroKit2 ecg_process, 5 min of MIT-BIH", nk_full, short_s)]
        for label, t, s in rows:
            print(f"{label:58s} {t.wall:8.3f} {s / t.wall:12,.0f} {t.cpu:8.3f} "
                  f"{s / max(t.cpu, 1e-9):10,.0f}")
        print(f"\nratio NeuroKit2 time / medae full chain time (same records): "
              f"{nk.wall / chain_ecg.wall:.2f}x wall, {nk.cpu / chain_ecg.cpu:.2f}x cpu")
        print(f"ratio NeuroKit2 time / medae detector time (same leads):       "
              f"{nk.wall / detector.wall:.2f}x wall, {nk.cpu / detector.cpu:.2f}x cpu")
        for label, t in (("ecg_clean + ecg_quality", nk_quality), ("ecg_process", nk_full)):
            speed = (ecg_s / chain_ecg.cpu) / (short_s / t.cpu)
            print(f"ratio medae full chain / NeuroKit2 {label} throughput: {speed:.1f}x (cpu)")
        print(f"ratio medae full chain / raw rdrecord read (floor):            "
              f"{chain.wall / read.wall:.2f}x wall, {chain.cpu / read.cpu:.2f}x cpu")

        one, two, startup = workers_speedup([p for p in paths if p.parent.name == "mitdb"],
                                            out, args.copies)
        print(f"\nexecutor 1 -> 2 workers ({args.copies} x the MIT-BIH records): "
              f"{one:.2f}s -> {two:.2f}s, speed-up {one / two:.2f}x; a 2-worker pool costs "
              f"{startup:.2f}s to start, excluding it: {one / max(two - startup, 1e-9):.2f}x")

        if args.long_hours > 0:
            t = time.perf_counter()
            long_path = write_long_record(out, args.long_hours)
            print(f"\ngenerated a {args.long_hours:g} h 3-signal record in "
                  f"{time.perf_counter() - t:.1f}s "
                  f"({long_path.with_suffix('.dat').stat().st_size / 2**20:.0f} MiB)")
            wall, cpu, windows, rss = long_record_worker(long_path, out)
            hours_s = args.long_hours * 3600
            print(f"long record: {windows} windows in {wall:.1f}s wall ({hours_s / wall:,.0f}x "
                  f"real time), {cpu:.1f}s cpu ({hours_s / cpu:,.0f}x); peak RSS of the worker "
                  f"{rss:.0f} MiB (limit 512 MiB)")
    f1_table(args.source.resolve())
    print(f"\nload after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
