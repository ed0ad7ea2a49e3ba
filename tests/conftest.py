"""Shared fixtures: where the real open data lives, and a project-root params loader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("MEDAE_REALDATA", ROOT.parent / "shared" / "realdata")).resolve()


def has_cuda() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    if not any("gpu" in item.keywords for item in items):
        return
    if not has_cuda():
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shared real data folder (MIMIC-IV demo, MIT-BIH, MIMIC waveforms)."""
    if not REALDATA.is_dir():
        pytest.fail(f"real data not found at {REALDATA}; set MEDAE_REALDATA")
    return REALDATA


@pytest.fixture(scope="session")
def mimic_demo(realdata: Path) -> Path:
    return realdata / "mimic-iv-demo-2.2"


@pytest.fixture(scope="session")
def physionet(realdata: Path) -> Path:
    return realdata / "physionet"


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty, migrated MLflow SQLite store (creating one costs 5-13 s; copying it, ms)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path
