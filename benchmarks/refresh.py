"""Refresh cost: first run, no-op re-run, and a re-run after adding 5% new subjects.

Runs `medae refresh` exactly as `make demo` does, in a throw-away copy of the project (its own
git repository, the project's dvc.yaml and params.yaml, demo data from `medae synth`), and
prints the three wall times side by side with their ratio to the first run. Targets: no-op
<= 20% of the first run; the 5% run should cost well below the first (it follows the new data,
down to the granularity of the incremental units: ingest shards, waveform records, export
parts).

    .venv/bin/python benchmarks/refresh.py [--subjects 200] [--new-share 0.05] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.flows.project import make_project, synth  # noqa: E402 - the tests' project copy

MEDAE = str(Path(sys.executable).parent / "medae")
PER_SUBJECT_TABLES = ("hosp/patients", "hosp/admissions", "hosp/labevents", "icu/icustays",
                      "icu/chartevents")


def refresh(project: Path, remote: Path) -> tuple[float, str]:
    """One `medae refresh`; returns its wall time and the stage statuses."""
    t0 = time.perf_counter()
    proc = subprocess.run([MEDAE, "refresh", "--set", f"dvc.remote={remote}"], cwd=project,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"refresh failed:\n{proc.stderr[-3000:]}")
    import json

    stages = json.loads(proc.stdout)["stages"]
    ran = [n for n, o in stages.items() if o["status"] == "ran"]
    return seconds, f"ran: {', '.join(ran) or 'nothing'}"


def read_csv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)  # all strings: rows round-trip unchanged


def write_csv_gz(df: pl.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()
    df.write_csv(buffer)
    tmp = path.with_suffix(".tmp")
    with gzip.GzipFile(tmp, "wb", mtime=0) as gz:
        gz.write(buffer.getvalue())
    os.replace(tmp, path)


def add_subjects(project: Path, n: int, seed: int) -> int:
    """Append ``n`` newly generated subjects (ids, admissions and stays that do not collide)
    to the project's source tables, and copy their waveform records."""
    src_ehr, src_wave = project / "data/source/ehr", project / "data/source/waveforms"
    extra = Path(tempfile.mkdtemp(prefix="medae-extra-"))
    synth(extra, subjects=n * 2, seed=seed)  # some will collide with existing ids
    extra_ehr, extra_wave = extra / "data/source/ehr", extra / "data/source/waveforms"
    taken = {col: set(read_csv(src_ehr / "icu/icustays.csv.gz")[col])
             for col in ("subject_id", "hadm_id", "stay_id")}
    taken["hadm_id"] |= set(read_csv(src_ehr / "hosp/admissions.csv.gz")["hadm_id"])
    stays = read_csv(extra_ehr / "icu/icustays.csv.gz")
    admissions = read_csv(extra_ehr / "hosp/admissions.csv.gz")
    clash = (set(stays.filter(pl.col("stay_id").is_in(taken["stay_id"]))["subject_id"])
             | set(admissions.filter(pl.col("hadm_id").is_in(taken["hadm_id"]))["subject_id"])
             | (set(admissions["subject_id"]) & taken["subject_id"]))
    fresh = sorted(set(read_csv(extra_ehr / "hosp/patients.csv.gz")["subject_id"]) - clash)[:n]
    for table in PER_SUBJECT_TABLES:
        path = src_ehr / f"{table}.csv.gz"
        new_rows = read_csv(extra_ehr / f"{table}.csv.gz").filter(
            pl.col("subject_id").is_in(fresh))
        write_csv_gz(pl.concat([read_csv(path), new_rows], how="vertical"), path)
    records = []
    for subject in fresh:  # MIMIC layout: pNN/p<subject_id>/<records>
        rel = Path(f"p{subject[:2]}") / f"p{subject}"
        if (extra_wave / rel).is_dir():
            shutil.copytree(extra_wave / rel, src_wave / rel)
            records.append(f"{rel.as_posix()}/")
    with (src_wave / "RECORDS").open("a") as fh:
        fh.writelines(f"{r}\n" for r in records)
    shutil.rmtree(extra, ignore_errors=True)
    return len(fresh)


def measure_reruns(project: Path, first: float | None, subjects: int, share: float, *,
                   seed: int = 1, remote: Path | None = None) -> None:
    """The no-op re-run, then a re-run after adding ``share`` new subjects."""
    remote = remote or project.parent / "medae-dvc-remote"
    ratio = (lambda s: f"{s / first:.2f}x") if first else (lambda s: "")
    noop, what = refresh(project, remote)
    print(f"no-op re-run:  {noop:7.1f} s  {ratio(noop)}  ({what})  target <= 0.20x")
    added = add_subjects(project, max(1, round(subjects * share)), seed=seed)
    more, what = refresh(project, remote)
    print(f"+{added} subjects:  {more:7.1f} s  {ratio(more)}  ({what})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--new-share", type=float, default=0.05)
    parser.add_argument("--keep", type=Path, help="keep the project in this folder")
    parser.add_argument("--project", type=Path, help="an already refreshed project (e.g. after "
                        "`make demo`): measure only the no-op and the new-subjects runs")
    parser.add_argument("--first-seconds", type=float, help="with --project: its first run")
    parser.add_argument("--new-seed", type=int, default=1, help="seed of the added subjects")
    args = parser.parse_args()
    if args.project:
        measure_reruns(args.project.resolve(), args.first_seconds, args.subjects, args.new_share,
                       seed=args.new_seed)
        return

    base = args.keep or Path(tempfile.mkdtemp(prefix="medae-bench-refresh-"))
    project = make_project(base / "proj", overrides={"refresh": {"retries": 2}})
    # production params: only the shrinking of the test copy is undone
    shutil.copy2(ROOT / "params.yaml", project / "params.yaml")
    print(f"load {os.getloadavg()[0]:.1f}; {args.subjects} subjects; project {project}")
    t0 = time.perf_counter()
    synth(project, subjects=args.subjects)
    print(f"demo data:     {time.perf_counter() - t0:7.1f} s")
    remote = base / "remote"
    first, what = refresh(project, remote)
    print(f"first refresh: {first:7.1f} s  1.00x  ({what})")
    measure_reruns(project, first, args.subjects, args.new_share, seed=args.new_seed,
                   remote=remote)
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
