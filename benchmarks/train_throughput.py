"""Training throughput: samples/s, peak GPU memory, share of step time spent waiting for data.

Side by side in one process on the same synthetic rows:
- ``medae``: the project's loop (``medae.training.loop.fit``: whole-batch indexing of one
  tensor, pinned memory + non_blocking copies on CUDA, bf16 autocast on CUDA);
- ``baseline``: the textbook ``torch.utils.data.DataLoader(TensorDataset)`` loop, which
  collates every batch sample by sample in Python.

On CUDA the project loop runs twice: ``medae`` (``optim.data_on_device: auto``, the default:
the rows live on the GPU, batches are gathered there) and ``medae-host`` (``never``: batches
gathered on the host, pinned and copied without blocking).

Usage::

    .venv/bin/python benchmarks/train_throughput.py                # EHR-shaped MLP AE
    .venv/bin/python benchmarks/train_throughput.py --model conv1d --width 1250
    .venv/bin/python benchmarks/train_throughput.py --device cuda --rows 200000

Reports medians over epochs after the first (warm-up), then over alternating repeats.
"""

from __future__ import annotations

from medae.allocator import keep_freed_memory

keep_freed_memory()  # as `medae run` does, before numpy, torch, Polars and Arrow start threads

import argparse
import statistics
import time

import numpy as np
import torch

from medae.models.build import build_model
from medae.models.config import ModelChoice, Shape
from medae.training.config import Optim
from medae.training.loop import fit, resolve_device


def synthetic(kind: str, rows: int, width: int, seed: int = 0) -> tuple[np.ndarray, Shape]:
    rng = np.random.default_rng(seed)
    if kind == "conv1d":
        t = np.linspace(0, 20, width)[None]
        x = np.sin(t * rng.uniform(0.5, 2, (rows, 1))) + 0.1 * rng.normal(size=(rows, width))
        return x.astype(np.float32), Shape(input_dim=width, target_dim=width,
                                           input_kind="waveform")
    d = width  # EHR: values (d) | mask (d) | 2 static
    mask = (rng.random((rows, d)) < 0.5).astype(np.float32)
    x = np.concatenate([rng.normal(size=(rows, d)), mask, rng.normal(size=(rows, 2))], axis=1)
    return x.astype(np.float32), Shape(input_dim=2 * d + 2, target_dim=d, mask_offset=d,
                                       bins=24 if d % 24 == 0 else 1)


def run_medae(model, data, optim) -> dict[str, float]:
    if optim.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = fit(model, data[: int(0.9 * len(data))], data[int(0.9 * len(data)):], optim)
    later = result.state.history[1:] or result.state.history
    out = {"samples_per_s": statistics.median(h["samples_per_s"] for h in later),
           "data_wait_share": statistics.median(h["data_wait_share"] for h in later)}
    if optim.device == "cuda":
        out["gpu_peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_baseline(model, data, optim) -> dict[str, float]:
    from torch.utils.data import DataLoader, TensorDataset

    device = optim.device
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=optim.lr)
    loader = DataLoader(TensorDataset(torch.from_numpy(data[: int(0.9 * len(data))])),
                        batch_size=optim.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    speeds, waits = [], []
    for _ in range(optim.epochs):
        t0, waiting, seen = time.perf_counter(), 0.0, 0
        it = iter(loader)
        while True:
            tw = time.perf_counter()
            try:
                (batch,) = next(it)
            except StopIteration:
                break
            batch = batch.to(device)
            waiting += time.perf_counter() - tw
            loss, _ = model.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(batch)
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        speeds.append(seen / elapsed)
        waits.append(waiting / elapsed)
    return {"samples_per_s": statistics.median(speeds[1:] or speeds),
            "data_wait_share": statistics.median(waits[1:] or waits)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp", help="mlp | denoising | vae | conv1d | ...")
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--width", type=int, default=24 * 16,
                    help="EHR: values per window (bins x variables); conv1d: samples")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs of each side")
    args = ap.parse_args()
    from medae.allocator import describe

    print(describe())  # both sides run with the allocator settings of `medae run`
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data, shape = synthetic(args.model, args.rows, args.width)
    config = ModelChoice.validate_python({"kind": args.model})
    optim = Optim(epochs=args.epochs, batch_size=args.batch_size, device=device,
                  patience=args.epochs + 1)
    sides = [("baseline", run_baseline, optim), ("medae", run_medae, optim)]
    if device == "cuda":
        sides.append(("medae-host", run_medae,
                      optim.model_copy(update={"data_on_device": "never"})))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in sides}
    for _ in range(args.repeats):  # alternate, so load changes on a shared box hit both
        for name, runner, side_optim in sides:
            torch.manual_seed(0)
            runs[name].append(runner(build_model(config, shape), data, side_optim))
    results = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
               for name, rs in runs.items()}
    print(f"model={args.model} rows={args.rows} input_dim={shape.input_dim} device={device} "
          f"batch={args.batch_size} threads={torch.get_num_threads()} "
          f"torch={torch.__version__} repeats={args.repeats}")
    print(f"{'':10s} {'samples/s':>12s} {'data wait':>10s} {'GPU peak MiB':>13s}")
    for name, r in results.items():
        mem = f"{r['gpu_peak_mem_mib']:.0f}" if "gpu_peak_mem_mib" in r else "n/a"
        print(f"{name:10s} {r['samples_per_s']:12.0f} {r['data_wait_share']:10.1%} {mem:>13s}")
    for name in runs:
        if name != "baseline":
            ratio = results[name]["samples_per_s"] / results["baseline"]["samples_per_s"]
            print(f"{name} / baseline samples/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
