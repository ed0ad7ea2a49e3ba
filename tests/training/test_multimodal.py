"""train_multimodal: pairing EHR and waveform windows, the stage, encoding a missing modality."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from medae.config import Params
from medae.errors import DataError
from medae.training import pair_windows, pairs
from medae.training.config import TrainMultimodal
from medae.training.encode import ehr_inputs, waveform_inputs
from medae.training.train import (
    WAVE_COLUMNS,
    assign_splits,
    read_channel_windows,
    read_ehr_windows,
)
from tests.training.tables import WAVE_ONLY_STAYS

# The stage needs its params section in medae.config.Params (owned by the lead).
needs_section = pytest.mark.skipif("train_multimodal" not in Params.model_fields,
                                   reason="medae.config.Params has no train_multimodal yet")
EHR_WIDTH, WAVE_WIDTH = 6 * 4 * 2 + 2, 128  # tables.ehr_windows: 6 bins x 4 variables, 2 static
LINKED_WAVE_COLUMNS = (*WAVE_COLUMNS, "stay_id", "window_start", "fs")


def reference_table(ehr: pl.DataFrame, wave: pl.DataFrame, cfg, splits_file) -> pl.DataFrame:
    """The rule (medae.training.pairs) applied to every EHR window and every linked
    waveform window read whole: ``split``, ``ehr_row``, ``wave_row`` (row in ``wave``)."""
    spans = pairs.wave_spans(wave)
    both = pairs.pair_ehr_windows(ehr, spans).with_columns(split=ehr["split"])
    lone = assign_splits(pairs.wave_only_windows(ehr, spans, cfg.wave_only_per_stay),
                         splits_file, cfg.tuning_fraction, cfg.held_out_fraction)
    return pl.concat([both.select("split", "ehr_row", "wave_row"),
                      lone.select("split", pl.lit(None, pairs.ROW).alias("ehr_row"),
                                  "wave_row")])


@pytest.fixture(scope="module")
def paired(tiny_data):
    """The tiny tables read whole, and their multimodal rows by the rule (4 wave-only/stay)."""
    ehr = read_ehr_windows(tiny_data / "ehr_windows")
    wave = pairs.linked(read_channel_windows(tiny_data / "linked_waveform_windows", "ecg_ii",
                                             0.1, LINKED_WAVE_COLUMNS)[0])
    table = reference_table(ehr, wave, TrainMultimodal(wave_only_per_stay=4),
                            tiny_data / "no_splits.parquet")
    return ehr, wave, table


def test_pairing_counts_follow_the_rule(paired):
    ehr, wave, table = paired
    # 60 stays x 3 windows: 30 stays with a window in each, 15 with one in the first window
    # only (the other straddles the second window's end), 15 without; 4 wave-only stays of
    # 10 windows thinned to 4 each (every 3rd); the unlinked and ppg windows are never used.
    assert pairs.pairing_counts(table) == {"rows_both": 105, "rows_ehr_only": 75,
                                           "rows_wave_only": 16}
    assert table.height == ehr.height + 16
    assert set(table["split"].unique()) <= {"train", "tuning", "held_out"}


def test_each_ehr_window_gets_the_first_waveform_window_inside_its_span(paired):
    ehr, wave, table = paired
    both = table.head(ehr.height).filter(pl.col("wave_row").is_not_null())
    e, w = ehr[both["ehr_row"].to_list()], wave[both["wave_row"].to_list()]
    assert (e["stay_id"] == w["stay_id"]).all()
    assert (w["window_start"] >= e["window_start"]).all()
    offsets = pl.DataFrame({"kind": (e["stay_id"] - 3000) % 4,
                            "offset": w["window_start"] - e["window_start"]})
    # Two windows per EHR window: the +1 h one, though written after the +2 h one; the stays
    # with a window in the first EHR window only: its +30 min window.
    assert dict(offsets.group_by("kind").agg(pl.col("offset").unique()).rows()) == {
        0: [dt.timedelta(hours=1)], 3: [dt.timedelta(hours=1)], 1: [dt.timedelta(minutes=30)]}


def test_wave_only_rows_come_from_stays_without_ehr_windows_evenly_spaced(paired):
    _, wave, table = paired
    lone = wave[table.filter(pl.col("ehr_row").is_null())["wave_row"].to_list()]
    assert sorted(set(lone["stay_id"].to_list())) == list(WAVE_ONLY_STAYS)
    first = dt.datetime(2151, 1, 1)
    assert sorted({int((t - first).total_seconds()) for t in lone["window_start"]}) == [
        0, 30, 60, 90]


def test_rows_put_each_modality_in_its_slot_with_flags(paired):
    ehr, wave, table = paired
    rows = pairs.gather_rows(table, ehr_inputs(ehr), waveform_inputs(wave))
    assert rows.shape == (table.height, EHR_WIDTH + WAVE_WIDTH + 2)
    assert rows.dtype == np.float32
    kinds = {"both": (True, True), "ehr_only": (True, False), "wave_only": (False, True)}
    for name, (has_e, has_w) in kinds.items():
        pick = table.with_row_index("i").filter(
            pl.col("ehr_row").is_not_null() == has_e, pl.col("wave_row").is_not_null() == has_w)
        i = int(pick["i"][0])
        row = rows[i]
        assert row[-2:].tolist() == [float(has_e), float(has_w)], name
        ehr_part, wave_part = row[:EHR_WIDTH], row[EHR_WIDTH:-2]
        expect_e = ehr_inputs(ehr[int(pick["ehr_row"][0]):][:1])[0] if has_e else 0.0
        expect_w = waveform_inputs(wave[int(pick["wave_row"][0]):][:1])[0] if has_w else 0.0
        np.testing.assert_array_equal(ehr_part, np.broadcast_to(expect_e, ehr_part.shape))
        np.testing.assert_array_equal(wave_part, np.broadcast_to(expect_w, wave_part.shape))


@needs_section
def test_stage_rows_equal_the_rule_on_a_full_read_whether_samples_come_in_one_pass_or_two(
        workdir, monkeypatch):
    """pair_windows reads the keys, pairs, then the samples of the used windows only
    (medae.training.wave_reader); train_multimodal reads its files: the rows equal those the
    rule builds from every linked window read whole, with small files read in one pass (the
    tiny tables) or all in two."""
    from medae.training import wave_reader
    from medae.training.train_multimodal import load_multimodal
    from tests.training.conftest import multimodal_params

    params = multimodal_params(workdir)
    cfg = params.train_multimodal
    ehr = read_ehr_windows(workdir / "ehr_windows")
    wave = pairs.linked(read_channel_windows(workdir / "linked_waveform_windows", cfg.channel,
                                             cfg.max_nan_frac, LINKED_WAVE_COLUMNS)[0])
    table, used = pairs.keep_used_waves(reference_table(ehr, wave, cfg, params.path(cfg.splits)))
    full = {s: pairs.gather_rows(table.filter(pl.col("split") == s), ehr_inputs(ehr),
                                 waveform_inputs(wave[used])) for s in ("train", "tuning")}
    pair_windows.run(params)
    one_pass = load_multimodal(params)
    monkeypatch.setattr(wave_reader, "ONE_PASS_ROWS", 0)  # every file read again for samples
    (params.path(params.pair_windows.out) / pair_windows.FINGERPRINTS).unlink()
    summary = pair_windows.run(params)
    assert len(summary["paired"]) == 1 and summary["rows_fused"] == 105
    two_pass = load_multimodal(params)
    for data in (one_pass, two_pass):
        assert data.counts["rows_both"] == 105 and data.counts["rows_wave_only"] > 0
        np.testing.assert_array_equal(data.train, full["train"])
        np.testing.assert_array_equal(data.tuning, full["tuning"])


@needs_section
def test_pairs_of_another_channel_are_refused_naming_the_file(workdir):
    from medae.training.train_multimodal import load_multimodal
    from tests.training.conftest import multimodal_params

    pair_windows.run(multimodal_params(workdir))
    with pytest.raises(DataError, match=r"paired_windows/part_0000.parquet: paired with "
                                        r"channel 'ecg_ii', train_multimodal has 'ppg'"):
        load_multimodal(multimodal_params(workdir, "train_multimodal.channel=ppg"))


@needs_section
def test_unlinked_waveforms_leave_nothing_to_fuse_naming_the_folder(workdir):
    # tables.waveform_windows: no stay_id, no window_start, so nothing to pair with.
    from medae.training.train_multimodal import load_multimodal
    from tests.training.conftest import multimodal_params

    params = multimodal_params(workdir, f"train_multimodal.wave_features={workdir}/"
                                        f"waveform_windows")
    summary = pair_windows.run(params)
    assert (summary["rows_written"], summary["rows_fused"], summary["wave_only_rows"]) == (
        180, 0, 0)
    with pytest.raises(DataError, match=r"paired_windows: no linked 'ecg_ii' window with "
                                        r"q_nan_frac <= 0.1 of .*/waveform_windows lies inside "
                                        r"an EHR window or belongs to a stay without"):
        load_multimodal(params)


@needs_section
def test_stage_trains_registers_champion_and_encodes_a_missing_modality(workdir):
    from mlflow import MlflowClient

    from medae.training.encode import load_encoder
    from medae.training.train_multimodal import run as run_multimodal
    from tests.training.conftest import multimodal_params

    params = multimodal_params(workdir)
    pair_windows.run(params)
    summary = run_multimodal(params)
    assert (summary["model_uri"], summary["champion"]) == ("models:/medae-multimodal/1", True)
    assert (summary["rows_both"], summary["rows_ehr_only"], summary["rows_wave_only"]) == (
        105, 75, 20)  # default wave_only_per_stay 8: every 2nd of 10 windows
    pointer = json.loads((workdir / "models" / "multimodal.json").read_text())
    assert pointer == {k: summary[k] for k in ("model_uri", "model_name", "version", "run_id",
                                               "metrics", "champion", "data_version")}
    client = MlflowClient(tracking_uri=params.mlflow_uri(), registry_uri=params.mlflow_uri())
    assert int(client.get_model_version_by_alias("medae-multimodal", "champion").version) == 1
    run = client.get_run(summary["run_id"])
    assert run.data.params["model.kind"] == "multimodal_vae"
    assert client.get_experiment(run.info.experiment_id).name == "medae-multimodal"
    losses = (workdir / "loss_multimodal.csv").read_text().splitlines()
    assert losses[0] == "epoch,train_loss,tuning_loss,tuning_recon" and len(losses) == 4

    encoder = load_encoder("models:/medae-multimodal@champion", device="cpu")
    assert (encoder.input_kind, encoder.channel, encoder.latent_dim) == ("multimodal",
                                                                         "ecg_ii", 4)
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(3, EHR_WIDTH + WAVE_WIDTH + 2)).astype(np.float32)
    rows[:, -2:] = [[1, 1], [1, 0], [0, 1]]  # both, EHR only, waveform only
    z = encoder.encode(rows)
    assert z.shape == (3, 4) and np.isfinite(z).all()
    # A missing modality's slots are ignored, whatever they hold (NaN included).
    garbled = rows.copy()
    garbled[1, EHR_WIDTH:-2], garbled[2, :EHR_WIDTH] = np.nan, 1e6
    np.testing.assert_array_equal(encoder.encode(garbled)[1:], z[1:])
    assert not np.allclose(z[0], z[1]) and not np.allclose(z[0], z[2])


@pytest.mark.parametrize("fusion", ["poe", "moe"])
def test_multimodal_fit_resumes_bitwise_on_paired_rows(paired, tmp_path, fusion):
    import torch

    from medae.models.build import build_model
    from medae.models.config import MultimodalVaeConfig
    from medae.training.config import Optim
    from medae.training.encode import multimodal_shape
    from medae.training.loop import fit

    ehr, wave, table = paired
    rows = pairs.gather_rows(table, ehr_inputs(ehr), waveform_inputs(wave))
    shape = multimodal_shape(EHR_WIDTH, 24, 6, WAVE_WIDTH, "ecg_ii")
    optim = Optim(epochs=4, batch_size=32, device="cpu", patience=10)

    def run(stop_after=None):
        def interrupt(epoch, _metrics):
            if epoch == stop_after:
                raise KeyboardInterrupt
        torch.manual_seed(0)
        model = build_model(MultimodalVaeConfig(hidden=(16,), latent_dim=4, fusion=fusion,
                                                kl_anneal_steps=10), shape)
        return fit(model, rows[:150], rows[150:], optim, checkpoint_dir=tmp_path / fusion,
                   on_epoch_end=interrupt)

    straight = run()
    for path in (tmp_path / fusion).glob("*"):
        path.unlink()  # a finished run leaves its checkpoint; start the next one fresh
    with pytest.raises(KeyboardInterrupt):
        run(stop_after=2)
    resumed = run()
    assert resumed.resumed_from == 2
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@needs_section
def test_rows_equal_the_rule_across_parts_in_any_order_and_parts_follow_their_inputs(workdir):
    """Three EHR window files (one whose stays have no waveform, rows shuffled in another):
    train_multimodal's rows still equal the rule on a full read (the paired rows are numbered
    across files and sorted globally); a pairing param change pairs every part again, and a
    removed EHR file's pairs go with it."""
    from medae.training.train_multimodal import load_multimodal
    from tests.training.conftest import multimodal_params

    ehr = read_ehr_windows(workdir / "ehr_windows")
    folder = workdir / "ehr_parts"
    folder.mkdir()
    kind = (pl.col("stay_id") - 3000) % 4
    ehr.filter(kind == 2).write_parquet(folder / "part_0000.parquet")  # no linked window
    ehr.filter(kind.is_in([0, 1])).sample(fraction=1.0, shuffle=True, seed=3).write_parquet(
        folder / "part_0001.parquet")
    ehr.filter(kind == 3).write_parquet(folder / "part_0002.parquet")
    params = multimodal_params(workdir, f"train_multimodal.ehr_features={folder}")
    cfg = params.train_multimodal
    wave = pairs.linked(read_channel_windows(workdir / "linked_waveform_windows", cfg.channel,
                                             cfg.max_nan_frac, LINKED_WAVE_COLUMNS)[0])
    table, used = pairs.keep_used_waves(reference_table(ehr, wave, cfg, params.path(cfg.splits)))
    summary = pair_windows.run(params)
    assert (summary["paired"], summary["rows_fused"]) == (
        ["part_0000.parquet", "part_0001.parquet", "part_0002.parquet"], 105)
    data = load_multimodal(params)
    for split, rows in (("train", data.train), ("tuning", data.tuning)):
        np.testing.assert_array_equal(rows, pairs.gather_rows(
            table.filter(pl.col("split") == split), ehr_inputs(ehr), waveform_inputs(wave[used])))

    assert pair_windows.run(params)["paired"] == []
    looser = multimodal_params(workdir, f"train_multimodal.ehr_features={folder}",
                               "train_multimodal.max_nan_frac=0.5")
    assert len(pair_windows.run(looser)["paired"]) == 3
    with pytest.raises(DataError, match=r"part_0000.parquet: paired with max_nan_frac 0.5, "
                                        r"train_multimodal has 0.1"):
        load_multimodal(params)
    (folder / "part_0002.parquet").unlink()
    assert pair_windows.run(looser)["paired"] == []
    out = params.path(params.pair_windows.out)
    assert sorted(p.name for p in out.glob("*.parquet")) == ["part_0000.parquet",
                                                            "part_0001.parquet"]


@needs_section
def test_a_missing_waveform_folder_is_refused_naming_it(workdir):
    from tests.training.conftest import multimodal_params

    params = multimodal_params(workdir, f"train_multimodal.wave_features={workdir}/nowhere")
    with pytest.raises(DataError, match=r"nowhere: no \*.parquet waveform windows "
                                        r"\(train_multimodal.wave_features\); run `medae run "
                                        r"window_waveforms`"):
        pair_windows.run(params)
