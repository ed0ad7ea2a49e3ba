"""The multimodal latent table: every EHR window encoded by ``medae-multimodal`` with the
waveform window training pairs with it, or with the waveform slot empty (EHR-only).

One part per EHR window file (``part_0003.parquet`` <- ``ehr_windows/part_0003.parquet``),
one row per EHR window, in input order, keyed like the EHR table plus ``has_waveform`` (a
waveform window was fused). The pairs come from stage ``pair_windows``
(:mod:`medae.training.pair_windows`, the rows training used): export streams each EHR window
file and its paired file side by side, in batches, and checks that they belong together row
for row and that their channel and window length are the model's.

Incremental: a part's fingerprint adds the bytes of its paired file, which changes whenever a
record linked to its stays does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from medae.export import latents
from medae.io import file_digests
from medae.training import encode, paired_files
from medae.training.encode import ehr_inputs

log = logging.getLogger(__name__)


class FusedWindows:
    """The multimodal modality's inputs: EHR window files and their paired files. Plugs
    into :func:`medae.export.latents.export_modality` through ``Modality.extra_fingerprints``
    and ``Modality.encode``."""

    def __init__(self, paired_folder: Path, cache: Path | None = None):
        self.paired_folder = Path(paired_folder)
        self.cache = cache  # folder of the digests kept by file stamp (medae.io.file_digests)

    def fingerprints(self, ehr_files: Sequence[Path]) -> dict[str, str]:
        """Per EHR file: ``+`` and the digest of its paired file."""
        paired = [paired_files.paired_file(self.paired_folder, p) for p in ehr_files]
        digests = file_digests(paired, self.cache / latents.DIGESTS
                               if self.cache is not None else None)
        return {p.name: "+" + d[:16] for p, d in zip(ehr_files, digests, strict=True)}

    def encode(self, path: Path, encoder: latents.Encoder, ref: latents.ModelRef,
               batch_rows: int) -> pl.DataFrame | None:
        """Every EHR window of ``path`` -> its multimodal latents (input row order kept)."""
        model = encoder.load() if isinstance(encoder, latents.LazyEncoder) else encoder
        paired = paired_files.paired_file(self.paired_folder, path)
        width = check_pairing(paired, model)
        ehr = latents.iter_windows(path, batch_rows, latents.READ_COLUMNS["ehr"],
                                   reader_threads=False)
        out = latents.LatentRows("ehr")
        for batch, pair in paired_files.side_by_side(ehr, paired, batch_rows):
            if batch.num_rows == 0:
                continue
            paired_files.check_aligned(batch, pair, f"{paired} (for {path.name})")
            wave_row, waves = paired_files.paired_rows(pair, width, str(paired))
            encode_batch(batch, wave_row, waves, model, out, f"{path}: ")
        return out.frame(ref, where=f"{path}: ")


def check_pairing(paired: Path, model: Any) -> int:
    """The samples per waveform window of a paired file, its channel and window length
    checked against the model's."""
    width = int(model.model.shape.wave_dim)
    paired_files.check_pairing(paired, {"channel": model.channel, "samples": width},
                               "the model has")
    return width


def encode_batch(batch: pa.RecordBatch | pl.DataFrame, wave_row: np.ndarray, waves: np.ndarray,
                 encoder: Any, out: latents.LatentRows, where: str = "") -> None:
    """One batch of EHR windows, each fused with its paired window (``waves[wave_row]``; -1:
    none), encoded into ``out``: keys, ``has_waveform``, latents."""
    rows = encode.assemble_rows(ehr_inputs(batch), np.arange(len(wave_row)), waves, wave_row)
    out.add(batch, encoder.encode(rows), where, has_waveform=wave_row >= 0)


def pointer(params: Any) -> Path:
    """The multimodal champion's pointer file; absent = no multimodal model to export."""
    return params.path(params.train_multimodal.pointer)


def modality(params: Any) -> latents.Modality:
    """The ``multimodal`` modality of :func:`medae.export.latents.modalities`."""
    fused = FusedWindows(params.path(params.pair_windows.out),
                         params.path(params.export_latents.cache))
    return latents.Modality("multimodal", params.path(params.featurize_ehr.out), "train_multimodal",
                            ehr_inputs, extra_fingerprints=fused.fingerprints,
                            encode=fused.encode)
