"""Which EHR window goes with which waveform window: the rows of the multimodal model.

The rule is deterministic and uses the keys only (docs/models.md):

- an EHR window of stay S spanning ``[window_start, window_end)`` is paired with the **first**
  window of the configured channel linked to S (``stay_id``) that starts at or after
  ``window_start`` and ends by ``window_end`` (end = start + samples / fs; ties in start time go
  to the smallest ``record_name``, then ``start_s``). One waveform window, not a mean: windows
  are z-scored per window and not phase-aligned, so a mean would blur the beats away;
- an EHR window with no such waveform window is an EHR-only row;
- waveform windows linked to a stay that has no EHR window at all are wave-only rows, at most
  ``per_stay`` of them per stay, evenly spaced in time; waveform windows not linked to a stay
  (no ``stay_id`` or no ``window_start``) are not used.

Row numbers (``ehr_row``, ``wave_row``) index the EHR windows table and the linked waveform
windows table as given; :func:`gather_rows` turns them into model input rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from medae.training.encode import assemble_rows

ROW = pl.Int64  # row numbers; null = the modality is missing in that row


def usable(channel: str, max_nan_frac: float) -> pl.Expr:
    """The waveform windows a model may use: its ``channel``, at most ``max_nan_frac`` missing.

    >>> w = pl.DataFrame({"channel": ["ecg_ii", "ecg_ii", "ppg"], "q_nan_frac": [0.0, 0.5, None]})
    >>> w.filter(usable("ecg_ii", 0.1)).height
    1
    """
    return (pl.col("channel") == channel) & (pl.col("q_nan_frac").fill_null(0.0) <= max_nan_frac)


def linked(wave: pl.DataFrame | pl.LazyFrame):
    """Waveform windows that can be placed in a stay's time: ``stay_id`` and time both known."""
    return wave.filter(pl.col("stay_id").is_not_null() & pl.col("window_start").is_not_null())


def wave_spans(wave: pl.DataFrame, samples: int | None = None) -> pl.DataFrame:
    """Keys of linked waveform windows: ``wave_row`` (row in ``wave``), start and end time
    (start + samples / ``fs``).

    ``samples``: every window's sample count when ``wave`` holds only the keys (the samples
    of the paired windows are read afterwards, :mod:`medae.training.wave_reader`); default
    each window's own ``values`` length.

    >>> import datetime as dt
    >>> w = pl.DataFrame({"subject_id": [1], "stay_id": [7], "record_name": ["r"],
    ...                   "window_start": [dt.datetime(2150, 1, 1)], "start_s": [0.0],
    ...                   "fs": [2.0], "values": [[0.0] * 20]})
    >>> wave_spans(w)["wave_end"].to_list()
    [datetime.datetime(2150, 1, 1, 0, 0, 10)]
    """
    count = pl.col("values").list.len() if samples is None else pl.lit(samples)
    micros = (count / pl.col("fs") * 1e6).round().cast(pl.Int64)
    return linked(wave.with_row_index("wave_row").with_columns(pl.col("wave_row").cast(ROW))
                  ).select("subject_id", "stay_id", "record_name", "start_s", "wave_row",
                           wave_start=pl.col("window_start"),
                           wave_end=pl.col("window_start") + pl.duration(microseconds=micros))


