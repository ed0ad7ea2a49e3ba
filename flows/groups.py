"""Per-group flows (EHR, waveforms, training, export) and the step that runs one stage.

A *plan* is a JSON-able dict made once per refresh from DVC's graph (:func:`make_plan`): the
stages in DVC's order, each with its upstream stages and outputs. Groups only partition that
order for readability in the Prefect UI; the order itself is DVC's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger

from flows import pipeline, policy, report
from flows.report import BLOCKED, FAILED, HELD, MISSING, NOT_OK, RAN, SKIPPED, StageOutcome
from medae.config import load_params
from medae.errors import ConfigError, UsageError
from medae.stages import registry
from tasks.stages import reproduce_stage, training_decision

EVALUATE = "evaluate"  # the stage refresh.evaluate applies to
GROUPS: dict[str, tuple[str, ...]] = {
    "ehr": ("ingest_ehr", "clean_ehr", "featurize_ehr"),
    "waveforms": ("catalog_waveforms", "window_waveforms"),
    "train": ("train_ehr", "train_waveforms", "pair_windows", "train_multimodal", "evaluate"),
    "export": ("export_latents",),
}


def group_of(stage: str) -> str:
    for group, members in GROUPS.items():
        if stage in members:
            return group
    raise ConfigError(f"dvc.yaml: stage '{stage}' belongs to no refresh group; add it to "
                      f"flows.groups.GROUPS")


def check_groups(graph: list[pipeline.StageInfo]) -> None:
    """Every stage belongs to a group, and no group needs a stage of a later group."""
    rank = list(GROUPS)
    for info in graph:
        for up in info.upstream:
            if rank.index(group_of(up)) > rank.index(group_of(info.name)):
                raise ConfigError(f"dvc.yaml: {info.name} depends on {up}, which runs in a "
                                  f"later refresh group; fix flows.groups.GROUPS")


def declared_stages(root: Path) -> list[str]:
    """The stage names of ``root/dvc.yaml``, in file order (no DVC import: instant)."""
    return list(yaml.safe_load((Path(root) / "dvc.yaml").read_text(encoding="utf-8"))["stages"])


def check_selected(selected: list[str] | None, names: list[str]) -> None:
    """Refuse stage names ``dvc.yaml`` does not declare (a usage error, exit 2).

    >>> check_selected(["ingest"], ["ingest_ehr", "clean_ehr"])
    Traceback (most recent call last):
    ...
    medae.errors.UsageError: unknown stage(s) ingest; dvc.yaml has: ingest_ehr, clean_ehr
    """
    unknown = sorted(set(selected or []) - set(names))
    if unknown:
        raise UsageError(f"unknown stage(s) {', '.join(unknown)}; dvc.yaml has: "
                         f"{', '.join(names)}")


def make_plan(params: Any, selected: list[str] | None, force: bool,
              overrides: list[str]) -> dict[str, Any]:
    """Read DVC's graph and check that the groups, run in order, respect it."""
    root = params.root
    graph = pipeline.load_graph(root)
    names = [s.name for s in graph]
    check_selected(selected, names)
    check_groups(graph)
    return {
        "root": str(root),
        "force": force,
        "overrides": overrides,
        "order": names,
        "selected": list(selected) if selected else names,
        "stale": sorted(pipeline.stale_stages(root)),
        "stages": {s.name: {"upstream": list(s.upstream), "outs": list(s.outs),
                            "metrics": list(s.metrics)} for s in graph},
    }


def run_group(plan: dict[str, Any], group: str, done: dict[str, str]) -> list[dict[str, Any]]:
    """Run the group's selected stages in DVC order; returns their outcomes as dicts."""
    params = load_params(Path(plan["root"]) / "params.yaml", plan["overrides"])
    registered = registry()
    statuses = dict(done)
    outcomes = []
    for stage in plan["order"]:
        if group_of(stage) != group or stage not in plan["selected"]:
            continue
        outcome = run_one(plan, stage, statuses, registered, params)
        statuses[stage] = outcome.status
        outcomes.append(outcome.to_dict())
    return outcomes


