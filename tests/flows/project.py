"""A throw-away copy of the project for end-to-end refresh tests: a real git repository with
the project's own dvc.yaml, params.yaml (shrunk by overrides), DVC config and the medae code
the stages list as deps."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]

# Tiny but real: a handful of subjects, one short training epoch, two shards.
TINY_PARAMS: dict[str, Any] = {
    "executor": {"workers": 1, "progress": False},
    "ingest_ehr": {"shards": 2},
    "train_ehr": {"optim": {"epochs": 1, "batch_size": 64}, "system_metrics": False},
    "train_waveforms": {"optim": {"epochs": 1, "batch_size": 64}, "system_metrics": False},
    "train_multimodal": {"optim": {"epochs": 1, "batch_size": 64}, "system_metrics": False},
    "evaluate": {"ehr_epochs": 1, "wave_epochs": 1, "train_records": ["100"],
                 "test_records": ["118"]},
    "refresh": {"retries": 0},
}


def deep_update(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``extra`` into a copy of ``base`` (``extra`` wins).

    >>> deep_update({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}})
    {'a': {'b': 1, 'c': 3}}
    """
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


def known_overrides(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Keep only overrides whose section exists in the project's params (areas land at
    different times; an override for a key not there yet would be an unknown-key error)."""
    from medae.config import Params

    fields = Params.model_fields
    kept = {}
    for section, values in overrides.items():
        if section not in fields:
            continue
        model = fields[section].annotation
        kept[section] = {k: v for k, v in values.items() if k in model.model_fields}
    return kept


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def make_project(dest: Path, overrides: dict[str, Any] | None = None) -> Path:
    """Copy the project's pipeline definition and code into ``dest`` (a new git repo)."""
    dest.mkdir(parents=True)
    git(dest, "init", "-q")
    git(dest, "config", "user.email", "test@example.invalid")
    git(dest, "config", "user.name", "medae tests")
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy2(ROOT / name, dest / name)
    (dest / ".dvc").mkdir()
    shutil.copy2(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    shutil.copy2(ROOT / ".dvc" / ".gitignore", dest / ".dvc" / ".gitignore")
    shutil.copytree(ROOT / "medae", dest / "medae",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shared = ROOT.parent / "shared"
    if shared.exists() and not (dest.parent / "shared").exists():
        (dest.parent / "shared").symlink_to(shared)  # evaluate reads ../shared/realdata (MIT-BIH)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    tiny = deep_update(TINY_PARAMS, overrides or {})
    params = deep_update(params, known_overrides(params, tiny))
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "project")
    return dest


def synth(dest: Path, subjects: int, seed: int = 0) -> None:
    """Demo data into the project's default source folders (the real generator)."""
    medae = Path(sys.executable).parent / "medae"
    proc = subprocess.run([str(medae), "synth", "--out", str(dest / "data/source/ehr"),
                           "--subjects", str(subjects), "--seed", str(seed),
                           "--waveform-out", str(dest / "data/source/waveforms")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"medae synth failed: {proc.stderr[-2000:]}")