def pair_ehr_windows(ehr: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """One row per EHR window, in ``ehr`` order: ``ehr_row`` and its ``wave_row`` (or null).

    >>> import datetime as dt
    >>> t = lambda h: dt.datetime(2150, 1, 1, h)
    >>> ehr = pl.DataFrame({"stay_id": [7, 7, 8], "window_start": [t(0), t(6), t(0)],
    ...                     "window_end": [t(6), t(12), t(6)]})
    >>> spans = pl.DataFrame({"stay_id": [7, 7], "record_name": ["r", "r"],
    ...                       "start_s": [0.0, 10.0], "wave_row": [0, 1],
    ...                       "wave_start": [t(1), t(11)], "wave_end": [t(2), t(13)]})
    >>> pair_ehr_windows(ehr, spans)["wave_row"].to_list()   # t(11)-t(13) ends too late
    [0, None, None]
    """
    first = (spans.sort("stay_id", "wave_start", "record_name", "start_s")
             .unique(["stay_id", "wave_start"], keep="first", maintain_order=True)
             .select("stay_id", "wave_start", "wave_end", pl.col("wave_row").cast(ROW))
             .sort("wave_start"))
    keys = (ehr.select("stay_id", "window_start", "window_end").with_row_index("ehr_row")
            .with_columns(pl.col("ehr_row").cast(ROW)).sort("window_start"))
    # Both sides are sorted by time above; Polars cannot verify that per `by` group itself.
    joined = keys.join_asof(first, left_on="window_start", right_on="wave_start", by="stay_id",
                            strategy="forward", check_sortedness=False)
    inside = pl.col("wave_end") <= pl.col("window_end")
    return joined.sort("ehr_row").select(
        "ehr_row", wave_row=pl.when(inside).then(pl.col("wave_row")))


def wave_only_windows(ehr: pl.DataFrame, spans: pl.DataFrame, per_stay: int) -> pl.DataFrame:
    """Waveform windows of stays with no EHR window, at most ``per_stay`` per stay.

    >>> import datetime as dt
    >>> spans = pl.DataFrame({"subject_id": [1] * 5, "stay_id": [9] * 5, "record_name": ["r"] * 5,
    ...                       "start_s": [0.0, 10, 20, 30, 40], "wave_row": [0, 1, 2, 3, 4],
    ...                       "wave_start": [dt.datetime(2150, 1, 1, 0, 0, s) for s in range(5)]})
    >>> wave_only_windows(pl.DataFrame({"stay_id": [7]}), spans, 2)["wave_row"].to_list()
    [0, 3]
    """
    columns = ("subject_id", "stay_id", "record_name", "wave_row")
    if per_stay == 0:
        return spans.select(columns).clear()
    rank, count = pl.int_range(pl.len()).over("stay_id"), pl.len().over("stay_id")
    step = (count + per_stay - 1) // per_stay  # evenly spaced: every step-th window
    return (spans.join(ehr.select("stay_id").unique(), on="stay_id", how="anti")
            .sort("stay_id", "wave_start", "record_name", "start_s")
            .filter(rank % step == 0).select(columns)
            .with_columns(pl.col("wave_row").cast(ROW)))


def pairing_counts(rows: pl.DataFrame) -> dict[str, int]:
    """How many rows hold both modalities, EHR only, or waveform only.

    >>> pairing_counts(pl.DataFrame({"ehr_row": [0, 1, None], "wave_row": [5, None, 6]}))
    {'rows_both': 1, 'rows_ehr_only': 1, 'rows_wave_only': 1}
    """
    has_ehr, has_wave = pl.col("ehr_row").is_not_null(), pl.col("wave_row").is_not_null()
    counts = rows.select(rows_both=(has_ehr & has_wave).sum(),
                         rows_ehr_only=(has_ehr & ~has_wave).sum(),
                         rows_wave_only=(~has_ehr & has_wave).sum())
    return {k: int(v) for k, v in counts.row(0, named=True).items()}


def keep_used_waves(rows: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """Renumber ``wave_row`` to count only the waveform windows some row uses, and return the
    used original row numbers (most windows of a long recording pair with nothing, so the
    model rows are built without a float32 copy of every linked window).

    >>> rows, used = keep_used_waves(pl.DataFrame({"ehr_row": [0, 1], "wave_row": [7, None]}))
    >>> rows["wave_row"].to_list(), used.tolist()
    ([0, None], [7])
    """
    used = rows["wave_row"].drop_nulls().unique().sort()
    number = pl.DataFrame({"wave_row": used, "new": pl.int_range(len(used), eager=True,
                                                                 dtype=ROW)})
    renumbered = rows.join(number, on="wave_row", how="left", maintain_order="left")
    return renumbered.with_columns(wave_row=pl.col("new")).drop("new"), used.to_numpy()


def gather_rows(rows: pl.DataFrame, ehr: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """Model input rows for ``rows`` (``ehr_row``, ``wave_row``) from the two row arrays.

    >>> rows = pl.DataFrame({"ehr_row": [1, None], "wave_row": [None, 0]})
    >>> gather_rows(rows, np.array([[1.0], [2.0]]), np.array([[7.0, 8.0]])).tolist()
    [[2.0, 0.0, 0.0, 1.0, 0.0], [0.0, 7.0, 8.0, 0.0, 1.0]]
    """
    return assemble_rows(ehr, rows["ehr_row"].fill_null(-1).to_numpy(), wave,
                         rows["wave_row"].fill_null(-1).to_numpy())
