"""Prefect tasks: reproduce one DVC stage, decide training, push, commit dvc.lock, publish the
report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from flows import history, pipeline, policy


def is_transient(task_, task_run, state) -> bool:
    """Prefect retry condition: retry only failures that a second try may fix (a lock held,
    a dropped connection); a bad input or a bug fails at once."""
    exc = state.data if isinstance(state.data, BaseException) else None
    return isinstance(exc, pipeline.StageFailed) and exc.transient


@task(name="stage", retry_condition_fn=is_transient)
def reproduce_stage(root: str, stage: str, force: bool = False,
                    known_unchanged: bool = False) -> bool:
    """``dvc repro --single-item <stage>``: True when the stage ran, False when DVC skipped it.

    ``known_unchanged``: DVC's status at the start of the refresh saw no change in this stage
    and none of its upstream stages has run since, so DVC would skip it: no process started.
    Named after the stage at call time (``reproduce_stage.with_options(name=stage)``).
    """
    if known_unchanged and not force:
        return False
    return pipeline.reproduce(Path(root), stage, force=force)


@task(name="training-policy")
def training_decision(root: str, stage: str, params: Any,
                      maybe_changed: bool = True) -> policy.TrainingDecision:
    """Apply ``refresh.training`` to one training stage, looking at DVC and the registry."""
    cfg = params.refresh
    age = policy.champion_age_days(params, policy.TRAINING_STAGES[stage])
    data_changed = (cfg.training == "if_needed" and age is not None and maybe_changed
                    and pipeline.changed(Path(root), stage))
    return policy.decide_training(cfg.training, age, data_changed, cfg.retrain_every_days)


@task(name="dvc-push")
def push(root: str, remote: str) -> str:
    """Point the workspace's default remote at ``remote``, then send every cached output."""
    pipeline.configure_remote(Path(root), Path(remote))
    return pipeline.push(Path(root))


@task(name="commit-dvc-lock")
def commit_lock(root: str, ran: list[str], started: str) -> str:
    """Commit ``dvc.lock`` alone to git when this refresh changed it (the data history)."""
    return history.commit_lock(Path(root), ran, started)


@task(name="run-report")
def publish_report(markdown: str) -> None:
    """The run report as a Prefect markdown artifact (Artifacts page, key medae-refresh)."""
    create_markdown_artifact(markdown, key="medae-refresh",
                             description="medae nightly refresh: stages, rows, DQ, models")
