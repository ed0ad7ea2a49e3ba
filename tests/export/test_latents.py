"""export_latents writer: the latent contract, incremental reuse, atomic failure, waveform
channel selection, MEDS events. A fixed linear encoder stands in for the MLflow champion here;
the real load_encoder path runs in tests/flows/test_refresh_e2e.py."""

from __future__ import annotations

import datetime as dt
import doctest
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import medae.export.latents as latents
from medae.export.latents import Modality, ModelRef, export_modality, read_manifest
from medae.training.encode import ehr_inputs, waveform_inputs

REF = ModelRef("medae-ehr", 2, "run-abc", "models:/medae-ehr@champion")
T0 = dt.datetime(2150, 1, 1)
LISTS = {c: pl.List(pl.Float32) for c in ("values", "mask", "delta", "static")}


class LinearEncoder:
    """Deterministic stand-in: z = x @ W, W fixed; counts calls to prove reuse."""

    input_kind = "ehr"
    channel = None

    def __init__(self, width: int, latent: int = 3, fail_on_call: int | None = None):
        self.weights = np.arange(width * latent, dtype=np.float32).reshape(width, latent) / 10
        self.calls = 0
        self.fail_on_call = fail_on_call

    def encode(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_on_call == self.calls:
            raise RuntimeError("simulated crash in the forward pass")
        return batch @ self.weights


def ehr_windows(subjects: list[int], n_per_subject: int = 2) -> pl.DataFrame:
    rows = []
    for s in subjects:
        for k in range(n_per_subject):
            start = T0 + dt.timedelta(hours=6 * k)
            rows.append({"subject_id": s, "hadm_id": s * 10, "stay_id": s * 100,
                         "window_start": start, "window_end": start + dt.timedelta(hours=24),
                         "split": "train", "values": [float(s), float(k)],
                         "mask": [1.0, 0.0], "delta": [0.0, 1.0], "static": [0.5, 1.0],
                         "label_mortality": 0})
    return pl.DataFrame(rows, schema_overrides={**LISTS, "label_mortality": pl.Int8})


@pytest.fixture
def ehr(tmp_path: Path) -> Modality:
    folder = tmp_path / "ehr_windows"
    folder.mkdir()
    ehr_windows([1, 2, 3]).write_parquet(folder / "part_0000.parquet")
    ehr_windows([4, 5]).write_parquet(folder / "part_0001.parquet")
    return Modality("ehr", folder, "featurize_ehr", ehr_inputs)


def export(modality: Modality, out: Path, encoder, **kw):
    return export_modality(modality, encoder, kw.pop("ref", REF), out, params_hash="p1",
                           batch_rows=kw.pop("batch_rows", 3), **kw)


def test_latent_table_follows_the_contract(ehr: Modality, tmp_path: Path):
    out = tmp_path / "latents" / "ehr"
    encoder = LinearEncoder(width=6)
    summary = export(ehr, out, encoder)

    table = pl.scan_parquet(f"{out}/").collect()  # the consumer's call, nothing else known
    assert table.columns == ["subject_id", "hadm_id", "stay_id", "window_start", "window_end",
                             "z_00", "z_01", "z_02", "model_name", "model_version",
                             "mlflow_run_id"]
    assert table.schema["window_start"] == pl.Datetime("us")
    assert table.schema["z_00"] == pl.Float32 and table.schema["model_version"] == pl.Int64
    assert table.height == 10 and summary["rows"] == 10
    inputs = pl.concat([pl.read_parquet(p) for p in sorted(ehr.windows.glob("*.parquet"))])
    expected = ehr_inputs(inputs) @ encoder.weights
    np.testing.assert_allclose(table.select("z_00", "z_01", "z_02").to_numpy(), expected,
                               rtol=1e-6)
    assert table["subject_id"].to_list() == inputs["subject_id"].to_list()  # order kept
    assert set(table["model_name"]) == {"medae-ehr"} and set(table["mlflow_run_id"]) == {
        "run-abc"}

    manifest = read_manifest(out)
    assert manifest["rows"] == 10 and manifest["files"] == 2
    assert manifest["model_uri"] == "models:/medae-ehr@champion"
    assert manifest["model_version"] == 2 and manifest["params_hash"] == "p1"
    assert manifest["schema"]["z_02"] == "Float32"
    assert manifest["latent_columns"] == ["z_00", "z_01", "z_02"]
    assert len(manifest["data_version"]) == 16 and manifest["created_at"].startswith("20")
    assert sorted(p.name for p in out.iterdir()) == ["part_0000.parquet", "part_0001.parquet"]


def test_rerun_reuses_unchanged_parts_byte_for_byte(ehr: Modality, tmp_path: Path):
    out = tmp_path / "latents" / "ehr"
    export(ehr, out, LinearEncoder(width=6))
    before = {p.name: p.read_bytes() for p in out.glob("*.parquet")}

    encoder = LinearEncoder(width=6)
    again = export(ehr, out, encoder)
    assert (again["files_encoded"], again["files_reused"], encoder.calls) == (0, 2, 0)
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet")} == before

    ehr_windows([4, 5, 6]).write_parquet(ehr.windows / "part_0001.parquet")  # new subject
    third = export(ehr, out, LinearEncoder(width=6))
    assert (third["files_encoded"], third["files_reused"], third["rows"]) == (1, 1, 12)
    assert (out / "part_0000.parquet").read_bytes() == before["part_0000.parquet"]

    new_model = ModelRef("medae-ehr", 3, "run-def", REF.uri)
    fourth = export(ehr, out, LinearEncoder(width=6), ref=new_model)
    assert fourth["files_encoded"] == 2
    assert set(pl.read_parquet(out / "part_0000.parquet")["model_version"]) == {3}


def test_input_digests_are_reused_until_a_file_changes(tmp_path: Path):
    """The digest cache: a file's digest is reused while its size, times and inode are
    unchanged, recomputed after any rewrite (even to the same size), and forgotten when the
    file is gone."""
    from medae.io import file_digest

    a, b, cache = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "_digests.json"
    a.write_bytes(b"first")
    b.write_bytes(b"other")
    assert latents.file_digests([a, b], cache) == [file_digest(a), file_digest(b)]
    entries = json.loads(cache.read_text())
    assert sorted(entries) == [str(a), str(b)]
    entries[str(a)][-1] = "cached"  # reuse shows as the cached value coming back
    cache.write_text(json.dumps(entries))
    assert latents.file_digests([a, b], cache) == ["cached", file_digest(b)]

    b.unlink()
    a.write_bytes(b"FIRST")  # same size, new bytes: new stamp
    assert latents.file_digests([a], cache) == [file_digest(a)]
    assert sorted(json.loads(cache.read_text())) == [str(a)]
    cache.write_text("{torn")
    assert latents.file_digests([a], cache) == [file_digest(a)]


def test_crash_mid_export_leaves_previous_table_intact(ehr: Modality, tmp_path: Path):
    out = tmp_path / "latents" / "ehr"
    export(ehr, out, LinearEncoder(width=6))
    before = pl.scan_parquet(f"{out}/").collect()
    manifest = read_manifest(out)

    ehr_windows([7, 8]).write_parquet(ehr.windows / "part_0000.parquet")
    ehr_windows([9]).write_parquet(ehr.windows / "part_0001.parquet")
    with pytest.raises(RuntimeError, match="simulated crash"):
        export(ehr, out, LinearEncoder(width=6, fail_on_call=2), batch_rows=100)

    assert pl.scan_parquet(f"{out}/").collect().equals(before)
    assert read_manifest(out) == manifest
    assert [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_parts_are_the_same_bytes_whatever_the_batch_size(ehr: Modality, tmp_path: Path):
    """A file's batches are gathered into one table (LatentRows): its rows keep the input
    order whether the file is one batch, a few or one per window."""
    parts = {}
    for batch_rows in (1, 4, 1000):
        out = tmp_path / f"latents_{batch_rows}" / "ehr"
        assert export(ehr, out, LinearEncoder(width=6), batch_rows=batch_rows)["rows"] == 10
        parts[batch_rows] = {p.name: p.read_bytes() for p in sorted(out.glob("*.parquet"))}
    assert parts[1] == parts[4] == parts[1000] and len(parts[1]) == 2
    table = pl.read_parquet(tmp_path / "latents_1" / "ehr" / "part_0000.parquet")
    windows = pl.read_parquet(ehr.windows / "part_0000.parquet")
    assert table.select(latents.EHR_KEYS).equals(windows.select(latents.EHR_KEYS))
    np.testing.assert_array_equal(table.select(pl.selectors.starts_with("z_")).to_numpy(),
                                  LinearEncoder(width=6).encode(ehr_inputs(windows)))


class ShortEncoder(LinearEncoder):
    """Returns one row fewer than it was given in its second call."""

    def encode(self, batch: np.ndarray) -> np.ndarray:
        z = super().encode(batch)
        return z[:-1] if self.calls == 2 else z


def test_staged_tables_are_published_together_or_not_at_all(ehr: Modality, tmp_path: Path):
    """What ``run`` does with the modalities: each table staged, all swapped in at the end of
    one ``ExitStack``; a failure while encoding the second discards the staged first."""
    from contextlib import ExitStack

    first, second = tmp_path / "latents" / "a", tmp_path / "latents" / "b"
    export(ehr, first, LinearEncoder(width=6))
    export(ehr, second, LinearEncoder(width=6))
    before = {p: (p.stat().st_ino, sorted(c.name for c in p.iterdir())) for p in (first, second)}
    newer = ModelRef("medae-ehr", 3, "run-new", REF.uri)  # every part must be re-encoded
    with pytest.raises(RuntimeError, match="simulated crash"), ExitStack() as publish:
        for out, encoder in ((first, LinearEncoder(width=6)),
                             (second, LinearEncoder(width=6, fail_on_call=2))):
            publish.enter_context(latents.staged_export(
                ehr, encoder, newer, out, params_hash="p1", batch_rows=3, workers=1))
    assert {p: (p.stat().st_ino, sorted(c.name for c in p.iterdir()))
            for p in (first, second)} == before
    assert set(pl.scan_parquet(f"{first}/").collect()["model_version"]) == {REF.version}
    assert sorted(p.name for p in first.parent.iterdir()) == [
        "_fingerprints.json", "_manifest.json", "a", "b"]  # no staging left behind


def test_encoder_output_of_the_wrong_shape_is_refused(ehr: Modality, tmp_path: Path):
    out = tmp_path / "latents" / "ehr"
    export(ehr, out, LinearEncoder(width=6))
    before = pl.scan_parquet(f"{out}/").collect()
    with pytest.raises(latents.MedaeError, match=r"part_0000.parquet: batch 1: encoder returned "
                                                 r"shape \(2, 3\) for 3 windows; expected "
                                                 r"\(rows, latent\)"):
        export(ehr, out, ShortEncoder(width=6), ref=ModelRef("medae-ehr", 3, "r", REF.uri),
               workers=1)
    assert pl.scan_parquet(f"{out}/").collect().equals(before)


def test_latent_rows_refuse_extra_columns_that_do_not_fit():
    keys = pa.record_batch({"subject_id": [1, 1], "hadm_id": [2, 2], "stay_id": [3, 3],
                            "window_start": [0, 1], "window_end": [1, 2]})
    rows = latents.LatentRows("ehr")
    with pytest.raises(latents.MedaeError, match=r"f: batch 0: extra column 'has_waveform' has "
                                                 r"1 rows for 2 windows"):
        rows.add(keys, np.zeros((2, 2)), "f: batch 0: ", has_waveform=np.array([True]))
    rows.add(keys, np.zeros((2, 2)), has_waveform=np.array([True, False]))
    with pytest.raises(latents.MedaeError, match=r"extra columns \[\] differ from the earlier "
                                                 r"batches' \['has_waveform'\]"):
        rows.add(keys, np.zeros((2, 2)))
    assert rows.frame(REF).height == 2  # the refused batches left nothing behind


def test_missing_windows_is_a_clear_error(tmp_path: Path):
    empty = Modality("ehr", tmp_path / "nothing", "featurize_ehr", ehr_inputs)
    with pytest.raises(latents.DataError, match="no window files for modality 'ehr'"):
        export(empty, tmp_path / "latents" / "ehr", LinearEncoder(width=6))


def test_waveform_export_keeps_the_encoder_channel_and_computes_window_end(tmp_path: Path):
    folder = tmp_path / "waveform_windows"
    folder.mkdir()
    base = {"subject_id": [11, 11, 11], "record_name": ["p11-0001"] * 3,
            "channel": ["ecg_ii", "ppg", "ecg_ii"], "window_start": [T0, T0, None],
            "start_s": [0.0, 0.0, 10.0], "fs": [100.0, 100.0, 100.0], "stay_id": [5, 5, 5],
            "values": [[0.1] * 1000, [0.2] * 1000, [0.3] * 1000]}
    pl.DataFrame(base, schema_overrides={"values": pl.List(pl.Float32)}).write_parquet(
        folder / "p11-0001.parquet")
    pl.DataFrame({**base, "channel": ["ppg"] * 3}, schema_overrides={
        "values": pl.List(pl.Float32)}).write_parquet(folder / "p11-0002.parquet")

    encoder = LinearEncoder(width=1000, latent=2)
    encoder.channel = "ecg_ii"
    modality = Modality("waveforms", folder, "window_waveforms", waveform_inputs)
    summary = export(modality, tmp_path / "latents" / "waveforms", encoder)

    table = pl.scan_parquet(f"{tmp_path / 'latents' / 'waveforms'}/").collect()
    assert summary["rows"] == 2 and set(table["channel"]) == {"ecg_ii"}
    assert table["window_end"].to_list() == [T0 + dt.timedelta(seconds=10), None]
    assert table.columns[:7] == ["subject_id", "stay_id", "record_name", "channel",
                                 "window_start", "window_end", "start_s"]
    # the all-ppg record has nothing to encode: no part, but it is remembered as done
    assert [p.name for p in (tmp_path / "latents" / "waveforms").iterdir()] == [
        "p11-0001.parquet"]
    calls = encoder.calls
    again = export(modality, tmp_path / "latents" / "waveforms", encoder)
    assert (again["files_encoded"], again["files_reused"], encoder.calls) == (0, 2, calls)
    assert again["data_version"] == summary["data_version"]
    # ... until it changes: now it has an ECG window, and a part
    pl.DataFrame({**base, "channel": ["ppg", "ppg", "ecg_ii"]}, schema_overrides={
        "values": pl.List(pl.Float32)}).write_parquet(folder / "p11-0002.parquet")
    third = export(modality, tmp_path / "latents" / "waveforms", encoder)
    assert (third["files_encoded"], third["rows"]) == (1, 3)


def test_meds_events_have_one_code_per_dimension(ehr: Modality, tmp_path: Path):
    out = tmp_path / "latents" / "ehr"
    export(ehr, out, LinearEncoder(width=6), meds_dir=tmp_path / "latents" / "_meds" / "ehr")
    events = pl.scan_parquet(f"{tmp_path / 'latents' / '_meds' / 'ehr'}/").collect()
    assert events.height == 10 * 3
    assert sorted(set(events["code"])) == [f"LATENT//medae-ehr//d0{i}" for i in range(3)]
    assert events.schema["numeric_value"] == pl.Float32
    assert events.schema["time"] == pl.Datetime("us")
    first = events.filter(pl.col("subject_id") == 1).sort("time", "code")
    assert first["time"][0] == T0 + dt.timedelta(hours=24)


def test_manifest_index_holds_one_entry_per_table(ehr: Modality, tmp_path: Path):
    root = tmp_path / "latents"
    export(ehr, root / "ehr", LinearEncoder(width=6))
    export(ehr, root / "ehr_copy", LinearEncoder(width=6))
    index = json.loads((root / "_manifest.json").read_text())
    assert sorted(index) == ["ehr", "ehr_copy"]
    assert index["ehr"]["rows"] == index["ehr_copy"]["rows"] == 10


def test_module_doctests():
    result = doctest.testmod(latents)
    assert result.failed == 0 and result.attempted >= 8


# ---------------------------------------------------------------- throughput machinery


def test_only_key_and_input_columns_are_read(ehr: Modality):
    path = ehr.windows / "part_0000.parquet"
    batch = next(latents.iter_windows(path, 100, ehr.read_columns()))
    assert batch.schema.names == ["subject_id", "hadm_id", "stay_id", "window_start",
                                  "window_end", "values", "mask", "static"]  # no delta, split
    assert next(latents.iter_windows(path, 100)).num_columns == 11  # None = every column

    pl.read_parquet(path).drop("mask").write_parquet(path)  # a missing input column...
    with pytest.raises(latents.DataError, match="EHR windows: missing column 'mask'"):
        export(ehr, ehr.windows.parent / "latents" / "ehr", LinearEncoder(width=6))


@pytest.fixture(scope="module")
def vae_encoder():
    """A real (untrained, seeded) VAE behind the production Encoder: torch on CPU."""
    import torch

    from medae.models.build import build_model
    from medae.models.config import VaeConfig
    from medae.training.encode import Encoder, ehr_shape

    torch.manual_seed(0)
    model = build_model(VaeConfig(hidden=(16,), latent_dim=4), ehr_shape(6, 2, 1)).eval()
    return Encoder(model=model, device="cpu", batch_size=4)


def test_parts_are_the_same_bytes_whatever_the_number_of_workers(tmp_path: Path, vae_encoder):
    folder = tmp_path / "ehr_windows"
    folder.mkdir()
    for f in range(5):
        ehr_windows(list(range(f * 7, f * 7 + 7)), 3).write_parquet(
            folder / f"part_{f:04d}.parquet")
    modality = Modality("ehr", folder, "featurize_ehr", ehr_inputs)
    parts = {}
    for workers in (1, 3):
        out = tmp_path / f"latents_{workers}" / "ehr"
        summary = export(modality, out, vae_encoder, batch_rows=8, workers=workers)
        assert (summary["rows"], summary["files_encoded"]) == (105, 5)
        parts[workers] = {p.name: p.read_bytes() for p in sorted(out.glob("*.parquet"))}
    assert parts[1] == parts[3] and len(parts[1]) == 5
    # a VAE exports its mean: the same rows through the model directly give the same codes
    table = pl.scan_parquet(f"{tmp_path / 'latents_3' / 'ehr'}/").collect()
    inputs = pl.concat([pl.read_parquet(p) for p in sorted(folder.glob("*.parquet"))])
    # (a sample would be off by about one standard deviation, not by float rounding)
    np.testing.assert_allclose(table.select(pl.selectors.starts_with("z_")).to_numpy(),
                               vae_encoder.encode(ehr_inputs(inputs)), rtol=1e-5, atol=1e-6)


def test_each_worker_runs_torch_on_its_share_of_the_cores(vae_encoder):
    import torch

    cores = torch.get_num_threads()
    seen = []
    latents.encode_files([Path(str(i)) for i in range(4)],
                         lambda _: seen.append(torch.get_num_threads()), workers=2)
    assert set(seen) == {max(1, cores // 2)} and len(seen) == 4
    assert torch.get_num_threads() == cores  # a per-thread setting: the caller keeps its own


def test_first_failure_is_raised_and_later_files_never_start():
    started = []

    def encode_one(path: Path) -> None:
        started.append(path.name)
        if path.name == "b":
            raise latents.DataError("b: broken")

    with pytest.raises(latents.DataError, match="b: broken"):
        latents.encode_files([Path(n) for n in "abcdef"], encode_one, workers=1)
    assert started == ["a", "b"]



def test_lazy_model_loads_once_for_all_workers_and_not_at_all_when_nothing_changed(
        ehr: Modality, tmp_path: Path):
    loads = []

    def loader(uri: str) -> LinearEncoder:
        loads.append(uri)
        return LinearEncoder(width=6)

    out = tmp_path / "latents" / "ehr"
    first = export(ehr, out, latents.LazyEncoder(REF.uri, loader), workers=2)
    assert first["files_encoded"] == 2 and loads == [REF.uri]
    again = export(ehr, out, latents.LazyEncoder(REF.uri, loader), workers=2)
    assert again["files_reused"] == 2 and loads == [REF.uri]
