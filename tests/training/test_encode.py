"""Model inputs read straight from Arrow batches (export) equal those of Polars frames
(training), row for row; malformed list columns are refused with the column and row named."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medae.ehr.featurize import write_windows
from medae.errors import DataError
from medae.export.latents import READ_COLUMNS, iter_windows, key_frame
from medae.training.encode import EHR_PARTS, ehr_inputs, list_values, waveform_inputs
from tests.training.tables import ehr_windows, waveform_windows


def by_hand(df: pl.DataFrame) -> np.ndarray:
    """``[values | mask | static]`` row by row, from Python lists."""
    return np.array([sum((list(row[c]) for c in EHR_PARTS), []) for row in df.iter_rows(
        named=True)], np.float32)


def test_ehr_inputs_from_arrow_batches_equal_the_frame_and_the_definition(tmp_path):
    df, _ = ehr_windows(n_stays=40)
    path = tmp_path / "part_0000.parquet"
    write_windows(df, path, "lz4")  # featurize_ehr's writer: non-null large lists
    frame = pl.read_parquet(path)
    expected = by_hand(frame)
    np.testing.assert_array_equal(ehr_inputs(frame), expected)
    batches = list(iter_windows(path, 37, READ_COLUMNS["ehr"]))  # uneven batches
    assert len(batches) > 2
    got = np.concatenate([ehr_inputs(b) for b in batches])
    np.testing.assert_array_equal(got, expected)
    assert got.flags.writeable and got.dtype == np.float32
    # a slice of a batch (non-zero offsets) gives the same rows as the frame's slice
    table = pq.read_table(path)
    sliced = table.slice(5, 9).to_batches()[0]
    np.testing.assert_array_equal(ehr_inputs(sliced), expected[5:14])
    assert key_frame(sliced, "ehr").equals(key_frame(frame[5:14], "ehr"))


def test_waveform_inputs_keep_gaps_as_nan_and_match_the_frame():
    wave = waveform_windows(records=2, per_record=3, length=16).filter(
        pl.col("channel") == "ecg_ii")
    values = wave["values"].to_list()
    values[1][4] = None  # a gap inside a window
    wave = wave.with_columns(values=pl.Series(values, dtype=pl.List(pl.Float32)))
    rows = waveform_inputs(wave.to_arrow().to_batches()[0])
    assert np.isnan(rows[1, 4]) and np.isfinite(np.delete(rows[1], 4)).all()
    np.testing.assert_array_equal(rows, waveform_inputs(wave))
    assert key_frame(wave.to_arrow().to_batches()[0], "waveforms").equals(
        key_frame(wave, "waveforms"))


def test_malformed_list_columns_are_refused_with_column_and_row():
    ragged = pa.record_batch({"values": pa.array([[1.0, 2.0], [3.0, 4.0], [5.0]],
                                                 pa.large_list(pa.float32()))})
    with pytest.raises(DataError, match=r"waveform windows: column 'values' row 2: list length "
                                        r"differs from the others \(2 expected\)"):
        waveform_inputs(ragged)
    missing = pa.record_batch({"values": pa.array([[1.0], None, [2.0]],
                                                  pa.large_list(pa.float32()))})
    with pytest.raises(DataError, match=r"column 'values' row 1: list length differs"):
        list_values(missing, "values", "EHR windows")
    with pytest.raises(DataError, match=r"EHR windows: column 'values' is double, not a list"):
        list_values(pa.record_batch({"values": [1.0, 2.0]}), "values", "EHR windows")
    with pytest.raises(DataError, match=r"EHR windows: missing column 'mask'"):
        ehr_inputs(pa.record_batch({"values": pa.array([[1.0]]), "static": pa.array([[1.0]])}))
    with pytest.raises(DataError, match=r"EHR windows: missing column 'hadm_id'"):
        key_frame(pa.record_batch({"subject_id": [1], "stay_id": [2]}), "ehr")
