"""Export throughput vs the bare model forward pass on the same batches (target >= 0.5x).

Both sides use the production EHR model (``train_ehr.model`` from params.yaml, in eval mode,
the same class ``load_encoder`` returns) on the same window files and batches:

- forward: ``Encoder.encode`` on input arrays prepared in advance (the model alone), timed two
  ways, and the FASTER one is the baseline: on torch's default threads (one call at a time),
  and split over one thread per core at one intra-op thread each (the scheme export uses);
- export:  ``export_modality`` end to end: stream Parquet batches, build inputs with
  ``ehr_inputs``, encode, attach keys and lineage, write the parts, manifest, atomic swap.

Model loading from MLflow is a per-run constant (~2-4 s) and is reported by the e2e refresh,
not here. Prints per-repeat figures, the medians and one ``SUMMARY`` line. ``--phases`` also
prints the CPU seconds of each export phase on one thread (where the time goes).

Two diagnostics for a many-core GPU host, where export's threads keep only part of the cores
busy: ``--switch-interval`` sets Python's GIL switch interval (a thread waiting for the GIL
waits up to this long, 5 ms by default, behind one running Python code), and ``--shards N``
also times export split over N processes, each exporting its share of the files with as many
threads as its share of the cores, with no GIL in common (a ``SHARDS`` line: rows/s from the
first start to the last end; process start and model build are not timed, as model loading
is not).

    .venv/bin/python benchmarks/export_latents.py [--windows 40000] [--files 8] [--repeats 5]
    .venv/bin/python benchmarks/export_latents.py --device cuda --shards 4 --switch-interval 0.0005
"""

from __future__ import annotations

from medae.allocator import keep_freed_memory

keep_freed_memory()  # as `medae run` does, before numpy, torch, Polars and Arrow start threads

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl


def make_windows(folder: Path, n_windows: int, n_files: int, bins: int, variables: int,
                 compression: str) -> None:
    """EHR windows in the featurize_ehr layout (values/mask/delta bin-major, static), written
    by featurize_ehr's own writer in ``compression``. Values are random
    normals: they barely compress, the costliest case for the reader (real windows,
    forward-filled and mostly imputed, compress 10-30x)."""
    from medae.ehr.featurize import write_windows

    rng = np.random.default_rng(0)
    width = bins * variables
    per_file = n_windows // n_files
    t0 = dt.datetime(2150, 1, 1)
    for f in range(n_files):
        n = per_file
        values = rng.normal(size=(n, width)).astype(np.float32)
        mask = (rng.random((n, width)) < 0.3).astype(np.float32)
        subject = np.arange(f * per_file, (f + 1) * per_file, dtype=np.int64) // 4
        frame = pl.DataFrame({
            "subject_id": subject, "hadm_id": subject * 10, "stay_id": subject * 100,
            "window_start": [t0 + dt.timedelta(hours=6 * (i % 4)) for i in range(n)],
            "split": ["train"] * n,
            "values": values, "mask": mask, "delta": mask,
            "static": rng.normal(size=(n, 2)).astype(np.float32),
            "label_mortality": np.zeros(n, dtype=np.int8),
        }).with_columns(window_end=pl.col("window_start") + pl.duration(hours=24))
        for col in ("values", "mask", "delta", "static"):
            frame = frame.with_columns(pl.col(col).arr.to_list())
        write_windows(frame, folder / f"part_{f:04d}.parquet", compression)


def build_encoder(params, bins: int, variables: int, device: str):
    import torch

    from medae.models.build import build_model
    from medae.training.encode import Encoder, ehr_shape

    torch.manual_seed(0)
    width = 2 * bins * variables + 2
    model = build_model(params.train_ehr.model, ehr_shape(width, bins * variables, bins))
    model.to(device).eval()
    return Encoder(model=model, device=device, batch_size=params.export_latents.batch_rows)


def model_batches(folder: Path, batch_rows: int) -> list:
    """The model input arrays of every batch export encodes, built once, beforehand."""
    from medae.export.latents import iter_windows
    from medae.training.encode import ehr_inputs

    return [ehr_inputs(b) for p in sorted(folder.glob("*.parquet"))
            for b in iter_windows(p, batch_rows)]


