"""export_latents for ``medae-multimodal``: one row per EHR window, fused with the waveform window
training pairs with it (medae.training.pairs) or EHR-only, through the real stage: a tiny model
trained and registered in a SQLite MLflow store, loaded by ``load_encoder``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import medae.export.multimodal as multimodal
from medae.errors import DataError
from medae.export import latents
from medae.training import pair_windows, pairs
from medae.training.encode import ehr_inputs, multimodal_inputs, waveform_inputs
from tests.training.conftest import multimodal_params
from tests.training.tables import write_ehr, write_linked_waveforms

# tests/training/tables.py: 60 stays x 3 EHR windows; 105 of them hold a linked ecg_ii window.
EHR_WINDOWS, FUSED = 180, 105
KEYS = ["subject_id", "hadm_id", "stay_id", "window_start", "window_end"]


def export_params(root: Path, out: str | Path = "latents", modalities: str = "[multimodal]"):
    """The tiny training params, with export reading the same windows into ``root / out``."""
    return multimodal_params(
        root, f"featurize_ehr.out={root}/ehr_windows",
        f"window_waveforms.out={root}/linked_waveform_windows",
        f"export_latents.out={root / out}", f"export_latents.cache={root / out}_cache",
        f"export_latents.modalities={modalities}")


@pytest.fixture(scope="module", autouse=True)
def own_mlflow_uris():
    """Training and export here point MLflow's process-wide URIs (and the environment
    variables subprocesses inherit) at this module's store: give the previous ones back."""
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    yield
    mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)


@pytest.fixture(scope="module")
def project(tmp_path_factory, mlflow_template: Path) -> Path:
    """EHR windows in two parts (stays split by parity), one waveform file per stay, their
    pairs (stage pair_windows) and a ``medae-multimodal`` champion trained on them."""
    import torch

    from medae.training.train_multimodal import run as run_multimodal

    root = tmp_path_factory.mktemp("multimodal_export")
    shutil.copy(mlflow_template, root / "mlflow.db")  # a migrated empty store: ms, not 4 s
    ehr = write_ehr(root / "ehr_windows", root / "ehr_stats.json")
    (root / "ehr_windows" / "part_0000.parquet").unlink()
    for part, parity in (("part_0000", 0), ("part_0001", 1)):
        ehr.filter(pl.col("stay_id") % 2 == parity).write_parquet(
            root / "ehr_windows" / f"{part}.parquet")
    write_linked_waveforms(root / "linked_waveform_windows", ehr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: no intra-op sync on a shared machine
    try:
        pair_windows.run(export_params(root))
        run_multimodal(export_params(root))
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="module")
def exported(project: Path) -> dict:
    return latents.run(export_params(project))


def table(root: Path, out: str = "latents") -> pl.DataFrame:
    return pl.scan_parquet(f"{root / out / 'multimodal'}/").collect()  # the consumer's call


def test_one_row_per_ehr_window_with_the_contract_schema(project, exported):
    summary = exported["modalities"]["multimodal"]
    assert (summary["rows"], summary["files"], summary["files_encoded"]) == (EHR_WINDOWS, 2, 2)
    latent = table(project)
    assert latent.columns == [*KEYS, "has_waveform", "z_00", "z_01", "z_02", "z_03",
                              "model_name", "model_version", "mlflow_run_id"]
    assert latent.height == EHR_WINDOWS and latent["has_waveform"].sum() == FUSED
    assert latent.schema["window_start"] == latent.schema["window_end"] == pl.Datetime("us")
    assert latent.schema["has_waveform"] == pl.Boolean and latent.schema["z_03"] == pl.Float32
    assert set(latent["model_name"]) == {"medae-multimodal"}
    assert set(latent["model_version"]) == {1}
    assert latent.select(pl.selectors.starts_with("z_")).to_numpy().std(axis=0).min() > 0
    manifest = latents.read_manifest(project / "latents" / "multimodal")
    assert (manifest["modality"], manifest["rows"], manifest["files"]) == (
        "multimodal", EHR_WINDOWS, 2)
    assert manifest["model_uri"] == "models:/medae-multimodal@champion"
    assert manifest["schema"]["has_waveform"] == "Boolean"