def run_one(plan: dict[str, Any], stage: str, statuses: dict[str, str],
            registered: dict[str, str], params: Any) -> StageOutcome:
    """One stage: missing / blocked / held by policy, else reproduced through DVC."""
    logger = get_run_logger()
    root = plan["root"]
    if stage not in registered:
        logger.warning("%s: not registered in medae (medae stages); not run", stage)
        return StageOutcome(stage, MISSING, detail="stage not registered in medae yet")
    bad = [u for u in plan["stages"][stage]["upstream"] if statuses.get(u) in NOT_OK]
    if bad:
        return StageOutcome(stage, BLOCKED, detail=f"upstream not done: {', '.join(bad)}")
    force = plan["force"]
    upstream_ran = any(statuses.get(u) == RAN for u in plan["stages"][stage]["upstream"])
    unchanged = stage not in plan["stale"] and not upstream_ran
    if stage in policy.TRAINING_STAGES:
        decision = training_decision.with_options(name=f"{stage}-policy")(
            root, stage, params, maybe_changed=not unchanged)
        # held although its data changed (if_needed): worth a warning; `never` is a choice
        held_on_change = not decision.run and params.refresh.training == "if_needed"
        (logger.warning if held_on_change else logger.info)("%s: %s", stage, decision.reason)
        if not decision.run:
            return StageOutcome(stage, HELD, detail=decision.reason)
        force = force or decision.force
    if stage == EVALUATE and not unchanged and not force:
        trained = any(statuses.get(t) == RAN for t in policy.TRAINING_STAGES)
        evaluated = all((Path(root) / m).exists() for m in plan["stages"][stage]["metrics"])
        held = policy.decide_evaluation(params.refresh.evaluate, trained, evaluated)
        if held:
            logger.info("%s: held - %s", stage, held)
            return StageOutcome(stage, HELD, detail=held)
    task = reproduce_stage.with_options(
        name=stage, retries=params.refresh.retries,
        retry_delay_seconds=params.refresh.retry_delay_s)
    t0 = time.perf_counter()
    state = task(root, stage, force, known_unchanged=unchanged, return_state=True)
    seconds = round(time.perf_counter() - t0, 2)
    if state.is_failed():
        exc = state.result(raise_on_failure=False)
        logger.error("%s failed: %s", stage, exc)
        return StageOutcome(stage, FAILED, seconds, detail=str(exc))
    ran = state.result()
    rows = report.output_rows(Path(root), tuple(plan["stages"][stage]["outs"]))
    return StageOutcome(stage, RAN if ran else SKIPPED, seconds, rows=rows,
                        detail="" if ran else "up to date (DVC)")


@flow(name="ehr", validate_parameters=False)
def ehr_refresh(plan: dict[str, Any], done: dict[str, str]) -> list[dict[str, Any]]:
    """MIMIC tables -> typed Parquet -> MEDS event store -> per-stay windows."""
    return run_group(plan, "ehr", done)


@flow(name="waveforms", validate_parameters=False)
def waveforms_refresh(plan: dict[str, Any], done: dict[str, str]) -> list[dict[str, Any]]:
    """WFDB records -> catalog -> quality-checked windows and beats."""
    return run_group(plan, "waveforms", done)


@flow(name="train", validate_parameters=False)
def train_refresh(plan: dict[str, Any], done: dict[str, str]) -> list[dict[str, Any]]:
    """Autoencoders per modality under the training policy (champion alias in MLflow), and
    the evaluation of what such latents are worth."""
    return run_group(plan, "train", done)


@flow(name="export", validate_parameters=False)
def export_refresh(plan: dict[str, Any], done: dict[str, str]) -> list[dict[str, Any]]:
    """Champion latents -> data/latents/<modality>/ (the product)."""
    return run_group(plan, "export", done)


GROUP_FLOWS = (ehr_refresh, waveforms_refresh, train_refresh, export_refresh)
