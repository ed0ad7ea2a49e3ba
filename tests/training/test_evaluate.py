"""`medae evaluate` on a shrunken config: tiny EHR tables and a few real MIT-BIH records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medae.training.evaluate import EHR_KEYS, WAVE_KEYS, prd, run
from tests.training.conftest import tiny_params


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, tiny_data, mlflow_template, physionet):
    import shutil

    root = tmp_path_factory.mktemp("evaluate")
    shutil.copy(mlflow_template, root / "mlflow.db")
    params = tiny_params(
        root, f"evaluate.ehr_features={tiny_data}/ehr_windows",
        f"evaluate.ehr_stats={tiny_data}/ehr_stats.json", "evaluate.ehr_epochs=20",
        f"evaluate.mitdb={physionet}/mitdb", "evaluate.train_records=[100, 106, 105]",
        "evaluate.tuning_records=[105]", "evaluate.test_records=[119]",
        "evaluate.wave_max_train_beats=300", "evaluate.wave_epochs=1",
        "evaluate.wave_model={kind: conv1d, channels: [4], latent_dim: 16, "
        "scale_equivariant: true}",
        f"evaluate.out={root}/evaluation.json")
    return params, run(params)


def test_evaluate_returns_every_key_with_plausible_values(evaluation):
    params, result = evaluation
    assert result["ehr_status"] == "measured" and result["wave_status"] == "measured"
    for key in EHR_KEYS + WAVE_KEYS:
        assert isinstance(result[key], float), key
    for key in ("ehr_probe_auroc_ae", "ehr_probe_auroc_pca", "ehr_probe_auroc_raw",
                "wave_probe_auroc_ae", "wave_probe_auroc_pca"):
        assert 0.0 <= result[key] <= 1.0
    # the tiny tables are level + trend: anything fitted beats the train mean by far
    assert result["ehr_imputation_rmse_ratio_vs_mean"] < 0.8
    # PCA of 16 numbers per 252-sample beat is a few percent PRD, 8 numbers is worse
    assert 1.0 < result["wave_prd_pca_16x"] < result["wave_prd_pca_32x"] < 60.0
    # the conv AE starts at PCA and early-stops on a held-out record: never far behind it
    assert result["wave_prd_ae_16x"] < 1.2 * result["wave_prd_pca_16x"]
    assert result["wave_beats_test"]["119"] > 1500
    assert result["wave_probe_beats"]["test_v"] > 300  # record 119 has many V beats
    written = json.loads(params.path(params.evaluate.out).read_text())
    assert written == json.loads(json.dumps(result))


def test_evaluation_is_logged_to_mlflow(evaluation):
    from mlflow import MlflowClient

    params, result = evaluation
    run_ = MlflowClient(tracking_uri=params.mlflow_uri()).get_run(result["mlflow_run_id"])
    assert run_.data.metrics["wave_prd_pca_16x"] == pytest.approx(result["wave_prd_pca_16x"])


def test_missing_inputs_leave_keys_null_with_a_reason(tmp_path):
    params = tiny_params(tmp_path, f"evaluate.ehr_features={tmp_path}/none",
                         f"evaluate.ehr_stats={tmp_path}/none.json",
                         f"evaluate.mitdb={tmp_path}/none", "evaluate.mlflow=false",
                         f"evaluate.out={tmp_path}/evaluation.json")
    result = run(params)
    assert all(result[k] is None for k in EHR_KEYS + WAVE_KEYS)
    assert result["ehr_status"].startswith("not measured: ") and "featurize_ehr" in \
        result["ehr_status"]
    assert "MIT-BIH record not found" in result["wave_status"]


def test_prd_is_percent_rms_difference():
    x = np.array([[1.0, -1.0, 2.0, 0.0]])
    assert prd(x, x * 0.9) == pytest.approx(10.0)
