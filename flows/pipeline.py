"""DVC as the one DAG: the stage graph, reproducing one stage, status, remote and push.

Prefect never keeps its own copy of the pipeline: the order and each stage's inputs and
outputs come from ``dvc.yaml`` through DVC's index, and ``dvc repro --single-item`` decides
whether a stage runs or is skipped.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from medae.errors import MedaeError
from medae.io import write_text_atomic

log = logging.getLogger("medae.refresh")

# DVC's own messages for a lock held by another process, and failures worth a retry.
TRANSIENT_MARKERS = (
    "unable to acquire lock",
    "is busy",
    "database is locked",
    "connection reset",
    "resource temporarily unavailable",
    "temporary failure",
)


class StageFailed(MedaeError):
    """A stage's command failed; ``transient`` says whether a retry may help."""

    def __init__(self, stage: str, message: str, transient: bool = False):
        self.stage, self.transient = stage, transient
        super().__init__(f"stage {stage}: {message}")


@dataclass(frozen=True)
class StageInfo:
    """One ``dvc.yaml`` stage: its upstream stages and its resolved paths."""

    name: str
    upstream: tuple[str, ...]
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    metrics: tuple[str, ...]


def load_graph(root: Path) -> list[StageInfo]:
    """The stages of ``root/dvc.yaml`` in run order (dependencies first, ties in file order).

    DVC's graph has edges from a stage to its dependency, so the run order is the topological
    order of the reversed graph.
    """
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            graph = repo.index.graph
            position = {s.name: i for i, s in enumerate(repo.index.stages)}
            ordered = nx.lexicographical_topological_sort(
                graph.reverse(copy=True), key=lambda s: position[s.name])
            return [_describe(stage, graph) for stage in ordered]
    except DvcException as exc:
        raise MedaeError(f"{root / 'dvc.yaml'}: cannot read the DVC pipeline: {exc}") from None


def _describe(stage, graph) -> StageInfo:
    outs = tuple(str(o.def_path) for o in stage.outs if not o.metric)
    metrics = tuple(str(o.def_path) for o in stage.outs if o.metric)
    upstream = tuple(sorted(s.name for s in graph.successors(stage)))
    return StageInfo(stage.name, upstream, tuple(str(d.def_path) for d in stage.deps),
                     outs, metrics)


def stage_env() -> dict[str, str]:
    """The environment for stage commands: this interpreter's ``bin`` first on PATH, so
    ``medae run`` resolves to the same installation even when the venv is not activated."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "dvc", *args]
    return subprocess.run(cmd, cwd=root, env=stage_env(), capture_output=True, text=True,
                          check=False)


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b")


def _last_error_line(output: str) -> str:
    r"""The most telling line: the stage's own ``error:`` line, else the last exception line
    of a traceback, else DVC's ``ERROR:`` line.

    >>> _last_error_line("Traceback ...\nValueError: bad\nERROR: failed to reproduce 'x'")
    'ValueError: bad'
    """
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    own = [ln for ln in lines if ln.startswith("error:")]
    raised = [ln for ln in lines if EXCEPTION_LINE.match(ln)]
    dvc = [ln for ln in lines if ln.startswith("ERROR:")]
    return (own or raised or dvc or lines or ["no output"])[-1]


def stage_log(root: Path, stage: str) -> Path:
    """Where a failed stage's whole output is kept (git-ignored, owner-only)."""
    return Path(root) / "reports" / "logs" / f"{stage}.log"


def reproduce(root: Path, stage: str, force: bool = False) -> bool:
    """``dvc repro --single-item <stage>``; returns whether the stage's command ran.

    Raises :class:`StageFailed` with the stage's own one-line error (``medae run`` prints it);
    the stage's whole output is then in :func:`stage_log`.
    """
    args = ["repro", "--single-item", stage] + (["--force"] if force else [])
    proc = _dvc(root, *args)
    output = proc.stdout + proc.stderr
    for line in output.splitlines():
        if line.strip():
            log.debug("%s | %s", stage, line)
    if proc.returncode != 0:
        # The whole output (tracebacks, DVC's messages) stays in an owner-only file: what
        # reaches Prefect's logs is the stage's own one-line error, as medae prints it.
        kept = stage_log(root, stage)
        try:
            write_text_atomic(kept, output)
        except OSError as exc:  # a full disk must not hide the stage's own error
            kept = f"not kept: {kept}: {exc.strerror or exc}"
        error = _last_error_line(output)
        log.warning("%s failed: %s (its whole output: %s)", stage, error, kept)
        transient = any(m in output.lower() for m in TRANSIENT_MARKERS)
        raise StageFailed(stage, error, transient=transient)
    stage_log(root, stage).unlink(missing_ok=True)  # an earlier failure's, now stale
    return f"Running stage '{stage}'" in output


def stale_stages(root: Path) -> set[str]:
    """Stages DVC would run now (changed deps, params or outs; never run): one ``dvc status``
    for the whole pipeline, so unchanged stages cost no ``dvc repro`` process."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            # keys are addressed relative to the current folder ("../proj/dvc.yaml:stage")
            return {key.rpartition(":")[2] for key in repo.status()}
    except DvcException as exc:
        raise MedaeError(f"{root / 'dvc.yaml'}: dvc status failed: {exc}") from None


def changed(root: Path, stage: str) -> bool:
    """Whether DVC sees changed deps, params or outs for ``stage`` (it would run)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return bool(repo.status(targets=[f"{root / 'dvc.yaml'}:{stage}"]))


def configure_remote(root: Path, url: Path) -> None:
    """Point the default remote at ``url`` for this workspace (``.dvc/config.local``, not
    committed), so the params file stays the one place where the remote is configured."""
    from dvc.repo import Repo

    try:
        url.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedaeError(f"dvc.remote {url}: cannot create the remote folder ({exc})") from None
    with Repo(str(root)) as repo, repo.config.edit("local") as conf:
        conf["remote"]["local"] = {"url": str(url)}
        conf["core"]["remote"] = "local"


def push(root: Path) -> str:
    """``dvc push`` to the default remote; returns DVC's summary line."""
    proc = _dvc(root, "push")
    if proc.returncode != 0:
        raise MedaeError(f"dvc push failed: {_last_error_line(proc.stdout + proc.stderr)}")
    return _last_error_line(proc.stdout) if proc.stdout.strip() else "pushed"
