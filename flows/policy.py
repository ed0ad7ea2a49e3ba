"""The refresh's training policy: when a training stage runs, is forced, or is held back."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Training stages and the modality (registered model ``medae-<modality>``) each one trains.
TRAINING_STAGES = {"train_ehr": "ehr", "train_waveforms": "waveforms",
                   "train_multimodal": "multimodal"}


@dataclass(frozen=True)
class TrainingDecision:
    """``run``: hand the stage to DVC; ``force``: even if DVC thinks it is up to date."""

    run: bool
    force: bool
    reason: str


def decide_training(policy: str, champion_age_days: float | None, data_changed: bool,
                    retrain_every_days: float) -> TrainingDecision:
    """Apply ``refresh.training`` to one training stage.

    ``if_needed`` trains when there is no champion, or when the training data changed and the
    champion is at least ``retrain_every_days`` old; ``always`` forces a run; ``never`` holds.

    >>> decide_training("if_needed", None, False, 7).force
    True
    >>> print(decide_training("if_needed", 2.0, True, 7).reason.replace(": the", ":\\nthe"))
    training data changed, but the champion is 2.0 days old (retrain_every_days: 7):
    the new data is encoded by that champion; --set refresh.training=always retrains now
    >>> decide_training("if_needed", 9.0, True, 7).run
    True
    """
    if policy == "always":
        return TrainingDecision(True, True, "refresh.training is 'always'")
    if policy == "never":
        return TrainingDecision(False, False, "refresh.training is 'never'")
    if champion_age_days is None:
        return TrainingDecision(True, True, "no champion model yet")
    if not data_changed:
        return TrainingDecision(True, False, "up to date unless DVC sees a change")
    if champion_age_days >= retrain_every_days:
        return TrainingDecision(True, False, "training data changed and the champion is "
                                f"{champion_age_days:.1f} days old")
    # Said in full: a new source (real data after the demo's) is otherwise encoded by a
    # model that never saw it, which is easy to miss.
    return TrainingDecision(False, False, f"training data changed, but the champion is "
                            f"{champion_age_days:.1f} days old (retrain_every_days: "
                            f"{retrain_every_days:g}): the new data is encoded by that "
                            "champion; --set refresh.training=always retrains now")


def decide_evaluation(policy: str, trained_now: bool, evaluated_before: bool) -> str | None:
    """Apply ``refresh.evaluate`` to a changed ``evaluate`` stage: ``None`` lets DVC run it,
    else the reason it is held.

    >>> decide_evaluation("with_training", trained_now=False, evaluated_before=True)
    'no model was trained in this refresh (refresh.evaluate: with_training)'
    >>> decide_evaluation("with_training", trained_now=False, evaluated_before=False) is None
    True
    """
    if policy == "never":
        return "refresh.evaluate is 'never'"
    if policy == "with_training" and evaluated_before and not trained_now:
        return "no model was trained in this refresh (refresh.evaluate: with_training)"
    return None


def champion_age_days(params: Any, modality: str) -> float | None:
    """Days since the champion's MLflow run started; ``None`` when there is no champion."""
    from mlflow.tracking import MlflowClient

    from medae.errors import MedaeError
    from medae.export.latents import resolve_alias

    uri = params.mlflow_uri()
    sqlite = "sqlite:///"
    if uri.startswith(sqlite) and not Path(uri[len(sqlite):]).exists():
        return None  # no registry yet: spare the MLflow import (seconds) in the flow process
    try:
        ref = resolve_alias(uri, f"medae-{modality}", params.export_latents.alias)
    except MedaeError:
        return None
    started_ms = MlflowClient(tracking_uri=uri).get_run(ref.run_id).info.start_time
    return (time.time() - started_ms / 1000) / 86400