def forward_only(encoder, batches: list) -> tuple[int, float]:
    """The model alone on torch's default threads: only ``encode`` is timed."""
    t0 = time.perf_counter()
    rows = sum(len(encoder.encode(b)) for b in batches)
    return rows, time.perf_counter() - t0


def forward_split(encoder, batches: list) -> tuple[int, float]:
    """The model alone, the batches shared among one thread per core (one intra-op each)."""
    from medae.export.latents import _limit_intra_op_threads, plan_workers

    workers, threads = plan_workers(len(batches))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers, initializer=_limit_intra_op_threads,
                            initargs=(threads,)) as pool:
        rows = sum(len(z) for z in pool.map(encoder.encode, batches))
    return rows, time.perf_counter() - t0


def cpu_phases(encoder, folder: Path, batch_rows: int) -> dict[str, float]:
    """CPU seconds of each export phase, all on this one thread (torch on one thread too)."""
    import torch

    from medae.export.latents import READ_COLUMNS, LatentRows, ModelRef, iter_windows
    from medae.io import file_digest
    from medae.training.encode import ehr_inputs

    ref = ModelRef("medae-ehr", 1, "bench", "models:/medae-ehr@champion")
    spent = dict.fromkeys(("digest", "read", "inputs", "forward", "table", "write"), 0.0)
    clock = time.thread_time
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for path in sorted(folder.glob("*.parquet")):
            t0 = clock()
            file_digest(path)  # the input fingerprint export takes of every file first
            spent["digest"] += clock() - t0
            rows, batches = LatentRows("ehr"), iter_windows(path, batch_rows, READ_COLUMNS["ehr"],
                                                            reader_threads=False)
            while True:
                t0 = clock()
                batch = next(batches, None)
                t1 = clock()
                spent["read"] += t1 - t0
                if batch is None:
                    break
                inputs = ehr_inputs(batch)
                t2 = clock()
                z = encoder.encode(inputs)
                t3 = clock()
                rows.add(batch, z)
                spent["inputs"] += t2 - t1
                spent["forward"] += t3 - t2
                spent["table"] += clock() - t3
            t0 = clock()
            table = rows.frame(ref)  # the file's latent table, built once (encode_file)
            t1 = clock()
            table.to_arrow()  # the conversion the writer pays before encoding
            spent["table"] += t1 - t0
            spent["write"] += clock() - t1
    finally:
        torch.set_num_threads(threads)
    return spent


def export_cache(out: Path) -> Path:
    """Where export keeps what it read of its inputs (``export_latents.cache``)."""
    return out.parent.parent / "export_cache"


def timed_export(modality, encoder, out: Path, batch_rows: int,
                 cold: bool = False) -> tuple[int, float]:
    """``export_modality`` end to end into an emptied ``out``: (rows, seconds).

    Every part is encoded, as after a new champion. What the previous run cached of the
    unchanged input files (their digests) is kept, unless ``cold``.
    """
    from medae.export.latents import ModelRef, export_modality

    shutil.rmtree(out.parent, ignore_errors=True)
    if cold:
        shutil.rmtree(export_cache(out), ignore_errors=True)
    ref = ModelRef(f"medae-{modality.name}", 1, "bench",
                   f"models:/medae-{modality.name}@champion")
    t0 = time.perf_counter()
    manifest = export_modality(modality, encoder, ref, out, params_hash="bench",
                               batch_rows=batch_rows, cache=export_cache(out))
    return manifest["rows"], time.perf_counter() - t0


def export_only(encoder, folder: Path, out: Path, batch_rows: int,
                cold: bool = False) -> tuple[int, float]:
    from medae.export.latents import Modality
    from medae.training.encode import ehr_inputs

    return timed_export(Modality("ehr", folder, "featurize_ehr", ehr_inputs), encoder, out,
                        batch_rows, cold)


