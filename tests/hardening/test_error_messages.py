"""Errors name the file and the problem, never a record name, an identifier or a cell value.

MIMIC waveform records are named after their subject (``p10012853-0001``), and so are the
per-record files of ``window_waveforms`` and the waveform latents; Polars and Arrow quote the
values they could not convert. These are real failures on real Parquet files, read by the
stage code that meets them.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from medae.errors import DataError, MedaeError, error_reason

SUBJECT = "10012853"
PLACE = r"waveform_windows/<record>\.parquet \(file 2 of 2 there, by name\)"


def window_files(folder: Path, *, subject_as_text: bool = False) -> list[Path]:
    """Two record files of ``window_waveforms``' layout, named after their subject."""
    folder.mkdir(parents=True)
    files = []
    for k in (1, 2):
        frame = pl.DataFrame({
            "subject_id": [f"p{SUBJECT}" if subject_as_text else int(SUBJECT)] * 2,
            "record_name": [f"p{SUBJECT}-000{k}"] * 2, "channel": ["ecg_ii"] * 2,
            "window_start": [None, None], "start_s": [0.0, 10.0], "fs": [100.0, 100.0],
            "stay_id": [30000 + k] * 2, "values": [[0.1] * 50, [0.2] * 50],
            "q_nan_frac": [0.0, 0.0],
        }, schema_overrides={"values": pl.List(pl.Float32), "window_start": pl.Datetime("us"),
                             "q_nan_frac": pl.Float32})
        path = folder / f"p{SUBJECT}-000{k}.parquet"
        frame.write_parquet(path)
        files.append(path)
    return files


def damage(path: Path) -> None:
    """Keep the Parquet magic at both ends, lose the middle: an unreadable footer."""
    data = path.read_bytes()
    path.write_bytes(data[:8] + b"\0" * (len(data) - 16) + data[-8:])


def assert_private(message: str) -> None:
    assert SUBJECT not in message, message
    assert "p1001" not in message, message


def test_error_reason_drops_the_values_polars_and_arrow_quote():
    with pytest.raises(pl.exceptions.PolarsError) as polars_error:
        pl.DataFrame({"subject_id": [f"p{SUBJECT}"]}).cast({"subject_id": pl.Int64})
    assert SUBJECT in str(polars_error.value)  # what Polars itself says
    reason = error_reason(polars_error.value)
    assert_private(reason)
    assert "subject_id" in reason and "\n" not in reason


def test_error_reason_drops_what_the_real_libraries_quote(tmp_path: Path):
    import pyarrow as pa

    bad = tmp_path / "labevents.csv"  # an unbalanced quote: Polars quotes the text after it
    bad.write_text(f'subject_id,comments\n1,ok\n"p{SUBJECT},SECRET note\n2,fine\n')
    failures = []
    for fail in (lambda: pl.read_csv(bad, schema={"subject_id": pl.Int64, "comments": pl.String}),
                 lambda: pl.Series(["a]b", f"p{SUBJECT}"]).cast(pl.Int64),
                 lambda: pa.array([f"p{SUBJECT}"]).cast(pa.int64())):
        with pytest.raises(Exception) as caught:  # noqa: PT011 - each library's own type
            fail()
        failures.append(caught.value)
    assert all(SUBJECT in str(e) for e in failures)  # what the libraries say
    for reason in map(error_reason, failures):
        assert_private(reason)
        assert "SECRET" not in reason and "\n" not in reason
    assert error_reason(failures[0]).startswith("could not parse `...` as dtype")


def test_waveform_export_names_a_broken_file_by_its_place_not_its_record(tmp_path: Path):
    from medae.export.latents import Modality, ModelRef, export_modality
    from medae.training.encode import waveform_inputs

    folder = tmp_path / "waveform_windows"
    damage(window_files(folder)[1])

    class Encoder:
        channel = "ecg_ii"

        def encode(self, rows):
            return rows[:, :2]

    modality = Modality("waveforms", folder, "window_waveforms", waveform_inputs,
                        named_by_record=True)
    with pytest.raises(DataError) as caught:
        export_modality(modality, Encoder(), ModelRef("medae-waveforms", 1, "r", "u"),
                        tmp_path / "latents" / "waveforms", params_hash="p", batch_rows=4)
    message = str(caught.value)
    assert_private(message)
    assert re.search(PLACE + ": cannot read windows Parquet", message), message
    # the place is the one the owner finds with ls
    assert sorted(p.name for p in folder.iterdir())[1] == f"p{SUBJECT}-0002.parquet"


def test_pairing_names_a_broken_window_file_by_its_place(tmp_path: Path):
    from medae.training.pair_windows import footer

    broken = window_files(tmp_path / "waveform_windows")[1]
    damage(broken)
    with pytest.raises(DataError) as caught:
        footer(broken)
    assert_private(str(caught.value))
    assert re.search(PLACE + ": cannot read column 'stay_id'", str(caught.value))


