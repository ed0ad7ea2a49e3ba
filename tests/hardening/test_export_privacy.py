"""export_latents with pseudonymisation and encryption on: the privacy options end to end
through the real export writer (a tiny linear encoder stands in for an MLflow champion)."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from medae.config import load_params
from medae.errors import ConfigError, DataError
from medae.export.latents import Modality, ModelRef, export_modality, read_manifest
from medae.privacy import create_key_file, is_encrypted, pseudonym_of, read_table
from medae.privacy.protection import Protection
from medae.training.encode import ehr_inputs

ROOT = Path(__file__).resolve().parents[2]
KEY = b"export-test-key-0123456789"
REF = ModelRef("medae-ehr", 1, "run123", "models:/medae-ehr@champion")


class LinearEncoder:
    input_kind = "ehr"

    def encode(self, batch: np.ndarray) -> np.ndarray:
        return batch[:, :3] * 2.0


def _windows(folder: Path) -> Modality:
    folder.mkdir(parents=True, exist_ok=True)
    start = dt.datetime(2180, 7, 23, 0, 0)
    df = pl.DataFrame({
        "subject_id": [10000032, 10000032, 10001217],
        "hadm_id": [22595853, 22595853, 24597018],
        "stay_id": [39553978, 39553978, 37067082],
        "window_start": [start, start + dt.timedelta(hours=6), start],
        "window_end": [start + dt.timedelta(hours=24)] * 3,
        "split": ["train"] * 3,
        "values": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]],
        "mask": [[1.0, 0.0]] * 3,
        "delta": [[0.0, 1.0]] * 3,
        "static": [[0.5, 1.0]] * 3,
        "label_mortality": [0, 0, 1],
    }, schema_overrides={"values": pl.List(pl.Float32), "mask": pl.List(pl.Float32),
                         "delta": pl.List(pl.Float32), "static": pl.List(pl.Float32),
                         "label_mortality": pl.Int8})
    df.write_parquet(folder / "part_0000.parquet")
    return Modality("ehr", folder, "featurize_ehr", ehr_inputs)


def test_pseudonymised_encrypted_export_round_trip(tmp_path):
    modality = _windows(tmp_path / "windows")
    keys = create_key_file(tmp_path / "keys.json")
    protection = Protection(key=KEY, key_file=keys)
    out = tmp_path / "latents" / "ehr"
    first = export_modality(modality, LinearEncoder(), REF, out, params_hash="h",
                            batch_rows=2, protection=protection)
    part = out / "part_0000.parquet"
    assert is_encrypted(part) and first["rows"] == 3 and first["files_encoded"] == 1
    manifest = read_manifest(out)
    assert manifest["pseudonymised"] is True and manifest["encrypted"] is True
    assert manifest["schema"]["subject_id"] == "Int64" and manifest["latent_columns"] == [
        "z_00", "z_01", "z_02"]
    with pytest.raises(DataError, match="part_0000.parquet: the file is encrypted"):
        read_table(out)
    table = pl.from_arrow(read_table(out, encryption=keys))
    assert table["subject_id"].to_list() == [pseudonym_of(10000032, "subject_id", KEY)] * 2 + [
        pseudonym_of(10001217, "subject_id", KEY)]
    assert table["stay_id"][2] == pseudonym_of(37067082, "stay_id", KEY)
    assert table["z_00"].to_list() == pytest.approx([0.2, 0.6, 1.0])
    # owner-only outputs
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(part).st_mode) == 0o600
    # same key -> part reused; another key -> re-encoded with other pseudonyms
    again = export_modality(modality, LinearEncoder(), REF, out, params_hash="h",
                            batch_rows=2, protection=protection)
    assert again["files_reused"] == 1
    other = Protection(key=b"another-key-0123456789", key_file=keys)
    third = export_modality(modality, LinearEncoder(), REF, out, params_hash="h",
                            batch_rows=2, protection=other)
    assert third["files_encoded"] == 1
    ids = pl.from_arrow(read_table(part, encryption=keys))["subject_id"]
    assert ids[0] == pseudonym_of(10000032, "subject_id", b"another-key-0123456789")


class WaveEncoder:
    input_kind = "waveform"
    channel = "ecg_ii"

    def encode(self, batch: np.ndarray) -> np.ndarray:
        return batch[:, :3]


def test_pseudonymised_waveform_parts_are_not_named_after_their_record(tmp_path):
    """MIMIC record names embed the subject id: with pseudonymisation on, neither the part
    files nor the fingerprint journal beside them may carry one."""
    from medae.training.encode import waveform_inputs

    folder, record = tmp_path / "waveform_windows", "p000878-2137-10-09-16-02"
    folder.mkdir()
    pl.DataFrame({
        "subject_id": [878, 878], "stay_id": [37067082, 37067082],
        "record_name": [record] * 2, "channel": ["ecg_ii", "ecg_ii"],
        "window_start": [dt.datetime(2137, 10, 9, 16, 2)] * 2, "start_s": [0.0, 10.0],
        "fs": [1.0, 1.0], "values": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]],
    }, schema_overrides={"values": pl.List(pl.Float32)}).write_parquet(
        folder / f"{record}.parquet")
    modality = Modality("waveforms", folder, "window_waveforms", waveform_inputs,
                        named_by_record=True)
    out = tmp_path / "latents" / "waveforms"
    protection = Protection(key=KEY)
    first = export_modality(modality, WaveEncoder(), REF, out, params_hash="h", batch_rows=8,
                            protection=protection)
    name = f"{pseudonym_of(record, 'record_name', KEY)}.parquet"
    assert [p.name for p in out.iterdir()] == [name] and first["rows"] == 2
    assert pl.read_parquet(out / name)["record_name"].unique().to_list() == [name[:-8]]
    journal = (out.parent / "_fingerprints.json").read_text()
    assert record not in journal and name in journal
    again = export_modality(modality, WaveEncoder(), REF, out, params_hash="h", batch_rows=8,
                            protection=protection)
    assert (again["files_reused"], again["files_encoded"]) == (1, 0)
    plain = export_modality(modality, WaveEncoder(), REF, tmp_path / "plain" / "waveforms",
                            params_hash="h", batch_rows=8)
    assert plain["rows"] == 2
    assert [p.name for p in (tmp_path / "plain" / "waveforms").iterdir()] == [
        f"{record}.parquet"]


def test_plain_export_is_unchanged_by_the_privacy_hook(tmp_path):
    modality = _windows(tmp_path / "windows")
    out = tmp_path / "latents" / "ehr"
    export_modality(modality, LinearEncoder(), REF, out, params_hash="h", batch_rows=8)
    table = pl.read_parquet(out / "part_0000.parquet")
    assert table["subject_id"].to_list() == [10000032, 10000032, 10001217]
    assert read_manifest(out)["pseudonymised"] is False


def test_protection_from_params_refuses_without_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDAE_PSEUDONYM_KEY", raising=False)
    cfg = load_params(None, ["export_latents.pseudonymise=true"]).export_latents
    with pytest.raises(ConfigError, match="no key was found: set the environment variable "
                       "MEDAE_PSEUDONYM_KEY or pseudonymise_key_file"):
        Protection.from_config(cfg, base=tmp_path)
    monkeypatch.setenv("MEDAE_PSEUDONYM_KEY", KEY.decode())
    assert Protection.from_config(cfg, base=tmp_path).key == KEY
    enc = load_params(None, ["export_latents.encrypt=true"]).export_latents
    with pytest.raises(ConfigError, match="encryption is on but no encryption_key_file"):
        Protection.from_config(enc, base=tmp_path)


def test_cli_export_refuses_in_one_line_and_touches_nothing(tmp_path):
    out = tmp_path / "latents"
    env = {k: v for k, v in os.environ.items() if k != "MEDAE_PSEUDONYM_KEY"}
    res = subprocess.run(
        [sys.executable, "-m", "medae.cli", "run", "export_latents",
         "--set", "export_latents.pseudonymise=true", "--set", f"export_latents.out={out}",
         "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if not line[:2].isdigit()]
    assert errors == ["error: pseudonymisation is on but no key was found: set the environment "
                      "variable MEDAE_PSEUDONYM_KEY or pseudonymise_key_file"]
    assert not out.exists()
