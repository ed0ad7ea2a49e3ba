"""Export throughput vs the bare model forward pass on the same batches (target >= 0.5x).

Both sides use the production EHR model (``train_ehr.model`` from params.yaml, the same class
``load_encoder`` returns) on the same window files:

- forward: ``Encoder.encode`` on input arrays prepared in advance (the model alone);
- export:  ``export_modality`` end to end: stream Parquet batches, build inputs with
  ``ehr_inputs``, encode, attach keys and lineage, write the parts, manifest, atomic swap.

Model loading from MLflow is a per-run constant (~2-4 s) and is reported by the e2e refresh,
not here. Prints per-repeat figures and the medians.

    .venv/bin/python benchmarks/export_latents.py [--windows 40000] [--files 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def make_windows(folder: Path, n_windows: int, n_files: int, bins: int, variables: int) -> None:
    """EHR windows in the featurize_ehr layout (values/mask/delta bin-major, static)."""
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
        frame.write_parquet(folder / f"part_{f:04d}.parquet")


def build_encoder(params, bins: int, variables: int):
    import torch

    from medae.models.build import build_model
    from medae.training.encode import Encoder, ehr_shape

    torch.manual_seed(0)
    width = 2 * bins * variables + 2
    model = build_model(params.train_ehr.model, ehr_shape(width, bins * variables, bins))
    model.eval()
    return Encoder(model=model, device="cpu", batch_size=params.export_latents.batch_rows)


def forward_only(encoder, folder: Path, batch_rows: int) -> tuple[int, float]:
    """Rows/s of the model alone: inputs built beforehand, then only ``encode`` is timed."""
    from medae.export.latents import iter_windows
    from medae.training.encode import ehr_inputs

    batches = [ehr_inputs(b) for p in sorted(folder.glob("*.parquet"))
               for b in iter_windows(p, batch_rows)]
    t0 = time.perf_counter()
    rows = sum(len(encoder.encode(b)) for b in batches)
    return rows, time.perf_counter() - t0


def export_only(encoder, folder: Path, out: Path, batch_rows: int) -> tuple[int, float]:
    from medae.export.latents import Modality, ModelRef, export_modality
    from medae.training.encode import ehr_inputs

    shutil.rmtree(out.parent, ignore_errors=True)
    modality = Modality("ehr", folder, "featurize_ehr", ehr_inputs)
    ref = ModelRef("medae-ehr", 1, "bench", "models:/medae-ehr@champion")
    t0 = time.perf_counter()
    manifest = export_modality(modality, encoder, ref, out, params_hash="bench",
                               batch_rows=batch_rows)
    return manifest["rows"], time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=40_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--bins", type=int, default=24)
    parser.add_argument("--variables", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from medae.config import load_params

    params = load_params()
    batch_rows = params.export_latents.batch_rows
    work = Path(tempfile.mkdtemp(prefix="medae-bench-export-"))
    try:
        (work / "windows").mkdir()
        make_windows(work / "windows", args.windows, args.files, args.bins, args.variables)
        encoder = build_encoder(params, args.bins, args.variables)
        print(f"load: {os.getloadavg()[0]:.1f} (1 min), torch threads {torch.get_num_threads()}"
              f", {args.windows} windows x {2 * args.bins * args.variables + 2} inputs, "
              f"model {params.train_ehr.model.kind}, batch {batch_rows}")
        # warm-up: allocator, kernels, and lazy imports both paths pay once per process
        forward_only(encoder, work / "windows", batch_rows)
        export_only(encoder, work / "windows", work / "latents" / "ehr", batch_rows)
        ratios, fwd_rates, exp_rates = [], [], []
        for r in range(args.repeats):
            n_f, s_f = forward_only(encoder, work / "windows", batch_rows)
            n_e, s_e = export_only(encoder, work / "windows", work / "latents" / "ehr",
                                   batch_rows)
            assert n_f == n_e == args.windows // args.files * args.files
            fwd_rates.append(n_f / s_f)
            exp_rates.append(n_e / s_e)
            ratios.append(exp_rates[-1] / fwd_rates[-1])
            print(f"repeat {r + 1}: forward {fwd_rates[-1]:>10,.0f} rows/s   "
                  f"export {exp_rates[-1]:>10,.0f} rows/s   ratio {ratios[-1]:.2f}x")
        print(f"median:   forward {statistics.median(fwd_rates):>10,.0f} rows/s   "
              f"export {statistics.median(exp_rates):>10,.0f} rows/s   "
              f"ratio {statistics.median(ratios):.2f}x (target >= 0.50x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
