"""Stage pair_windows: finding the waveform windows of a part's stays, reading the samples
of the paired ones only, caching what was read of the records (the stage end to end:
tests/training/test_multimodal.py and tests/export/test_multimodal.py)."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medae.errors import DataError
from medae.training import pair_windows, paired_files, pairs, wave_reader
from medae.training.encode import assemble_rows, waveform_inputs


def test_stays_of_a_file_come_from_the_footer_or_else_the_column(tmp_path):
    one = tmp_path / "one_stay.parquet"
    pl.DataFrame({"stay_id": [7, 7, None]}).write_parquet(one, row_group_size=2)
    mixed = tmp_path / "mixed.parquet"  # min != max: the column is read
    pl.DataFrame({"stay_id": [1, None, 3]}).write_parquet(mixed)
    unlinked = tmp_path / "unlinked.parquet"
    pl.DataFrame({"stay_id": [None]}, schema={"stay_id": pl.Int64}).write_parquet(unlinked)
    assert pair_windows._footer_stays(pq.ParquetFile(one).metadata) == {7}
    assert pair_windows._footer_stays(pq.ParquetFile(mixed).metadata) is None
    assert [pair_windows.file_stays(p) for p in (one, mixed, unlinked)] == [{7}, {1, 3}, set()]
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "keyless.parquet")
    # a waveform file is named after its record (MIMIC names embed the subject id): the error
    # names it by its place in its folder
    with pytest.raises(DataError, match=r"/<record>.parquet \(file 1 of 4 there, by name\): "
                                        r"cannot read column 'stay_id' \(unable to find column "
                                        r"\"stay_id\"; valid columns: \[\"x\"\]\)$"):
        pair_windows.file_stays(tmp_path / "keyless.parquet")


def write_record(path: Path, stay: int, channels: list[str], n: int, width: int,
                 group_rows: int, seed: int) -> None:
    """A waveform windows file like window_waveforms writes: row groups of ``group_rows``
    windows per channel, every 4th window too gappy to use."""
    import datetime as dt

    rng = np.random.default_rng(seed)
    frames = []
    for lo in range(0, n, group_rows):
        for channel in channels:
            k = min(group_rows, n - lo)
            start_s = 10.0 * np.arange(lo, lo + k)
            frames.append(pl.DataFrame({
                "subject_id": [stay // 10] * k, "record_name": [f"r{stay}"] * k,
                "channel": [channel] * k,
                "window_start": [dt.datetime(2150, 1, 1) + dt.timedelta(seconds=s)
                                 for s in start_s],
                "start_s": start_s, "fs": [1.0] * k, "stay_id": [stay] * k,
                "values": rng.normal(size=(k, width)).astype(np.float32),
                "q_nan_frac": np.where(np.arange(lo, lo + k) % 4 == 3, 0.9, 0.0
                                       ).astype(np.float32),
            }).with_columns(pl.col("values").arr.to_list()))
    with pq.ParquetWriter(path, frames[0].to_arrow().schema) as writer:
        for frame in frames:
            writer.write_table(frame.to_arrow())  # one row group per frame


def test_samples_are_read_for_the_paired_windows_only_and_match_a_full_read(tmp_path):
    """Keys first, then the samples of chosen windows from their row groups (a small file's
    are read with its keys): the same windows and samples as reading every eligible window
    whole, across files, channels and row groups."""
    for i, stay in enumerate((11, 12, 13)):
        write_record(tmp_path / f"r{stay}.parquet", stay, ["ecg_ii", "ppg"], n=23, width=10,
                     group_rows=5, seed=i)
    write_record(tmp_path / "r99.parquet", 99, ["ecg_ii"], n=6, width=10, group_rows=5, seed=9)
    index = pair_windows.WaveIndex(tmp_path, "ecg_ii", max_nan_frac=0.5)
    keys = index.keys({11, 13, 99}, "part_0000.parquet")
    full = (pl.read_parquet([tmp_path / f"r{s}.parquet" for s in (11, 13, 99)])
            .filter((pl.col("channel") == "ecg_ii") & (pl.col("q_nan_frac") <= 0.5))
            .sort("record_name", "start_s"))
    assert keys.height == full.height == 2 * (23 - 5) + (6 - 1)
    assert keys.select("record_name", "start_s").equals(full.select("record_name", "start_s"))
    spans = pairs.wave_spans(keys, samples=10)
    assert (spans["wave_end"] - spans["wave_start"]).dt.total_seconds().unique().to_list() == [10]
    # 46 windows in r11 and r13: read again for the chosen ones; 6 in r99: read with the keys
    in_memory = keys.group_by("record_name").agg(pl.col(wave_reader.IN_MEMORY).all())
    assert dict(in_memory.iter_rows()) == {"r11": False, "r13": False, "r99": True}
    chosen = [0, 3, 4, 17, 18, 35, 37, 40]  # within and across row groups and files
    np.testing.assert_array_equal(index.samples(keys[chosen], 10, "part_0000.parquet"),
                                  waveform_inputs(full[chosen]))
    for row, name in ((0, "r11"), (40, "r99")):
        with pytest.raises(DataError, match=r"part_0000.parquet: waveform windows of "
                                            r"\S+/<record>\.parquet \(file \d of \d there, by "
                                            r"name\) have 10 samples, the first eligible one 12"
                                            ) as caught:
            index.samples(keys[[row]], 12, "part_0000.parquet")
        place = sorted(f.name for f in tmp_path.iterdir()).index(f"{name}.parquet") + 1
        assert f"(file {place} of 4 there" in str(caught.value) and name not in str(caught.value)


def test_record_footers_are_read_again_only_for_changed_files(tmp_path):
    waves = tmp_path / "waves"
    waves.mkdir()
    for stay in (11, 12):
        write_record(waves / f"r{stay}.parquet", stay, ["ecg_ii"], n=7, width=4, group_rows=5,
                     seed=stay)
    cache = tmp_path / "cache"
    cache.mkdir()
    assert pair_windows.WaveIndex(waves, "ecg_ii", 0.5, cache).stays_of == {
        "r11.parquet": {11}, "r12.parquet": {12}}
    footers = json.loads((cache / pair_windows.FOOTERS).read_text())
    assert footers[str(waves / "r11.parquet")][1] == [[11], [5, 2]]  # stays, rows per group
    footers[str(waves / "r11.parquet")][1][0] = [99]  # reuse shows as the cached value
    (cache / pair_windows.FOOTERS).write_text(json.dumps(footers))
    write_record(waves / "r12.parquet", 13, ["ecg_ii"], n=7, width=4, group_rows=5, seed=1)
    assert pair_windows.WaveIndex(waves, "ecg_ii", 0.5, cache).stays_of == {
        "r11.parquet": {99}, "r12.parquet": {13}}


def test_paired_files_keep_the_pairs_and_refuse_what_does_not_match(tmp_path):
    """A part's paired file, row for row with its EHR windows: keys, the paired window's
    keys and samples (empty when none), read back in slices of any height."""
    import datetime as dt

    waves = tmp_path / "waves"
    waves.mkdir()
    write_record(waves / "r11.parquet", 11, ["ecg_ii"], n=40, width=4, group_rows=5, seed=1)
    t = dt.datetime(2150, 1, 1)
    ehr = pl.DataFrame({"stay_id": [11, 11, 12], "window_start": [t, t + dt.timedelta(
        seconds=30), t], "window_end": [t + dt.timedelta(seconds=30),
                                       t + dt.timedelta(seconds=35), t + dt.timedelta(hours=1)]})
    ehr.write_parquet(tmp_path / "part_0000.parquet")
    index = pair_windows.WaveIndex(waves, "ecg_ii", 0.5)
    table, width = pair_windows.pair_part(tmp_path / "part_0000.parquet", index)
    assert width == 4
    # window 0 (0-4 s) in the first EHR window; the second needs 30-34 s: window 3 (30 s) is
    # too gappy (every 4th), 40 s ends after 35 s; stay 12 has no record
    assert table["start_s"].to_list() == [0.0, None, None]
    assert [len(paired_files.samples_of(b)) for b in table["wave_values"]] == [4, 0, 0]
    full = pl.read_parquet(waves / "r11.parquet")
    np.testing.assert_array_equal(paired_files.samples_of(table["wave_values"][0]),
                                  waveform_inputs(full[0])[0])
    path = tmp_path / "paired" / "part_0000.parquet"
    path.parent.mkdir()
    paired_files.write_paired(table, path, index.pairing(width))
    assert paired_files.pairing_of(path) == {"channel": "ecg_ii", "max_nan_frac": 0.5,
                                             "samples": 4}
    field = pq.read_schema(path).field("wave_values")
    assert field.type == pa.large_binary() and field.nullable is False
    slices = list(paired_files.side_by_side(iter([ehr[:2], ehr[2:]]), path))
    assert [b.num_rows for _, b in slices] == [2, 1]
    for read_rows in (1, 2):  # paired batches smaller than, or as large as, the EHR batches
        again = list(paired_files.side_by_side(iter([ehr[:2], ehr[2:]]), path, read_rows))
        assert [b.to_pylist() for _, b in again] == [b.to_pylist() for _, b in slices]
    wave_row, samples = paired_files.paired_rows(slices[0][1], 4, "part")
    assert wave_row.tolist() == [0, -1] and samples.shape == (1, 4)
    np.testing.assert_array_equal(samples[0], paired_files.samples_of(table["wave_values"][0]))
    wave_row, samples = paired_files.paired_rows(slices[1][1], 4, "part")  # no waveform at all
    assert wave_row.tolist() == [-1] and samples.shape == (0, 4)
    inputs = assemble_rows(np.ones((1, 3), np.float32), np.arange(1), samples, wave_row)
    assert inputs.tolist() == [[1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]]
    with pytest.raises(DataError, match=r"part_0000.parquet: more paired rows than EHR"):
        list(paired_files.side_by_side(iter([ehr[:2]]), path))
    with pytest.raises(DataError, match=r"here: paired windows do not match the EHR windows "
                                        r"row for row"):
        paired_files.check_aligned(ehr.reverse(), table, "here")
    # the keys are compared as values: a paired file with narrower integer ids still fits
    paired_files.check_aligned(ehr, table.with_columns(pl.col("stay_id").cast(pl.Int32)), "here")
    broken = table.with_columns(wave_values=pl.Series([np.zeros(3, "<f4").tobytes(), b"", b""],
                                                      dtype=pl.Binary))
    paired_files.write_paired(broken, path, index.pairing(width))
    batch = next(paired_files.side_by_side(iter([ehr]), path))[1]
    with pytest.raises(DataError, match=r"part: row 0: 3 paired waveform samples, 4 expected"):
        paired_files.paired_rows(batch, 4, "part")
    # samples as lists (the first paired format): refused, re-pairing named
    lists = pa.array([[0.0] * 4, [], []], pa.large_list(pa.float32()))
    with pytest.raises(DataError, match=r"part: wave_values is large_list<item: float>, not the "
                                        r"samples as binary .*run `medae run pair_windows`"):
        paired_files.paired_samples(batch.column("record_name"), lists, 4, "part")
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "plain.parquet")
    with pytest.raises(DataError, match=r"plain.parquet: not a paired windows file"):
        paired_files.pairing_of(tmp_path / "plain.parquet")
    assert pl.Int64 == pairs.ROW


def test_module_doctests():
    for module in (pair_windows, paired_files):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted >= 2, module.__name__


def test_assembled_rows_equal_the_row_by_row_definition():
    """``assemble_rows`` writes the model rows in one pass: each row is ``[ehr | wave | flags]``
    of its own EHR and waveform rows, zeros where a modality is missing, NaNs kept."""
    from medae.training.encode import assemble_rows

    rng = np.random.default_rng(0)
    ehr, wave = rng.normal(size=(7, 3)), rng.normal(size=(4, 5)).astype(np.float32)
    ehr[2, 1] = wave[1, 4] = np.nan
    for ehr_row in (np.array([6, -1, 2, 0, 2]), np.arange(7)):
        wave_row = rng.integers(-1, 4, size=len(ehr_row))
        got = assemble_rows(ehr, ehr_row, wave, wave_row)
        for i, (e, w) in enumerate(zip(ehr_row, wave_row, strict=True)):
            want = np.concatenate([ehr[e] if e >= 0 else np.zeros(3), wave[w] if w >= 0
                                   else np.zeros(5), [float(e >= 0), float(w >= 0)]])
            np.testing.assert_array_equal(got[i], want.astype(np.float32))
        assert got.dtype == np.float32
