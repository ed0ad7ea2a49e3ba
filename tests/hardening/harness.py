"""Run medae stages the way users do (``python -m medae.cli run <stage>`` in a subprocess) in a
throw-away project folder, and look at what they left behind.

Shared by the broken-input corpus, the crash tests and the sentinel-patient test.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Small and single-process: the corpus runs dozens of stages inside the test budget.
FAST_SETTINGS = ("executor.workers=1", "executor.progress=false", "ingest_ehr.shards=2")
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
TEMP_NAME = re.compile(r"^\..*(\.tmp|\.old)")


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a stage run: no params file of ours, quiet third parties."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDAE_", "PREFECT_"))}
    env.update({"PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra})
    return env


def missing_stages(stages: tuple[str, ...]) -> list[str]:
    """Stages not registered yet, or whose module is not importable yet (being written)."""
    from medae.stages import registry

    known = registry()
    missing = []
    for stage in stages:
        target = known.get(stage)
        if target is None or importlib.util.find_spec(target.partition(":")[0]) is None:
            missing.append(stage)
    return missing


@dataclass
class Run:
    stage: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """stderr lines that are not log records (the CLI's ``error:`` line, tracebacks)."""
        return [line for line in self.stderr.splitlines()
                if line.strip() and not LOG_LINE.match(line)]


def run_stage(project: Path, stage: str, *sets: str, timeout: float = 120,
              env: dict[str, str] | None = None) -> Run:
    args = [sys.executable, "-m", "medae.cli", "run", stage]
    for item in (*FAST_SETTINGS, *sets):
        args += ["--set", item]
    res = subprocess.run(args, cwd=project, capture_output=True, text=True, timeout=timeout,
                         env=env or cli_env())
    return Run(stage, res.returncode, res.stdout, res.stderr)


def run_chain(project: Path, stages: tuple[str, ...], *sets: str) -> list[Run]:
    """Run ``stages`` in order; stop after the first that fails (as DVC would)."""
    runs = []
    for stage in stages:
        runs.append(run_stage(project, stage, *sets))
        if runs[-1].returncode != 0:
            break
    return runs


def output_files(project: Path) -> list[Path]:
    """Every file the stages own: all of the project except the source data."""
    source = project / "data" / "source"
    return sorted(p for p in project.rglob("*")
                  if p.is_file() and source not in p.parents)


def snapshot(project: Path) -> dict[str, str]:
    """Relative path -> sha256 of every output file."""
    return {str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in output_files(project)}


def leftovers(project: Path) -> list[str]:
    """Temporary files or folders a stage left behind (a half-written output)."""
    return sorted(str(p.relative_to(project)) for p in project.rglob(".*")
                  if TEMP_NAME.match(p.name))


def unreadable_parquet(project: Path) -> list[str]:
    """Output Parquet files that do not read back."""
    import polars as pl

    bad = []
    for path in output_files(project):
        if path.suffix == ".parquet":
            try:
                pl.read_parquet(path)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                bad.append(f"{path.relative_to(project)}: {type(exc).__name__}")
    return bad
