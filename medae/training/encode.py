"""Model inputs from the windows tables, and loading a logged model as an encoder.

The same two functions turn windows into input rows for training, evaluation and export, so
the three can never disagree about the layout:

- EHR row: ``[values (T*V) | mask (T*V) | static]`` (``delta`` is not used: hiding an entry
  for the imputation evaluation would require recomputing it);
- waveform row: the window's samples (one channel, fixed length; NaN kept, the model treats
  non-finite samples as unobserved);
- multimodal row: ``[EHR row | waveform row | has_ehr | has_waveform]``, zeros and flag 0 where a
  modality is missing (which windows go together: :mod:`medae.training.pairs`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from medae.errors import DataError
from medae.models.config import Shape

log = logging.getLogger(__name__)

EHR_PARTS = ("values", "mask", "static")


Frame = pl.DataFrame | pa.RecordBatch | pa.Table  # windows: a Polars frame or Arrow batches


def _require(frame: Frame, columns: Sequence[str], what: str) -> None:
    names = frame.columns if isinstance(frame, pl.DataFrame) else frame.schema.names
    for column in columns:
        if column not in names:
            raise DataError(f"{what}: missing column '{column}'")


def one_array(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """An Arrow column as one array (a single chunk as it is, without a copy)."""
    if isinstance(array, pa.ChunkedArray):
        return array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    return array


def arrow_column(frame: Frame, column: str, what: str = "windows table") -> pa.Array:
    """One column of ``frame`` as a single Arrow array (Polars hands its buffers over)."""
    _require(frame, [column], what)
    return one_array(frame[column].to_arrow() if isinstance(frame, pl.DataFrame)
                     else frame[column])


def arrow_columns(frame: Frame, columns: Sequence[str], what: str = "windows table"
                  ) -> pa.Table:
    """These columns of ``frame`` as an Arrow table (an Arrow input's without a copy); a
    missing one is named.

    >>> arrow_columns(pa.record_batch({"a": [1], "b": [2.0]}), ["b"]).column_names
    ['b']
    """
    _require(frame, columns, what)
    if isinstance(frame, pl.DataFrame):
        return frame.select(columns).to_arrow()
    if isinstance(frame, pa.RecordBatch):
        return pa.Table.from_batches([frame.select(list(columns))])
    return frame.select(list(columns))


def list_values(frame: Frame, column: str, what: str = "windows table") -> np.ndarray:
    """A list column of equal-length float lists as a read-only (rows, length) view of its
    Arrow values where they are float32 and null-free, else a float32 copy (null -> NaN).

    Read straight from the Arrow buffers: no Polars list conversion (which runs on Polars'
    thread pool and costs export about 0.06 CPU-s per 40,000 EHR windows) and no copy.

    >>> list_values(pl.DataFrame({"v": [[1.0, 2.0], [3.0, None]]}), "v").tolist()
    [[1.0, 2.0], [3.0, nan]]
    """
    array = arrow_column(frame, column, what)
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        raise DataError(f"{what}: column '{column}' is {array.type}, not a list of numbers")
    if len(array) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    offsets = array.offsets.to_numpy()
    lengths = np.diff(offsets)
    if array.null_count or lengths.min() != lengths.max():
        bad = int(np.flatnonzero(~array.is_valid().to_numpy(zero_copy_only=False)
                                 | (lengths != lengths.max()))[0])
        raise DataError(f"{what}: column '{column}' row {bad}: list length differs from the "
                        f"others ({lengths.max()} expected); one channel per batch")
    values = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    flat = values.to_numpy(zero_copy_only=False)
    return flat.astype(np.float32, copy=False).reshape(len(array), int(lengths.max()))


def list_column(frame: Frame, column: str, what: str = "windows table") -> np.ndarray:
    """A list column of equal-length float lists as a 2-D float32 array of its own.

    >>> list_column(pl.DataFrame({"v": [[1.0, 2.0], [3.0, 4.0]]}), "v").tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    return np.array(list_values(frame, column, what), dtype=np.float32)


def ehr_inputs(frame: Frame) -> np.ndarray:
    """EHR windows (a Polars frame or Arrow batch) -> float32 rows ``[values | mask | static]``.

    >>> df = pl.DataFrame({"values": [[0.5, -1.0]], "mask": [[1.0, 0.0]], "static": [[0.1, 1.0]]})
    >>> ehr_inputs(df).tolist()
    [[0.5, -1.0, 1.0, 0.0, 0.10000000149011612, 1.0]]
    """
    parts = [list_values(frame, c, "EHR windows") for c in EHR_PARTS]
    if parts[0].shape != parts[1].shape:
        raise DataError("EHR windows: 'values' and 'mask' have different lengths")
    if len(parts[0]) == 0:
        return np.zeros((0, 0), np.float32)
    out = np.empty((len(parts[0]), sum(p.shape[1] for p in parts)), np.float32)
    at = 0
    for part in parts:  # one copy, from the Arrow buffers into the rows
        out[:, at:at + part.shape[1]] = part
        at += part.shape[1]
    return out


def ehr_shape(width: int, n_values: int, n_bins: int) -> Shape:
    """The model :class:`Shape` of EHR rows of ``width`` with ``n_values`` = T*V entries.

    >>> ehr_shape(6, 2, 1).mask_offset
    2
    """
    return Shape(input_dim=width, target_dim=n_values, mask_offset=n_values, bins=n_bins,
                 input_kind="ehr")


def waveform_inputs(df: Frame) -> np.ndarray:
    """Waveform windows (or beats) of one channel -> float32 rows of samples.

    A model is trained on one channel (``Encoder.channel``): select its rows first, since
    channels differ in length and meaning.

    >>> waveform_inputs(pl.DataFrame({"values": [[0.1, 0.2, None]]})).shape
    (1, 3)
    """
    return list_column(df, "values", "waveform windows")


def waveform_shape(width: int, channel: str | None = None) -> Shape:
    return Shape(input_dim=width, target_dim=width, input_kind="waveform", channel=channel)


def multimodal_inputs(ehr: np.ndarray, wave: np.ndarray, has_ehr: np.ndarray,
                      has_wave: np.ndarray) -> np.ndarray:
    """Rows ``[ehr | wave | has_ehr | has_wave]``; a missing modality's part becomes zeros.

    ``ehr`` and ``wave`` hold one row per output row (anything where the flag is 0).

    >>> multimodal_inputs(np.array([[1.0], [2.0]]), np.array([[5.0, 6.0], [np.nan, 0.0]]),
    ...                   np.array([True, True]), np.array([True, False])).tolist()
    [[1.0, 5.0, 6.0, 1.0, 1.0], [2.0, 0.0, 0.0, 1.0, 0.0]]
    """
    rows = np.arange(len(has_ehr))
    return assemble_rows(ehr, np.where(has_ehr, rows, -1), wave, np.where(has_wave, rows, -1))


def assemble_rows(ehr: np.ndarray, ehr_row: np.ndarray, wave: np.ndarray,
                  wave_row: np.ndarray) -> np.ndarray:
    """Rows ``[ehr[ehr_row] | wave[wave_row] | has_ehr | has_wave]`` written straight into
    one float32 array (no intermediate copies of the rows); row number -1 = that modality is
    missing, its part zeros and its flag 0.

    >>> assemble_rows(np.array([[1.0], [2.0]]), np.array([1, -1]), np.array([[5.0, 6.0]]),
    ...               np.array([-1, 0])).tolist()
    [[2.0, 0.0, 0.0, 1.0, 0.0], [0.0, 5.0, 6.0, 0.0, 1.0]]
    """
    n, e_width, w_width = len(ehr_row), ehr.shape[1], wave.shape[1]
    # empty, not zeros: every entry is written once below. Memory a process keeps for reuse
    # (medae.allocator) is not zero pages, so zeros would cost a pass over all the rows.
    out = np.empty((n, e_width + w_width + 2), np.float32)
    has_e, has_w = ehr_row >= 0, wave_row >= 0
    ehr_part, wave_part = out[:, :e_width], out[:, e_width:e_width + w_width]
    if has_e.all() and len(ehr) == n and (ehr_row == np.arange(n)).all():
        ehr_part[:] = ehr  # every row's own EHR window (export): no gather
    else:
        ehr_part[has_e] = ehr[ehr_row[has_e]]
        ehr_part[~has_e] = 0.0
    wave_part[has_w] = wave[wave_row[has_w]]
    wave_part[~has_w] = 0.0
    out[:, -2], out[:, -1] = has_e, has_w
    return out


def multimodal_shape(ehr_width: int, n_values: int, n_bins: int, wave_width: int,
                     channel: str) -> Shape:
    """The :class:`Shape` of :func:`multimodal_inputs` rows (EHR target and mask first).

    >>> multimodal_shape(6, 2, 1, 5, "ecg_ii").input_dim
    13
    """
    return Shape(input_dim=ehr_width + wave_width + 2, target_dim=n_values,
                 mask_offset=n_values, bins=n_bins, input_kind="multimodal",
                 wave_dim=wave_width, channel=channel)


def best_device() -> str:
    """CUDA, then Apple MPS, then CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@dataclass
class Encoder:
    """A trained autoencoder used for its code only: ``encode(rows) -> latents``."""

    model: Any
    device: str
    batch_size: int = 4096

    @property
    def input_kind(self) -> str:
        return self.model.input_kind

    @property
    def channel(self) -> str | None:
        """The waveform channel the model was trained on (None for EHR models; the fused
        channel for multimodal ones)."""
        return self.model.shape.channel

    @property
    def latent_dim(self) -> int:
        return int(self.model.config.latent_dim)

    def encode(self, batch: np.ndarray) -> np.ndarray:
        """float32 rows -> float32 latents (deterministic; a VAE gives its mean)."""
        import torch

        rows = np.asarray(batch, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.model.shape.input_dim:
            raise DataError(f"encode: expected rows of width {self.model.shape.input_dim}, "
                            f"got shape {rows.shape}")
        out = np.empty((rows.shape[0], self.latent_dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, rows.shape[0], self.batch_size):
                x = torch.from_numpy(rows[start : start + self.batch_size]).to(self.device)
                z = self.model.encode(x).float().cpu().numpy()
                out[start : start + len(z)] = z
        return out


def load_encoder(model_uri: str, device: str | None = None) -> Encoder:
    """Load a logged medae model (``models:/medae-ehr@champion``, ``runs:/...``) as an Encoder."""
    import mlflow.pytorch

    device = device or best_device()
    model = mlflow.pytorch.load_model(model_uri, map_location=device)
    model.eval()
    log.info("loaded %s (%s, latent %d) on %s", model_uri, type(model).__name__,
             model.config.latent_dim, device)
    return Encoder(model=model, device=device)
