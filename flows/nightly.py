"""The nightly refresh: every DVC stage in DVC's order, the training policy, push, the
``dvc.lock`` commit (data history), report.

``medae refresh`` calls :func:`run_refresh`; the ``prefect.yaml`` deployment runs
:func:`nightly_refresh` at 02:00. Both take the workspace's refresh lock first, so a second
refresh fails fast and changes nothing.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows import PROJECT_ROOT, report
from flows.console import medae_errors_in_one_line
from flows.groups import GROUP_FLOWS, check_selected, declared_stages, make_plan
from flows.lock import refresh_lock
from flows.overrides import FLOW_SECTIONS, refuse_stage_overrides
from flows.policy import TRAINING_STAGES
from medae.config import load_params
from medae.errors import MedaeError, UsageError
from medae.io import write_text_atomic
from tasks.stages import commit_lock, publish_report, push

PUSH_FAILED = "dvc push FAILED"
COMMIT_FAILED = "dvc.lock commit FAILED"


class RefreshIncomplete(MedaeError):
    """Some stage failed, is missing or was blocked; ``summary`` holds the whole outcome."""

    def __init__(self, message: str, summary: dict[str, Any]):
        self.summary = summary
        super().__init__(message)


@flow(name="nightly_refresh", validate_parameters=False)
def nightly_refresh(stages: list[str] | None = None, force: bool = False,
                    project: str | None = None,
                    overrides: list[str] | None = None) -> dict[str, Any]:
    """Refresh everything that changed: EHR, waveforms, training, export; push; report.

    ``stages``: only these DVC stages (default all); ``force``: re-run them even when DVC
    says they are up to date; ``project``: the workspace (default: this checkout).
    """
    params = load_params(Path(project or PROJECT_ROOT) / "params.yaml", overrides or [])
    refuse_stage_overrides(params)  # a deployment run's overrides, like medae refresh --set
    started, t0 = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
    with refresh_lock(params.root):
        plan = make_plan(params, stages, force, overrides or [])
        done: dict[str, str] = {}
        outcomes: list[dict[str, Any]] = []
        for group_flow in GROUP_FLOWS:
            results = group_flow(plan, done)
            outcomes += results
            done.update({o["stage"]: o["status"] for o in results})
        ok = not any(o["status"] in report.NOT_OK for o in outcomes)
        pushed = push_data(params, ok)
        ok = ok and not pushed.startswith(PUSH_FAILED)
        committed = commit_history(params, ok, outcomes, started)
        ok = ok and not committed.startswith(COMMIT_FAILED)
        summary = summarise(params, plan, outcomes, ok=ok, pushed=pushed, committed=committed,
                            started=started, seconds=time.perf_counter() - t0)
    if not ok:
        raise RefreshIncomplete(incomplete_message(summary), summary)
    return summary


def push_data(params: Any, ok: bool) -> str:
    """Push cached outputs to the configured remote after a complete refresh."""
    if not params.refresh.push:
        return "off (refresh.push: false)"
    if not ok:
        return "not pushed: refresh incomplete"
    state = push(str(params.root), str(params.path(params.dvc.remote)), return_state=True)
    if state.is_failed():  # still write the report; the refresh then fails on this line
        return f"{PUSH_FAILED}: {state.result(raise_on_failure=False)}"
    return state.result()


def commit_history(params: Any, ok: bool, outcomes: list[dict[str, Any]], started: str) -> str:
    """After a complete refresh (pushed, so the commit never names data the remote lacks),
    commit ``dvc.lock`` alone with the stages that ran; a failed refresh commits nothing."""
    if not params.refresh.commit_lock:
        return "off (refresh.commit_lock: false)"
    if not ok:
        return "not committed: refresh incomplete"
    ran = [o["stage"] for o in outcomes if o["status"] == report.RAN]
    state = commit_lock(str(params.root), ran, started, return_state=True)
    if state.is_failed():
        return f"{COMMIT_FAILED}: {state.result(raise_on_failure=False)}"
    return state.result()


def summarise(params: Any, plan: dict[str, Any], outcomes: list[dict[str, Any]], *, ok: bool,
              pushed: str, committed: str, started: str, seconds: float) -> dict[str, Any]:
    """Write the markdown report (file + Prefect artifact) and return the JSON summary."""
    root = params.root
    metrics = [m for s in plan["stages"].values() for m in s["metrics"]]
    pointers = [p for s in TRAINING_STAGES if s in plan["stages"]
                for p in plan["stages"][s]["metrics"] + plan["stages"][s]["outs"]]
    context = report.collect_context(root, metrics, pointers,
                                     params.path(params.export_latents.out))
    markdown = report.render_markdown(
        [report.StageOutcome(**o) for o in outcomes], context, ok=ok, started=started,
        seconds=seconds, pushed=pushed, committed=committed)
    report_path = params.path(params.refresh.report)
    write_text_atomic(report_path, markdown)
    publish_report(markdown)
    get_run_logger().info("refresh %s in %.1fs; report: %s",
                          "complete" if ok else "INCOMPLETE", seconds, report_path)
    return {"ok": ok, "started": started, "seconds": round(seconds, 2), "pushed": pushed,
            "lock_commit": committed, "report": str(report_path),
            "stages": {o["stage"]: o for o in outcomes}, **context}


def incomplete_message(summary: dict[str, Any]) -> str:
    """One line naming every stage that is missing, failed or blocked."""
    parts = []
    for status in report.NOT_OK:
        names = [n for n, o in summary["stages"].items() if o["status"] == status]
        if names:
            parts.append(f"{status}: {', '.join(names)}")
    failed = [f"{n} ({o['detail']})" for n, o in summary["stages"].items()
              if o["status"] == report.FAILED]
    why = f"; first failure: {failed[0]}" if failed else ""
    if summary["pushed"].startswith(PUSH_FAILED):
        parts.append(summary["pushed"])
    if summary["lock_commit"].startswith(COMMIT_FAILED):
        parts.append(summary["lock_commit"])
    return f"refresh incomplete - {'; '.join(parts)}{why}; report: {summary['report']}"


def flow_overrides(params: Any) -> list[str]:
    """The caller's view of the flow's own sections as ``--set`` items (JSON is YAML)."""
    items = []
    for section in FLOW_SECTIONS:
        for key, value in getattr(params, section).model_dump(mode="json").items():
            items.append(f"{section}.{key}={json.dumps(value)}")
    return items


def run_refresh(params: Any, stages: list[str] | None = None,
                force: bool = False) -> dict[str, Any]:
    """Run the nightly flow once, now, on the workspace of ``params`` (``medae refresh``).

    The refresh lock is taken before Prefect starts, so a concurrent refresh fails in well
    under a second. Stage commands read ``params.yaml`` (DVC tracks it), so ``params`` may
    differ from it only in the flow's own sections (``refresh``, ``dvc``); any other
    difference (``--set train_ehr...``, another ``--params`` file) is a :class:`UsageError`.
    """
    root = params.root
    if not (root / "dvc.yaml").exists():
        raise UsageError(f"{root}: no dvc.yaml here; run medae refresh in the project folder")
    refuse_stage_overrides(params)
    check_selected(stages, declared_stages(root))  # a typo fails before Prefect starts
    medae_errors_in_one_line()
    with refresh_lock(root):
        return nightly_refresh(stages=stages, force=force, project=str(root),
                               overrides=flow_overrides(params))
