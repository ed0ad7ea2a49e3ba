"""train_ehr / train_waveforms against a real SQLite MLflow store in tmp_path."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from medae.errors import DataError
from medae.training.encode import ehr_inputs, load_encoder, waveform_inputs
from medae.training.loop import TrainingDiverged
from medae.training.train import run_ehr, run_waveforms
from tests.training.conftest import tiny_params


def client(params):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=params.mlflow_uri(), registry_uri=params.mlflow_uri())


def champion_version(params, name="medae-ehr") -> int:
    return int(client(params).get_model_version_by_alias(name, "champion").version)


def test_champion_moves_only_on_improvement_and_pointer_says_so(workdir):
    first = run_ehr(tiny_params(workdir))
    assert (first["version"], first["champion"]) == (1, True)
    pointer = json.loads((workdir / "models" / "ehr.json").read_text())
    assert pointer == {k: first[k] for k in ("model_uri", "model_name", "version", "run_id",
                                             "metrics", "champion", "data_version")}
    assert pointer["model_uri"] == "models:/medae-ehr/1"
    assert set(pointer["metrics"]) >= {"best_tuning_recon", "best_tuning_loss", "best_epoch"}

    worse = run_ehr(tiny_params(workdir, "train_ehr.optim.epochs=1"))
    assert worse["metrics"]["best_tuning_recon"] > first["metrics"]["best_tuning_recon"]
    assert (worse["version"], worse["champion"], champion_version(worse_p := tiny_params(
        workdir))) == (2, False, 1)
    assert json.loads((workdir / "models" / "ehr.json").read_text())["champion"] is False

    better = run_ehr(tiny_params(workdir, "train_ehr.optim.epochs=8"))
    assert better["metrics"]["best_tuning_recon"] < first["metrics"]["best_tuning_recon"]
    assert (better["version"], better["champion"], champion_version(worse_p)) == (3, True, 3)


def test_run_logs_params_metrics_and_artifacts(workdir):
    params = tiny_params(workdir)
    summary = run_waveforms(params)
    run = client(params).get_run(summary["run_id"])
    assert run.data.params["data_version"] == summary["data_version"]
    assert run.data.params["model.kind"] == "conv1d"
    assert "params_hash" in run.data.params
    history = client(params).get_metric_history(summary["run_id"], "tuning_loss")
    assert [m.step for m in history] == [1, 2, 3]
    artifacts = {a.path for a in client(params).list_artifacts(summary["run_id"])}
    assert {"loss_curve.png", "reconstruction.png", "normalisation.json",
            "config.json"} <= artifacts
    import mlflow

    config = mlflow.artifacts.load_dict(f"runs:/{summary['run_id']}/config.json")
    assert config["params_hash"] == run.data.params["params_hash"]  # the resolved config
    experiment = client(params).get_experiment(run.info.experiment_id)
    assert experiment.name == "medae-waveforms"
    assert not (workdir / "checkpoints" / "waveforms").exists()  # cleaned after registering
    # the per-epoch losses DVC plots: one row per epoch, same values as the MLflow metric
    lines = params.path(params.train_waveforms.loss_csv).read_text().splitlines()
    assert lines[0] == "epoch,train_loss,tuning_loss,tuning_recon"
    assert [float(r.split(",")[2]) for r in lines[1:]] == pytest.approx(
        [m.value for m in sorted(history, key=lambda m: m.step)])


def test_logged_input_example_is_synthetic_not_patient_rows(workdir):
    import mlflow
    from mlflow.models import Model

    params = tiny_params(workdir)
    summary = run_ehr(params)
    mlflow.set_tracking_uri(params.mlflow_uri())
    local = mlflow.artifacts.download_artifacts(artifact_uri=summary["model_uri"])
    logged = Model.load(local)
    example = np.asarray(logged.load_input_example(local))
    assert example.shape == (2, 2 * 6 * 4 + 2) and not example.any()
    assert logged.signature is not None


def test_load_encoder_round_trip_is_deterministic(workdir):
    params = tiny_params(workdir)
    run_ehr(params)
    run_waveforms(params)
    windows = pl.read_parquet(workdir / "ehr_windows" / "part_0000.parquet")
    rows = ehr_inputs(windows)
    enc = load_encoder("models:/medae-ehr@champion", device="cpu")
    assert enc.input_kind == "ehr"
    z = enc.encode(rows)
    assert z.dtype == np.float32 and z.shape == (len(rows), 4)
    assert np.array_equal(z, enc.encode(rows))
    # batch size only changes BLAS summation order: equal to float rounding
    np.testing.assert_allclose(z[:7], enc.encode(rows[:7]), rtol=0, atol=1e-6)
    waves = pl.read_parquet(workdir / "waveform_windows" / "rec00.parquet")
    wenc = load_encoder("models:/medae-waveforms@champion", device="cpu")
    assert (wenc.input_kind, wenc.channel) == ("waveform", "ecg_ii")
    zw = wenc.encode(waveform_inputs(waves.filter(pl.col("channel") == wenc.channel)))
    assert zw.shape == (20, 4) and np.isfinite(zw).all()
    with pytest.raises(DataError, match="expected rows of width"):
        enc.encode(rows[:, :5])


def test_diverging_run_registers_nothing(workdir):
    params = tiny_params(workdir, "train_ehr.optim.lr=1e30", "train_ehr.optim.grad_clip=0")
    with pytest.raises(TrainingDiverged, match="no model was saved"):
        run_ehr(params)
    assert client(params).search_model_versions("name='medae-ehr'") == []
    assert not (workdir / "models" / "ehr.json").exists()


def test_missing_windows_name_the_stage_to_run(tmp_path):
    with pytest.raises(DataError, match="featurize_ehr"):
        run_ehr(tiny_params(tmp_path))