def shard_worker(shard: Path, out: Path, device: str, bins: int, variables: int,
                 batch_rows: int, threads: int, repeats: int, switch: float | None,
                 barrier, results) -> None:
    """One shard's process: build the same model, warm up, then export its files once per
    repeat, each start released by ``barrier``; reports (repeat, rows, start, end)."""
    import torch

    from medae.config import load_params

    if switch:
        sys.setswitchinterval(switch)
    torch.set_num_threads(threads)  # export's workers: as many threads as this shard's cores
    encoder = build_encoder(load_params(), bins, variables, device)  # as the parent's
    export_only(encoder, shard, out, batch_rows)
    for r in range(repeats):
        # deleted here, before the barrier, so the deletion stays out of the timed span
        # (export_only's own rmtree then finds nothing to delete)
        shutil.rmtree(out.parent, ignore_errors=True)
        barrier.wait(timeout=600)
        t0 = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
        rows, _ = export_only(encoder, shard, out, batch_rows)
        results.put((r, rows, t0, time.perf_counter()))


def sharded_exports(folder: Path, work: Path, shards: int, device: str, bins: int,
                    variables: int, batch_rows: int, repeats: int,
                    switch: float | None) -> tuple[int, list[float]]:
    """(processes, export rows/s per repeat) with the files split over ``shards`` processes,
    each with its own output and digest cache."""
    import multiprocessing as mp
    import queue

    import torch

    files = sorted(folder.glob("*.parquet"))
    shards = max(1, min(shards, len(files)))
    ctx = mp.get_context("spawn")  # no CUDA or thread state inherited
    barrier, results = ctx.Barrier(shards), ctx.Queue()
    threads = max(1, torch.get_num_threads() // shards)
    procs = []
    for k in range(shards):
        shard = work / "shards" / str(k)
        (shard / "windows").mkdir(parents=True)
        for f in files[k::shards]:
            os.link(f, shard / "windows" / f.name)
        procs.append(ctx.Process(target=shard_worker, daemon=True, args=(
            shard / "windows", shard / "latents" / "ehr", device, bins, variables, batch_rows,
            threads, repeats, switch, barrier, results)))
    got = []
    try:
        for proc in procs:
            proc.start()
        while len(got) < shards * repeats:
            try:
                got.append(results.get(timeout=5))
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise SystemExit(f"a shard process failed (exit {dead[0]})") from None
    finally:
        barrier.abort()  # a shard still waiting at the barrier stops waiting
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    rates = []
    for r in range(repeats):
        mine = [g for g in got if g[0] == r]
        rates.append(sum(g[1] for g in mine) / (max(g[3] for g in mine)
                                                 - min(g[2] for g in mine)))
    return shards, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=40_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--bins", type=int, default=24)
    parser.add_argument("--variables", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compression", default=None,
                        help="codec of the generated window files (default: what featurize_ehr "
                             "writes, featurize_ehr.compression in params.yaml)")
    parser.add_argument("--device", default="auto",
                        help="cpu | cuda | auto (export's own choice: CUDA, then MPS, then CPU)")
    parser.add_argument("--cold", action="store_true",
                        help="hash every window file in each run (a first export); default: "
                             "the digests cached by the previous run are reused, as in a "
                             "re-export after a new champion")
    parser.add_argument("--phases", action="store_true",
                        help="also print the CPU seconds of each export phase on one thread")
    parser.add_argument("--shards", type=int, default=0,
                        help="also time export split over this many processes, the files and "
                             "cores shared out (SHARDS line; a diagnostic, not what export does)")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="Python's GIL switch interval in seconds for every timed path "
                             "(default: Python's 0.005)")
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)

    import torch

    from medae.allocator import describe
    from medae.config import load_params
    from medae.training.encode import best_device

    print(describe())  # both sides run with the allocator settings of `medae run`
    params = load_params()
    device = best_device() if args.device == "auto" else args.device
    batch_rows = params.export_latents.batch_rows
    compression = args.compression or params.featurize_ehr.compression
    work = Path(tempfile.mkdtemp(prefix="medae-bench-export-"))
    try:
        (work / "windows").mkdir()
        make_windows(work / "windows", args.windows, args.files, args.bins, args.variables,
                     compression)
        encoder = build_encoder(params, args.bins, args.variables, device)
        batches = model_batches(work / "windows", batch_rows)
        print(f"load: {os.getloadavg()[0]:.1f} (1 min), torch threads {torch.get_num_threads()}"
              f", {args.windows} windows x {2 * args.bins * args.variables + 2} inputs in "
              f"{args.files} {compression} files, model {params.train_ehr.model.kind}, "
              f"batch {batch_rows}, device {device}, "
              f"{'cold (every file hashed)' if args.cold else 'digests cached'}, GIL switch "
              f"interval {sys.getswitchinterval() * 1e3:g} ms")
        # warm-up: allocator, kernels, and lazy imports every path pays once per process
        forward_only(encoder, batches)
        forward_split(encoder, batches)
        export_only(encoder, work / "windows", work / "latents" / "ehr", batch_rows)
        rates: dict[str, list[float]] = {"forward": [], "split": [], "export": []}
        ratios, cpu_split, cpu_export, sys_export = [], [], [], []
        for r in range(args.repeats):
            n_f, s_f = forward_only(encoder, batches)
            c0 = time.process_time()
            n_s, s_s = forward_split(encoder, batches)
            c1, k1 = time.process_time(), os.times().system
            n_e, s_e = export_only(encoder, work / "windows", work / "latents" / "ehr",
                                   batch_rows, args.cold)
            cpu_split.append(c1 - c0)
            cpu_export.append(time.process_time() - c1)
            sys_export.append(os.times().system - k1)  # kernel: page faults, file reads
            assert n_f == n_s == n_e == args.windows // args.files * args.files
            for name, rate in (("forward", n_f / s_f), ("split", n_s / s_s),
                               ("export", n_e / s_e)):
                rates[name].append(rate)
            ratios.append(rates["export"][-1] / max(rates["forward"][-1], rates["split"][-1]))
            print(f"repeat {r + 1}: " + "   ".join(
                f"{name} {v[-1]:>9,.0f} rows/s" for name, v in rates.items())
                + f"   ratio {ratios[-1]:.2f}x   load {os.getloadavg()[0]:.1f}")
        med = {name: statistics.median(v) for name, v in rates.items()}
        ratio = statistics.median(ratios)
        print("median:   " + "   ".join(f"{name} {v:>9,.0f} rows/s" for name, v in med.items()))
        default = statistics.median(e / f for e, f in zip(rates["export"], rates["forward"],
                                                          strict=True))
        print(f"SUMMARY export {med['export']:,.0f} rows/s = {ratio:.2f}x the bare forward pass "
              f"(the faster of default threads / split, median of {args.repeats}; target >= "
              f"0.50x: {'PASS' if ratio >= 0.5 else 'FAIL'}); {default:.2f}x the default-threads "
              f"forward alone; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
              f"device {device}")
        # CPU seconds (all threads; neither path has spinning OpenMP barriers): the ratio both
        # tend to on an idle machine when each keeps every core busy, whatever the load now
        print(f"CPU s per run: split forward {statistics.median(cpu_split):.2f}, export "
              f"{statistics.median(cpu_export):.2f} (kernel {statistics.median(sys_export):.2f})"
              f" -> CPU ratio "
              f"{statistics.median(cpu_split) / statistics.median(cpu_export):.2f}x")
        if args.shards:
            shards, shard_rates = sharded_exports(work / "windows", work, args.shards, device,
                                                  args.bins, args.variables, batch_rows,
                                                  args.repeats, args.switch_interval)
            best = max(med["forward"], med["split"])
            print(f"SHARDS export in {shards} processes: "
                  + ", ".join(f"{v:,.0f}" for v in shard_rates)
                  + f" rows/s; median {statistics.median(shard_rates):,.0f} = "
                  f"{statistics.median(shard_rates) / best:.2f}x the median bare forward "
                  f"({best:,.0f} rows/s), {statistics.median(shard_rates) / med['export']:.2f}x "
                  f"export in one process")
        if args.phases:
            spent = cpu_phases(encoder, work / "windows", batch_rows)
            total = sum(spent.values())
            print("CPU s per phase on one thread: " + ", ".join(
                f"{k} {v:.2f} ({v / total:.0%})" for k, v in spent.items()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
