"""How fast does ``medae synth`` write chartevents? Side by side with two baselines.

    .venv/bin/python benchmarks/synth_speed.py [--subjects 20000] [--repeats 3]

1. ``medae synth`` at ``--subjects`` (no waveforms): total wall time and chartevents rows/s
   (numpy generation + Polars CSV + zlib level 1, streamed chunk by chunk).
2. On a sample of the same rows (the first chunks), rows/s of three writers of identical rows
   into the same gzip level: the generator's own pipeline (generation included, compression in
   a background thread), Polars ``write_csv`` of the already generated frames (write cost only,
   compression inline), and Python's ``csv`` module from already materialised tuples (write
   cost only).
Medians over ``--repeats`` runs; run ``uptime`` alongside, the machine is shared.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl

from medae.synth import cohort as co
from medae.synth.csvgz import DATETIME_FORMAT, GZIP_LEVEL, csv_gz_writer
from medae.synth.events import CHARTEVENTS_COLUMNS, chartevents_chunk
from medae.synth.generate import STAYS_PER_CHUNK, STREAM_CHART, STREAM_COHORT, generate, stream_rng

SAMPLE_CHUNKS = 2


def full_run(subjects: int, folder: Path) -> tuple[float, int]:
    started = time.perf_counter()
    summary = generate(folder, subjects=subjects, seed=0, waveforms=False)
    return time.perf_counter() - started, summary["rows"]["chartevents"]


def sample_frames(subjects: int) -> list[pl.DataFrame]:
    cohort = co.make_cohort(subjects, stream_rng(0, STREAM_COHORT))
    return [chartevents_chunk(_sample_stays(cohort, i), stream_rng(0, STREAM_CHART, i))
            for i in range(SAMPLE_CHUNKS)]


def _sample_stays(cohort: co.Cohort, chunk: int) -> pl.DataFrame:
    return cohort.stays.slice(chunk * STAYS_PER_CHUNK, STAYS_PER_CHUNK)


def medae_pipeline(subjects: int, path: Path) -> tuple[float, int]:
    """The generator's own path: generate each chunk, write it while the last one compresses."""
    cohort = co.make_cohort(subjects, stream_rng(0, STREAM_COHORT))
    started = time.perf_counter()
    with csv_gz_writer(path, CHARTEVENTS_COLUMNS) as writer:
        for i in range(SAMPLE_CHUNKS):
            writer.write(chartevents_chunk(_sample_stays(cohort, i),
                                           stream_rng(0, STREAM_CHART, i)))
    return time.perf_counter() - started, writer.rows


def polars_write(frames: list[pl.DataFrame], path: Path) -> float:
    started = time.perf_counter()
    with gzip.open(path, "wb", compresslevel=GZIP_LEVEL) as f:
        for frame in frames:
            buffer = io.BytesIO()
            frame.write_csv(buffer, include_header=False, datetime_format=DATETIME_FORMAT)
            f.write(buffer.getvalue())
    return time.perf_counter() - started


def csv_module_write(frames: list[pl.DataFrame], path: Path) -> float:
    rows = [frame.with_columns(pl.col("charttime", "storetime").dt.strftime(DATETIME_FORMAT))
            .rows() for frame in frames]  # materialised outside the timing: writing only
    started = time.perf_counter()
    with gzip.open(path, "wt", compresslevel=GZIP_LEVEL, newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        for chunk in rows:
            writer.writerows(chunk)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = [full_run(args.subjects, root / f"run{i}") for i in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        rows = runs[0][1]
        print(f"medae synth --subjects {args.subjects}: {rows:,} chartevents rows, "
              f"median wall {wall:.1f} s over {args.repeats} runs "
              f"({rows / wall:,.0f} chartevents rows/s of total wall time)")

        ours, pol, pycsv = [], [], []
        frames = sample_frames(args.subjects)
        n = sum(f.height for f in frames)
        for i in range(args.repeats):
            seconds, rows = medae_pipeline(args.subjects, root / f"ours{i}.csv.gz")
            assert rows == n
            ours.append(n / seconds)
            pol.append(n / polars_write(frames, root / f"polars{i}.csv.gz"))
            pycsv.append(n / csv_module_write(frames, root / f"csv{i}.csv.gz"))
        print(f"sample of {n:,} chartevents rows ({SAMPLE_CHUNKS} chunks), median rows/s:")
        base = statistics.median(pycsv)
        for label, values in (("medae synth (generate + write)", ours),
                              ("polars write_csv only", pol),
                              ("python csv module write only", pycsv)):
            med = statistics.median(values)
            print(f"  {label:32s} {med:>12,.0f} rows/s   x{med / base:5.1f} vs csv module")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
