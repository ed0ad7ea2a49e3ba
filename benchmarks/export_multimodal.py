"""What the multimodal latent table costs next to the EHR one, on the same EHR windows.

Both sides run ``export_modality`` end to end on the same EHR window files (the
``benchmarks/export_latents.py`` generator) with the production model configs of params.yaml
(untrained, eval mode, behind the production ``Encoder``):

- EHR:        ``medae-ehr`` rows ``[values | mask | static]``;
- multimodal: the same windows fused with their paired ``ecg_ii`` window (medae.export.multimodal:
  each EHR window file streamed beside its paired file, encode the wider rows).

The pairs are built first by stage pair_windows' own code (medae.training.pair_windows: read the
eligible waveform windows of each part's stays, pair them by medae.training.pairs, read the
samples of the paired ones), timed on its own: once with nothing cached (a first refresh), then
``--repeats`` times re-pairing every part with the record footers and digests cached.

Waveform windows: one file per stay (a record), ``--waves-per-stay`` 10 s windows at 125 Hz,
6 h apart from 5 min after the stay's first window (the generator's EHR windows start every
6 h, 4 per stay), so 2 per stay fuse half the EHR windows: many tiny files, the worst case for
per-file costs. ``--record-minutes M`` instead gives each stay a contiguous record of M
minutes written in window_waveforms' layout (the real shape: far more windows than pair).
Each export run encodes every part, reusing the digests the previous run cached of the
unchanged inputs unless ``--cold``. Prints the medians of ``--repeats`` runs: rows/s of the
pairing and of both exports, the multimodal model's bare forward pass on the same rows (the
batches export fed it, replayed on torch's default threads and on one thread per core, the
faster counts), and the ratios.

    .venv/bin/python benchmarks/export_multimodal.py [--windows 40000] [--files 8] [--repeats 3]
    .venv/bin/python benchmarks/export_multimodal.py --windows 4000 --record-minutes 30 [--cold]
    .venv/bin/python benchmarks/export_multimodal.py ... --device cuda
"""

from __future__ import annotations

from medae.allocator import keep_freed_memory

keep_freed_memory()  # as `medae run` does, before numpy, torch, Polars and Arrow start threads

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_latents import (  # noqa: E402
    build_encoder,
    export_cache,
    forward_only,
    forward_split,
    make_windows,
    timed_export,
)

FS, SECONDS = 125.0, 10