def test_reading_window_keys_quotes_no_identifier(tmp_path: Path):
    """A subject_id column of text fails the cast to int64; Polars quotes the ids."""
    from medae.training import wave_reader

    files = window_files(tmp_path / "waveform_windows", subject_as_text=True)
    groups = {f.name: [2] for f in files}
    with pytest.raises(DataError) as caught:
        wave_reader.read_keys(files, groups, lambda lf: lf, "waveform windows of 2 stays")
    message = str(caught.value)
    assert_private(message)
    assert message.startswith("waveform windows of 2 stays: cannot read (")
    assert "subject_id" in message


def test_training_names_the_folder_of_a_broken_window_file(tmp_path: Path):
    from medae.training.train import read_channel_windows

    folder = tmp_path / "waveform_windows"
    damage(window_files(folder)[1])
    with pytest.raises(DataError) as caught:
        read_channel_windows(folder, "ecg_ii", 1.0)
    assert_private(str(caught.value))
    assert str(caught.value).startswith(f"{folder}: cannot read the waveform windows (")


@pytest.mark.parametrize("content, problem", [
    ('{"n_bins": 24, "variab', "cannot read the EHR statistics"),
    ('{"n_bins": 24}', "not featurize_ehr's statistics"),
])
def test_torn_ehr_statistics_are_named(tmp_path: Path, content: str, problem: str):
    from medae.training.train import read_ehr_stats

    path = tmp_path / "ehr_stats.json"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(f"{path}: {problem}")):
        read_ehr_stats(path)


def test_registry_errors_say_whether_the_model_is_missing_or_the_registry_unreadable(
        tmp_path: Path):
    from medae.export.latents import resolve_alias

    registry = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(MedaeError, match="no model 'medae-ehr@champion' .* run the training"):
        resolve_alias(registry, "medae-ehr", "champion")
    broken = tmp_path / "broken.db"
    broken.write_text("not a database")
    with pytest.raises(MedaeError) as caught:
        resolve_alias(f"sqlite:///{broken}", "medae-ehr", "champion")
    assert str(caught.value).startswith(
        f"cannot look up 'medae-ehr@champion' in the MLflow registry at sqlite:///{broken} (")
    assert "not a database" in str(caught.value) and "training" not in str(caught.value)


def test_a_model_refusing_a_record_file_s_windows_names_the_file_by_its_place(tmp_path: Path):
    """Windows of another length than the model was trained on (say, windowed with other
    params): the encoder's refusal is named with the file, which is named by its place."""
    import torch

    from medae.config import load_params
    from medae.export.latents import Modality, ModelRef, export_modality
    from medae.models.build import build_model
    from medae.training.encode import Encoder, waveform_inputs, waveform_shape

    folder = tmp_path / "waveform_windows"
    window_files(folder)  # 50 samples a window
    torch.manual_seed(0)
    model = build_model(load_params().train_waveforms.model, waveform_shape(60, "ecg_ii"))
    modality = Modality("waveforms", folder, "window_waveforms", waveform_inputs,
                        named_by_record=True)
    with pytest.raises(DataError) as caught:
        export_modality(modality, Encoder(model.eval(), "cpu"), ModelRef("m", 1, "r", "u"),
                        tmp_path / "latents" / "waveforms", params_hash="p", batch_rows=4,
                        workers=1)
    message = str(caught.value)
    assert_private(message)
    assert re.search(r"waveform_windows/<record>\.parquet \(file 1 of 2 there, by name\): "
                     r"encode: expected rows of width 60, got shape \(2, 50\)", message), message


def test_training_refuses_windows_of_different_lengths_naming_a_file_by_its_place(
        tmp_path: Path):
    from medae.training.train import read_channel_windows

    folder = tmp_path / "waveform_windows"
    files = window_files(folder)
    third = pl.read_parquet(files[0]).with_columns(record_name=pl.lit(f"p{SUBJECT}-0003"))
    third.write_parquet(folder / f"p{SUBJECT}-0003.parquet")
    odd = pl.read_parquet(files[1]).with_columns(pl.col("values").list.head(49))
    odd.write_parquet(files[1])
    with pytest.raises(DataError) as caught:
        read_channel_windows(folder, "ecg_ii", 1.0)
    message = str(caught.value)
    assert_private(message)
    assert message.startswith(f"{folder}: 'ecg_ii' windows of different lengths (50 in 2 "
                              "record(s), 49 in 1 record(s)), e.g. ")
    assert re.search(r"waveform_windows/<record>\.parquet \(file 2 of 3 there, by name\); "
                     r"re-run `medae run window_waveforms`", message), message


def test_no_ehr_windows_is_said_so_not_a_width_mismatch(tmp_path: Path):
    """Stays without events (an icustays table with a header only, say) leave featurize_ehr
    nothing to write; training says that, not "None entries per window"."""
    from medae.training.train import read_ehr_windows
    from tests.training.tables import write_ehr

    folder = tmp_path / "ehr_windows"
    windows = write_ehr(folder, tmp_path / "ehr_stats.json")
    for part in folder.glob("*.parquet"):
        part.unlink()
    windows.head(0).write_parquet(folder / "part_0000.parquet")
    with pytest.raises(DataError, match=re.escape(f"{folder}: no EHR windows; featurize_ehr "
                                                  "wrote none")):
        read_ehr_windows(folder)
