"""MLflow: experiment per modality, run logging, model registration, the champion alias.

The alias ``champion`` of ``medae-<modality>`` moves to a new version only when its tuning
reconstruction error is lower than the current champion's (or there is no champion yet).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medae.io import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

CHAMPION = "champion"
TUNING_METRIC = "best_tuning_recon"  # lower is better


def model_name(modality: str) -> str:
    return f"medae-{modality}"


def setup(params: Any, experiment: str) -> str:
    """Point MLflow at the configured store; create ``<prefix>-<experiment>`` if needed."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = params.mlflow_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = f"{params.mlflow.experiment_prefix}-{experiment}"
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        root = params.path(params.mlflow.artifact_root).resolve()
        with contextlib.suppress(MlflowException):  # created meanwhile by a concurrent run
            mlflow.create_experiment(name, artifact_location=(root / name).as_uri())
        found = mlflow.get_experiment_by_name(name)
    mlflow.set_experiment(experiment_id=found.experiment_id)
    return found.experiment_id


def flat_params(prefix: str, obj: Any) -> dict[str, str]:
    """Nested config -> ``{"model.hidden": "[256, 128]", ...}`` (MLflow params are flat).

    >>> flat_params("m", {"a": 1, "b": {"c": [2, 3]}})
    {'m.a': '1', 'm.b.c': '[2, 3]'}
    """
    if isinstance(obj, dict):
        out: dict[str, str] = {}
        for key, value in obj.items():
            out.update(flat_params(f"{prefix}.{key}", value))
        return out
    return {prefix: json.dumps(obj) if isinstance(obj, list | tuple) else str(obj)}


def write_loss_csv(history: list[dict[str, float]], path: Path) -> None:
    """Per-epoch losses as CSV (``epoch,train_loss,tuning_loss,tuning_recon``), the file
    ``dvc plots show`` draws; written atomically.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "loss.csv"
    >>> write_loss_csv([{"train_loss": 1.0, "tuning_loss": 2.0, "tuning_recon": 1.5}], p)
    >>> p.read_text().splitlines()
    ['epoch,train_loss,tuning_loss,tuning_recon', '1,1.0,2.0,1.5']
    """
    keys = ("train_loss", "tuning_loss", "tuning_recon")
    lines = [",".join(("epoch", *keys))]
    lines += [",".join([str(i), *(repr(float(h[k])) for k in keys)])
              for i, h in enumerate(history, start=1)]
    write_text_atomic(path, "\n".join(lines) + "\n")


def loss_curve_png(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("train_loss", "tuning_loss", "tuning_recon"):
        ax.plot(epochs, [h[key] for h in history], label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def reconstruction_png(original: np.ndarray, recon: np.ndarray, path: Path) -> None:
    """A few waveform windows with their reconstructions overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(4, len(original))
    fig, axes = plt.subplots(n, 1, figsize=(8, 2 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].plot(original[i], lw=0.8, label="input")
        axes[i, 0].plot(recon[i], lw=0.8, label="reconstruction")
    axes[0, 0].legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def log_model(model, modality: str):
    """Log the model (signature, input example, explicit pip requirements) and register it.

    The input example is synthetic (two all-zero rows: every value at the train mean, nothing
    observed), never patient rows: MLflow stores it in plain JSON beside the model.
    """
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    model = model.cpu().eval()
    example = np.zeros((2, model.shape.input_dim), dtype=np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(example)).numpy()
    # Explicit requirements skip MLflow's import-tracing inference (~2 s instead of 8.5 s).
    reqs = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
            f"numpy=={np.__version__}"]
    return mlflow.pytorch.log_model(
        model, name="model", signature=infer_signature(example, out),
        input_example=example, pip_requirements=reqs,
        # pickle, not MLflow's default pt2 export: pt2 keeps only forward() as a traced graph,
        # while consumers need encode() and the model's shape/config (load_encoder).
        serialization_format="pickle",
        registered_model_name=model_name(modality),
        metadata={"input_kind": model.input_kind, "latent_dim": int(model.config.latent_dim)},
    )


def promote_if_better(modality: str, version: int, metric: float) -> bool:
    """Move ``champion`` to ``version`` when it beats the current champion's tuning metric."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, name = MlflowClient(), model_name(modality)
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    if current is not None and int(current.version) != version:
        best = client.get_run(current.run_id).data.metrics.get(TUNING_METRIC)
        if best is not None and not metric < best:
            log.info("%s v%d (%s %.5f) does not beat champion v%s (%.5f); alias unchanged",
                     name, version, TUNING_METRIC, metric, current.version, best)
            return False
    client.set_registered_model_alias(name, CHAMPION, str(version))
    log.info("%s: champion -> v%d (%s %.5f)", name, version, TUNING_METRIC, metric)
    return True


def log_artifacts_dir(files: dict[str, Any]) -> None:
    """Write small artifacts (json text, bytes or a callable writing a path) and log them."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            path = Path(tmp) / name
            if callable(content):
                content(path)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(json.dumps(content, indent=2, sort_keys=True, default=str))
        mlflow.log_artifacts(tmp)


def write_pointer(path: Path, *, version: int, run_id: str, metrics: dict[str, float],
                  champion: bool, data_version: str, modality: str) -> dict[str, Any]:
    """``models/<modality>.json`` (docs/contracts.md), written atomically."""
    name = model_name(modality)
    pointer = {"model_uri": f"models:/{name}/{version}", "model_name": name,
               "version": version, "run_id": run_id, "metrics": metrics,
               "champion": champion, "data_version": data_version}
    write_json_atomic(path, pointer)
    return pointer
