"""EHR pipeline benchmark: medae's three stages vs a pandas (MIMIC-Extract style) baseline vs
the Polars floor (``scan_csv -> sink_parquet`` of the raw tables), wall time and peak RSS.

Data: MIMIC-IV-layout tables from ``medae synth`` with about ``--rows`` chartevents rows, cached
under ``--cache`` (default /tmp/medae-bench) and reused. Every measured step runs in its own
process; peak RSS is the sampled peak of the sum over that process and its children (the
executor's workers included), so it is a conservative figure.

    .venv/bin/python benchmarks/ehr_pipeline.py --rows 5000000
    .venv/bin/python benchmarks/ehr_pipeline.py --rows 5000000 --rows 20000000

Targets (issue 3): medae >= 10x faster than pandas, <= 3x the floor, peak RSS <= 2 GB, and
peak RSS at 20M rows <= 1.5x that at 5M. ``--shards auto`` (default) scales the shard count with
the data (about 625k chartevents rows per shard) so per-worker memory stays flat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
ROWS_PER_SUBJECT = 636  # chartevents rows per generated subject (measured on medae synth)
ROWS_PER_SHARD = 625_000
STAGES = ("ingest_ehr", "clean_ehr", "featurize_ehr")


# ------------------------------------------------------------------------------ measuring

def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(cmd: list[str], log_path: Path) -> tuple[float, float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in MB summed over its process tree, CPU
    seconds of the tree). CPU time hardly depends on how busy the shared machine is, wall
    time does: compare both."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    with open(log_path, "ab") as log:
        proc = psutil.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        peak = 0
        while proc.poll() is None:
            total = 0
            with contextlib.suppress(psutil.Error):  # processes come and go while we look
                for p in [proc, *proc.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            peak = max(peak, total)
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log_path}")
    return wall, peak / 2**20, _children_cpu() - cpu0


# ------------------------------------------------------------------------------ data

def ensure_data(cache: Path, rows: int, seed: int) -> tuple[Path, dict]:
    """Generate (or reuse) a synth source with about ``rows`` chartevents rows."""
    subjects = max(10, math.ceil(rows / ROWS_PER_SUBJECT))
    source = cache / f"synth_{subjects}_s{seed}"
    marker = source / "_summary.json"
    if not marker.exists():
        shutil.rmtree(source, ignore_errors=True)
        print(f"generating {subjects} subjects (~{rows:,} chartevents rows) into {source}",
              flush=True)
        from medae.synth.generate import generate

        summary = generate(source, subjects=subjects, seed=seed, waveforms=False)
        marker.write_text(json.dumps(summary, indent=2))
    return source, json.loads(marker.read_text())


# ------------------------------------------------------------------------- baselines

def floor(source: Path, out: Path) -> None:
    """The floor: stream every raw table from CSV to Parquet with Polars, nothing else (all
    columns as strings, as given explicitly: inference fails on MIMIC's mixed columns)."""
    import polars as pl

    from medae.ehr.tables import read_header

    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*/*.csv.gz")):
        schema = {name: pl.String for name in read_header(path)}
        pl.scan_csv(path, schema=schema).sink_parquet(
            out / f"{path.name.removesuffix('.csv.gz')}.parquet")


def _pandas_unit_rules(dictionary) -> tuple:
    """The dictionary's unit conversions and rules as pandas tables (the same source medae
    uses, so both sides convert and range-check identically)."""
    from medae.ehr.dictionary import itemid_frame, rule_frame, unit_frame

    items = itemid_frame(dictionary).to_pandas()[["itemid", "code", "implied_unit"]]
    return items, unit_frame(dictionary).to_pandas(), rule_frame(dictionary).to_pandas()


def pandas_baseline(source: Path, out: Path) -> None:
    """The same clinical work the MIMIC-Extract way, in pandas: read_csv; keep dictionary
    itemids; unit conversion from the dictionary's unit table (rows in an unknown unit
    removed) and its value-decided rules (FiO2 percent, SpO2 fraction); MIMIC-Extract range
    rules (outliers removed, the rest clipped); de-duplication; labs attached to ICU stays
    through ``hadm_id`` and charttime within the stay; hourly mean and count per stay and
    variable; then MIMIC-Extract's simple imputation (mask, forward fill within the stay,
    train-free global mean, hours since last measurement) and z-scores; static table."""
    import numpy as np
    import pandas as pd

    from medae.ehr.dictionary import load_dictionary, normalize_unit

    items, units, rules = _pandas_unit_rules(load_dictionary())
    stays = pd.read_csv(source / "icu" / "icustays.csv.gz",
                        usecols=["subject_id", "hadm_id", "stay_id", "intime", "outtime"],
                        parse_dates=["intime", "outtime"])
    patients = pd.read_csv(source / "hosp" / "patients.csv.gz")
    admissions = pd.read_csv(source / "hosp" / "admissions.csv.gz",
                             parse_dates=["admittime"])
    cols = ["itemid", "charttime", "valuenum", "valueuom"]
    chart = pd.read_csv(source / "icu" / "chartevents.csv.gz", usecols=["stay_id", *cols],
                        parse_dates=["charttime"])
    labs = pd.read_csv(source / "hosp" / "labevents.csv.gz", usecols=["hadm_id", *cols],
                       parse_dates=["charttime"])
    labs = labs.merge(stays[["hadm_id", "stay_id"]], on="hadm_id").drop(columns="hadm_id")
    events = pd.concat([chart, labs], ignore_index=True).merge(items, on="itemid")
    events = events[events["valuenum"].notna()]
    # unit strings normalised once per distinct spelling, as medae does
    spellings = {u: normalize_unit(u) for u in events["valueuom"].dropna().unique()}
    events["unit_norm"] = events["implied_unit"].fillna(events["valueuom"].map(spellings))
    events = events.merge(units, left_on=["code", "unit_norm"],
                          right_on=["code", "unit_norm"], how="left")
    known = events["unit_norm"].isna() | events["scale"].notna()
    events = events[known]
    events["valuenum"] = (events["valuenum"] * events["scale"].fillna(1.0)
                          + events["offset"].fillna(0.0))
    events = events.merge(rules, on="code")
    hit = ((events["rule_above"].notna() & (events["valuenum"] > events["rule_above"]))
           | (events["rule_at_most"].notna() & (events["valuenum"] <= events["rule_at_most"])))
    events.loc[hit, "valuenum"] = events.loc[hit, "valuenum"] * events.loc[hit, "rule_scale"]
    keep = events["valuenum"].between(events["outlier_low"], events["outlier_high"])
    events = events[keep]
    events["valuenum"] = events["valuenum"].clip(events["valid_low"], events["valid_high"])
    events = events.drop_duplicates(["stay_id", "charttime", "code", "valuenum"])
    events = events.merge(stays[["stay_id", "intime", "outtime"]], on="stay_id")
    events = events[(events["charttime"] >= events["intime"])
                    & (events["charttime"] <= events["outtime"])]
    events["hour"] = ((events["charttime"] - events["intime"]) / np.timedelta64(1, "h")).astype(
        "int64")
    hourly = events.groupby(["stay_id", "hour", "code"])["valuenum"].agg(["mean", "count"])
    means = hourly["mean"].unstack("code")
    # MIMIC-Extract's simple imputation: mask, forward fill within the stay, global mean,
    # hours since the last measurement; then z-scores.
    mask = means.notna().astype("float32")
    filled = means.groupby(level="stay_id").ffill().fillna(means.mean())
    hours = pd.Series(means.index.get_level_values("hour"), index=means.index)
    last_seen = means.notna().mul(hours, axis=0).where(means.notna())
    since = hours.values[:, None] - last_seen.groupby(level="stay_id").ffill()
    zscored = (filled - means.mean()) / means.std().replace(0, 1)
    wide = pd.concat({"value": zscored, "mask": mask, "since": since.fillna(-1),
                      "count": hourly["count"].unstack("code")}, axis=1)
    wide.columns = [f"{a}__{b}" for a, b in wide.columns]
    static = stays.merge(patients, on="subject_id").merge(admissions, on=["subject_id",
                                                                         "hadm_id"])
    static["age"] = static["anchor_age"] + static["intime"].dt.year - static["anchor_year"]
    out.mkdir(parents=True, exist_ok=True)
    wide.reset_index().to_parquet(out / "hourly.parquet")
    static[["stay_id", "age", "gender", "hospital_expire_flag"]].to_parquet(
        out / "static.parquet")


# -------------------------------------------------------------------------------- main

def medae_cmd(stage: str, source: Path, work: Path, shards: int, workers: int | None) -> list[str]:
    sets = [f"ehr.source={source}", f"ingest_ehr.out={work}/raw", f"ingest_ehr.shards={shards}",
            f"clean_ehr.out={work}/meds", f"clean_ehr.report={work}/dq_ehr.json",
            f"featurize_ehr.out={work}/windows", f"featurize_ehr.stats={work}/ehr_stats.json",
            "executor.progress=false"]
    if workers:
        sets.append(f"executor.workers={workers}")
    cmd = [sys.executable, "-m", "medae.cli", "run", stage, "--params", str(ROOT / "params.yaml")]
    for item in sets:
        cmd += ["--set", item]
    return cmd


def bench_point(rows: int, args: argparse.Namespace) -> dict:
    cache = Path(args.cache)
    source, summary = ensure_data(cache, rows, args.seed)
    actual = summary["rows"]["chartevents"]
    shards = max(1, math.ceil(actual / ROWS_PER_SHARD)) if args.shards == "auto" else int(
        args.shards)
    work = cache / f"work_{actual}"
    shutil.rmtree(work, ignore_errors=True)
    log = cache / f"bench_{actual}.log"
    log.unlink(missing_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    result: dict = {"chartevents_rows": actual, "labevents_rows": summary["rows"]["labevents"],
                    "subjects": summary["subjects"], "shards": shards,
                    "load": os.getloadavg()[0]}
    stage_times = {}
    for stage in STAGES:
        stage_times[stage] = measure(medae_cmd(stage, source, work, shards, args.workers), log)
        print(f"  medae {stage}: {stage_times[stage][0]:.1f} s, {stage_times[stage][1]:.0f} MB, "
              f"{stage_times[stage][2]:.1f} CPU s", flush=True)
    result["medae"] = {s: {"wall_s": round(w, 2), "peak_rss_mb": round(m), "cpu_s": round(c, 2)}
                       for s, (w, m, c) in stage_times.items()}
    result["medae_total_s"] = round(sum(w for w, _, _ in stage_times.values()), 2)
    result["medae_cpu_s"] = round(sum(c for _, _, c in stage_times.values()), 2)
    result["medae_peak_rss_mb"] = round(max(m for _, m, _ in stage_times.values()))
    rerun = [measure(medae_cmd(s, source, work, shards, args.workers), log) for s in STAGES]
    result["medae_noop_rerun_s"] = round(sum(w for w, _, _ in rerun), 2)
    result["medae_noop_rerun_cpu_s"] = round(sum(c for _, _, c in rerun), 2)
    print(f"  medae no-change re-run: {result['medae_noop_rerun_s']:.1f} s", flush=True)
    wall, mb, cpu = measure([*me, "--floor", str(source), str(work / "floor")], log)
    result["floor"] = {"wall_s": round(wall, 2), "peak_rss_mb": round(mb), "cpu_s": round(cpu, 2)}
    print(f"  polars floor: {wall:.1f} s, {mb:.0f} MB, {cpu:.1f} CPU s", flush=True)
    if not args.skip_pandas:
        wall, mb, cpu = measure([*me, "--pandas-baseline", str(source), str(work / "pandas")],
                                log)
        result["pandas"] = {"wall_s": round(wall, 2), "peak_rss_mb": round(mb),
                            "cpu_s": round(cpu, 2)}
        print(f"  pandas baseline: {wall:.1f} s, {mb:.0f} MB, {cpu:.1f} CPU s", flush=True)
    result["load_after"] = os.getloadavg()[0]
    return result


def print_table(results: list[dict]) -> None:
    print("\n| chartevents rows | shards | load | medae wall s (ingest/clean/featurize) "
          "| medae CPU s | medae peak MB | no-change re-run s | floor wall s | floor CPU s "
          "| floor MB | pandas wall s | pandas CPU s | pandas MB | pandas/medae wall (CPU) "
          "| medae/floor wall (CPU) |")
    print("|---" * 15 + "|")
    for r in results:
        m, f, p = r["medae"], r["floor"], r.get("pandas")
        stages = "/".join(f"{m[s]['wall_s']:.1f}" for s in STAGES)
        noop = r["medae_noop_rerun_s"] / r["medae_total_s"]
        vs_pandas = (f"{p['wall_s'] / r['medae_total_s']:.1f}x "
                     f"({p['cpu_s'] / r['medae_cpu_s']:.1f}x)" if p else "n/a")
        load = f"{r['load']:.1f}-{r['load_after']:.1f}"
        print(f"| {r['chartevents_rows']:,} | {r['shards']} | {load} "
              f"| {r['medae_total_s']:.1f} ({stages}) | {r['medae_cpu_s']:.1f} "
              f"| {r['medae_peak_rss_mb']} | {r['medae_noop_rerun_s']:.1f} ({noop:.0%}) "
              f"| {f['wall_s']:.1f} | {f['cpu_s']:.1f} | {f['peak_rss_mb']} "
              f"| {p['wall_s'] if p else 'n/a'} | {p['cpu_s'] if p else 'n/a'} "
              f"| {p['peak_rss_mb'] if p else 'n/a'} | {vs_pandas} "
              f"| {r['medae_total_s'] / f['wall_s']:.1f}x ({r['medae_cpu_s'] / f['cpu_s']:.1f}x) |")
    if len(results) >= 2:
        small, large = results[0], results[-1]
        print(f"\npeak RSS {large['chartevents_rows']:,} / {small['chartevents_rows']:,} rows: "
              f"{large['medae_peak_rss_mb'] / small['medae_peak_rss_mb']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append",
                        help="chartevents rows (repeatable) [default: 20000000]")
    parser.add_argument("--cache", default="/tmp/medae-bench")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shards", default="auto", help="shard count or 'auto'")
    parser.add_argument("--workers", type=int, default=None, help="executor workers")
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--floor", nargs=2, metavar=("SRC", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--pandas-baseline", nargs=2, metavar=("SRC", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        return floor(Path(args.floor[0]), Path(args.floor[1]))
    if args.pandas_baseline:
        return pandas_baseline(Path(args.pandas_baseline[0]), Path(args.pandas_baseline[1]))
    results = []
    for rows in args.rows or [20_000_000]:
        print(f"== {rows:,} chartevents rows (load {os.getloadavg()[0]:.1f})", flush=True)
        results.append(bench_point(rows, args))
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    out = Path(args.cache) / "ehr_pipeline_results.json"
    out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nraw results: {out}")


if __name__ == "__main__":
    main()