def test_consumer_joins_to_stays_on_the_keys(project, exported):
    stays = pl.read_parquet(project / "ehr_windows" / "*.parquet").select(
        "subject_id", "stay_id").unique()
    joined = table(project).join(stays, on=["subject_id", "stay_id"], how="inner")
    assert joined.height == EHR_WINDOWS
    windows = pl.read_parquet(project / "ehr_windows" / "*.parquet").select(KEYS)
    assert table(project).select(KEYS).sort(KEYS).equals(windows.sort(KEYS))


def test_rows_equal_the_encoder_on_the_training_pairing(project, exported):
    import mlflow

    from medae.training.encode import load_encoder

    uri = export_params(project).mlflow_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    encoder = load_encoder("models:/medae-multimodal@champion", device="cpu")
    part = project / "ehr_windows" / "part_0001.parquet"
    ehr = pl.read_parquet(part)
    wave = pl.read_parquet(project / "linked_waveform_windows" / "*.parquet").filter(
        pl.col("channel") == "ecg_ii")
    paired = pairs.pair_ehr_windows(ehr, pairs.wave_spans(wave))  # the training rule
    got = pl.read_parquet(project / "latents" / "multimodal" / "part_0001.parquet")
    assert got["has_waveform"].to_list() == paired["wave_row"].is_not_null().to_list()
    z = got.select(pl.selectors.starts_with("z_")).to_numpy()

    # an EHR-only row is the encoding with the waveform slot missing
    lone = int(paired["wave_row"].is_null().arg_true()[0])
    width = encoder.model.shape.wave_dim
    ehr_only = multimodal_inputs(ehr_inputs(ehr[lone]), np.zeros((1, width), np.float32),
                                 np.array([True]), np.array([False]))
    np.testing.assert_allclose(z[lone], encoder.encode(ehr_only)[0], rtol=1e-5, atol=1e-6)
    # a fused row is the encoding with its paired waveform window
    both = int(paired["wave_row"].is_not_null().arg_true()[0])
    fused = multimodal_inputs(ehr_inputs(ehr[both]),
                              waveform_inputs(wave[int(paired["wave_row"][both])]),
                              np.array([True]), np.array([True]))
    np.testing.assert_allclose(z[both], encoder.encode(fused)[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(encoder.encode(fused)[0], encoder.encode(
        multimodal_inputs(ehr_inputs(ehr[both]), np.zeros((1, width), np.float32),
                          np.array([True]), np.array([False])))[0])


def test_two_exports_are_byte_identical(project, exported):
    latents.run(export_params(project, out="again"))
    first, second = (project / d / "multimodal" for d in ("latents", "again"))
    assert sorted(p.name for p in first.iterdir()) == ["part_0000.parquet", "part_0001.parquet"]
    assert {p.name: p.read_bytes() for p in first.iterdir()} == {
        p.name: p.read_bytes() for p in second.iterdir()}


def test_a_changed_record_re_encodes_only_the_part_holding_its_stay(project, exported):
    out = project / "again_incremental"
    params = export_params(project, out=out.name)
    latents.run(params)
    before = {p.name: p.read_bytes() for p in (out / "multimodal").iterdir()}
    again = latents.run(params)["modalities"]["multimodal"]
    assert (again["files_encoded"], again["files_reused"]) == (0, 2)

    waves = project / "linked_waveform_windows"
    record = waves / "rec3001.parquet"  # stay 3001 (odd): part_0001
    original = record.read_bytes()
    try:
        pl.read_parquet(record).with_columns(pl.col("values").list.eval(pl.element() * 2)
                                             ).write_parquet(record)
        assert pair_windows.run(params)["paired"] == ["part_0001.parquet"]
        third = latents.run(params)["modalities"]["multimodal"]
    finally:
        record.write_bytes(original)
        pair_windows.run(params)  # the other tests' pairs again
    assert (third["files_encoded"], third["files_reused"]) == (1, 1)
    after = {p.name: p.read_bytes() for p in (out / "multimodal").iterdir()}
    assert after["part_0000.parquet"] == before["part_0000.parquet"]
    assert after["part_0001.parquet"] != before["part_0001.parquet"]


def test_what_export_read_of_its_inputs_is_cached_outside_the_published_folder(project,
                                                                                exported):
    """The digests name the input files: they stay out of ``export_latents.out``, which
    consumers read (pseudonymised or not); the record footers are pair_windows' own."""
    params = export_params(project)
    out, cache = (params.path(params.export_latents.out),
                  params.path(params.export_latents.cache))
    assert sorted(p.name for p in out.glob("_*.json")) == ["_fingerprints.json",
                                                          "_manifest.json"]
    assert sorted(p.name for p in cache.iterdir()) == [latents.DIGESTS]
    digested = json.loads((cache / latents.DIGESTS).read_text())
    paired = sorted(params.path(params.pair_windows.out).glob("*.parquet"))
    assert set(map(str, paired)) <= set(digested)
    footers = json.loads((params.path(params.pair_windows.cache) / pair_windows.FOOTERS
                          ).read_text())
    waves = sorted((project / "linked_waveform_windows").glob("*.parquet"))
    assert sorted(footers) == [str(p) for p in waves]


def test_no_pointer_means_no_multimodal_export(project, tmp_path):
    params = export_params(project, out=tmp_path / "latents")
    pointer = multimodal.pointer(params)
    moved = tmp_path / "pointer.json"
    shutil.move(pointer, moved)
    try:
        summary = latents.run(params)
    finally:
        shutil.move(moved, pointer)
    assert summary["modalities"] == {"multimodal": {"skipped": "no multimodal model trained"}}
    assert not (tmp_path / "latents" / "multimodal").exists()


def test_a_missing_or_stale_paired_file_is_refused_naming_it(project, exported, tmp_path):
    params = export_params(project, out=tmp_path / "latents")
    paired = params.path(params.pair_windows.out) / "part_0001.parquet"
    moved = tmp_path / "moved.parquet"
    shutil.move(paired, moved)
    try:
        with pytest.raises(DataError, match=r"paired_windows/part_0001.parquet: no paired "
                                            r"windows for .*ehr_windows/part_0001.parquet; "
                                            r"run `medae run pair_windows`"):
            latents.run(params)
        # the pairs of another part: not these EHR windows, row for row
        shutil.copy(paired.with_name("part_0000.parquet"), paired)
        with pytest.raises(DataError, match=r"paired_windows/part_0001.parquet \(for "
                                            r"part_0001.parquet\): paired windows do not match "
                                            r"the EHR windows row for row"):
            latents.run(params)
    finally:
        shutil.move(moved, paired)


def test_pairs_on_another_channel_are_refused(project, exported, tmp_path):
    from medae.training import paired_files

    params = export_params(project, out=tmp_path / "latents")
    paired = params.path(params.pair_windows.out) / "part_0000.parquet"
    original = paired.read_bytes()
    table = pl.read_parquet(paired)
    try:
        paired_files.write_paired(table, paired, {"channel": "ppg", "samples": 128})
        with pytest.raises(DataError, match=r"part_0000.parquet: paired with channel 'ppg', "
                                            r"the model has 'ecg_ii'"):
            latents.run(params)
    finally:
        paired.write_bytes(original)


def test_tables_are_published_together_or_not_at_all(project, tmp_path):
    """No medae-ehr model here: the export stops before encoding anything, and the previous
    multimodal table stays published, untouched (a failure while encoding: test_latents)."""
    out = tmp_path / "latents"
    latents.run(export_params(project, out=out))
    before = ((out / "multimodal").stat().st_ino, (out / "_manifest.json").read_bytes(),
              sorted(p.name for p in (out / "multimodal").iterdir()))
    params = export_params(project, out=out, modalities="[multimodal, ehr]")
    with pytest.raises(latents.MedaeError, match=r"no model 'medae-ehr@champion'"):
        latents.run(params)
    assert ((out / "multimodal").stat().st_ino, (out / "_manifest.json").read_bytes(),
            sorted(p.name for p in (out / "multimodal").iterdir())) == before
    assert not (out / "ehr").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["multimodal", "_manifest.json", "_fingerprints.json"])
