"""Project params shrunk to tiny CPU runs, pointed at a tmp folder with its own MLflow store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medae.config import load_params
from tests.training.tables import write_ehr, write_linked_waveforms, write_waveforms

TINY_OPTIM = ["optim.epochs=3", "optim.batch_size=32", "optim.lr=0.003", "optim.device=cpu",
              "system_metrics=false"]


def tiny_params(root: Path, *extra: str):
    """The production params.yaml with paths into ``root`` and tiny models and epochs."""
    sets = [f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db",
            f"mlflow.artifact_root={root}/mlartifacts",
            f"train_ehr.features={root}/ehr_windows", f"train_ehr.stats={root}/ehr_stats.json",
            f"train_ehr.pointer={root}/models/ehr.json",
            f"train_ehr.checkpoint_dir={root}/checkpoints",
            "train_ehr.model={kind: denoising, hidden: [32], latent_dim: 4}",
            f"train_waveforms.features={root}/waveform_windows",
            f"train_waveforms.pointer={root}/models/waveforms.json",
            f"train_waveforms.checkpoint_dir={root}/checkpoints",
            f"train_waveforms.splits={root}/no_splits.parquet",
            "train_waveforms.model={kind: conv1d, channels: [4, 8], latent_dim: 4}"]
    sets += [f"train_ehr.{s}" for s in TINY_OPTIM] + [f"train_waveforms.{s}" for s in TINY_OPTIM]
    return load_params(Path(__file__).resolve().parents[2] / "params.yaml", [*sets, *extra])


def multimodal_params(root: Path, *extra: str):
    """:func:`tiny_params` with ``train_multimodal`` on the linked tiny tables in ``root``
    (``pair_windows`` writing into ``root``: run it before the training stage)."""
    sets = [f"ehr_features={root}/ehr_windows", f"ehr_stats={root}/ehr_stats.json",
            f"wave_features={root}/linked_waveform_windows",
            f"pointer={root}/models/multimodal.json", f"checkpoint_dir={root}/checkpoints",
            f"loss_csv={root}/loss_multimodal.csv", f"splits={root}/no_splits.parquet",
            "model={kind: multimodal_vae, hidden: [32], latent_dim: 4}", *TINY_OPTIM]
    pairing = [f"out={root}/paired_windows", f"wave_only={root}/wave_only_windows.parquet",
               f"cache={root}/cache/pair_windows"]
    return tiny_params(root, *(f"train_multimodal.{s}" for s in sets),
                       *(f"pair_windows.{s}" for s in pairing), *extra)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """EHR and waveform windows written once per session (read-only for the tests)."""
    root = tmp_path_factory.mktemp("tiny_data")
    ehr = write_ehr(root / "ehr_windows", root / "ehr_stats.json")
    write_waveforms(root / "waveform_windows")
    write_linked_waveforms(root / "linked_waveform_windows", ehr)
    return root


@pytest.fixture
def workdir(tmp_path: Path, tiny_data: Path, mlflow_template: Path) -> Path:
    """A tmp project folder: links to the session's tiny tables, its own MLflow store."""
    for name in ("ehr_windows", "ehr_stats.json", "waveform_windows", "linked_waveform_windows"):
        (tmp_path / name).symlink_to(tiny_data / name)
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    return tmp_path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models train faster on one thread (no intra-op sync on a shared 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