def make_waves(ehr_folder: Path, folder: Path, per_stay: int, record_minutes: float = 0) -> int:
    """One waveform file per stay (a record) of ecg_ii windows; returns windows written.

    ``record_minutes`` 0: ``per_stay`` windows 6 h apart (one per EHR window's start, the
    worst case for per-file costs: many tiny files). Otherwise a contiguous recording of that
    many minutes of 10 s windows, written like window_waveforms writes records (its schema and
    Parquet options, one row group per 600 s chunk): the real shape, where a stay's record
    holds far more windows than pair with its EHR windows.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medae.waveforms.windows import PARQUET_OPTIONS, WINDOW_SCHEMA

    rng = np.random.default_rng(1)
    stays = (pl.scan_parquet(f"{ehr_folder}/*.parquet")
             .group_by("subject_id", "stay_id").agg(pl.col("window_start").min())
             .sort("stay_id").collect())
    n = int(FS * SECONDS)
    contiguous = record_minutes > 0
    count = int(record_minutes * 60 / SECONDS) if contiguous else per_stay
    chunk = 60 if contiguous else count  # windows per row group (600 s chunks)
    written = 0
    for subject, stay, first in stays.iter_rows():
        start_s = (300 + SECONDS * np.arange(count) if contiguous
                   else 21600.0 * np.arange(count) + 300)
        with pq.ParquetWriter(folder / f"r{stay}.parquet", WINDOW_SCHEMA,
                              **PARQUET_OPTIONS) as writer:
            for lo in range(0, count, chunk):
                s = start_s[lo:lo + chunk]
                k = len(s)
                starts = np.datetime64(first, "us") + (s * 1e6).astype("timedelta64[us]")
                values = rng.normal(size=(k, n)).astype(np.float32)
                zeros = pa.array(np.zeros(k, np.float32))
                writer.write_table(pa.table({
                    "subject_id": pa.array([subject] * k, pa.int64()),
                    "record_name": [f"r{stay}"] * k, "channel": ["ecg_ii"] * k,
                    "window_start": pa.array(starts, pa.timestamp("us")), "start_s": s,
                    "fs": np.full(k, FS), "stay_id": pa.array([stay] * k, pa.int64()),
                    "values": pa.FixedSizeListArray.from_arrays(values.ravel(), n).cast(
                        WINDOW_SCHEMA.field("values").type),
                    "q_nan_frac": zeros, "q_flat_frac": zeros, "q_clip_frac": zeros,
                    "q_range": zeros, "q_beat": zeros}, schema=WINDOW_SCHEMA))
        written += count
    return written


def multimodal_encoder(params, bins: int, variables: int, device: str):
    import torch

    from medae.models.build import build_model
    from medae.training.encode import Encoder, multimodal_shape

    torch.manual_seed(0)
    shape = multimodal_shape(2 * bins * variables + 2, bins * variables, bins,
                             int(FS * SECONDS), params.train_multimodal.channel)
    model = build_model(params.train_multimodal.model, shape).to(device).eval()
    return Encoder(model=model, device=device, batch_size=params.export_latents.batch_rows)


class Recording:
    """The encoder, keeping every batch of rows it is given (for the bare forward timing)."""

    def __init__(self, encoder):
        self.encoder, self.model, self.channel = encoder, encoder.model, encoder.channel
        self.batches: list[np.ndarray] = []

    def encode(self, rows: np.ndarray) -> np.ndarray:
        self.batches.append(rows)
        return self.encoder.encode(rows)


def main() -> None:
    from medae.config import load_params
    from medae.export.latents import Modality
    from medae.export.multimodal import FusedWindows
    from medae.training import pair_windows
    from medae.training.encode import ehr_inputs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=40000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--waves-per-stay", type=int, default=2,
                        help="windows per stay, 6 h apart (many tiny record files)")
    parser.add_argument("--cold", action="store_true",
                        help="hash every window file in each run (default: reuse the digests "
                             "cached by the previous run, as in a re-export)")
    parser.add_argument("--record-minutes", type=float, default=0,
                        help="instead: a contiguous record of this many minutes per stay "
                             "(10 s windows, window_waveforms' file layout)")
    parser.add_argument("--device", default="cpu",
                        help="cpu | cuda | auto (export's own choice: CUDA, then MPS, then CPU)")
    args = parser.parse_args()
    from medae.allocator import describe
    from medae.training.encode import best_device

    print(describe())  # every side runs with the allocator settings of `medae run`
    device = best_device() if args.device == "auto" else args.device
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml", [])
    bins, variables = 24, 14
    batch_rows = params.export_latents.batch_rows
    with tempfile.TemporaryDirectory(prefix="medae-bench-mm-") as tmp:
        root = Path(tmp)
        (root / "ehr").mkdir()
        (root / "waves").mkdir()
        make_windows(root / "ehr", args.windows, args.files, bins, variables,
                     params.featurize_ehr.compression)
        waves = make_waves(root / "ehr", root / "waves", args.waves_per_stay,
                           args.record_minutes)
        cfg = params.train_multimodal

        def pair() -> float:
            """Stage pair_windows on every part (its fingerprints forgotten): seconds."""
            (root / "paired" / pair_windows.FINGERPRINTS).unlink(missing_ok=True)
            t0 = time.perf_counter()
            index = pair_windows.WaveIndex(root / "waves", cfg.channel, cfg.max_nan_frac,
                                           root / "pair_cache")
            pair_windows.pair_all(root / "ehr", index, root / "paired",
                                  root / "wave_only.parquet", cfg.wave_only_per_stay,
                                  params.executor)
            return time.perf_counter() - t0

        first_pairing = pair()
        ehr = Modality("ehr", root / "ehr", "featurize_ehr", ehr_inputs)
        fused = FusedWindows(root / "paired", export_cache(root / "out" / "multimodal"))
        multi = Modality("multimodal", root / "ehr", "train_multimodal", ehr_inputs,
                         extra_fingerprints=fused.fingerprints, encode=fused.encode)
        encoders = {"ehr": build_encoder(params, bins, variables, device),
                    "multimodal": multimodal_encoder(params, bins, variables, device)}
        recording = Recording(encoders["multimodal"])
        timed_export(multi, recording, root / "out" / "multimodal", batch_rows)
        times: dict[str, list[float]] = {"ehr": [], "multimodal": [], "forward": [],
                                         "pairing": []}
        ratios = []
        for r in range(args.repeats):
            times["pairing"].append(pair())
            for modality in (ehr, multi):
                rows, seconds = timed_export(modality, encoders[modality.name],
                                             root / "out" / modality.name, batch_rows,
                                             args.cold)
                times[modality.name].append(seconds)
                print(f"repeat {r}: {modality.name:10s} {rows} rows in {seconds:.2f} s "
                      f"({rows / seconds:,.0f} rows/s)")
            # the bare forward: the faster of torch's default threads and one thread per core
            # on its share of the batches (as benchmarks/export_latents.py)
            forward = min(forward_only(encoders["multimodal"], recording.batches)[1],
                          forward_split(encoders["multimodal"], recording.batches)[1])
            times["forward"].append(forward)
            ratios.append(forward / times["multimodal"][-1])
        fused_rows = pl.scan_parquet(f"{root / 'out' / 'multimodal'}/").select(
            pl.col("has_waveform").sum()).collect().item()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.windows} EHR windows ({fused_rows} fused with one of {waves} ecg_ii windows), "
          f"device {device}")
    print(f"PAIRING (stage pair_windows) first {args.windows / first_pairing:,.0f} rows/s "
          f"(nothing cached), again {args.windows / med['pairing']:,.0f} rows/s (footers and "
          f"digests cached)")
    print(f"SUMMARY median EHR {args.windows / med['ehr']:,.0f} rows/s, multimodal "
          f"{args.windows / med['multimodal']:,.0f} rows/s = {med['ehr'] / med['multimodal']:.2f}x "
          f"the EHR export's rate; bare multimodal forward {args.windows / med['forward']:,.0f} "
          f"rows/s, multimodal export = {statistics.median(ratios):.2f}x of it (median of the "
          f"repeats' ratios; target >= 0.50x)")


if __name__ == "__main__":
    main()
