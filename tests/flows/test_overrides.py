"""`medae refresh --set` / `--params`: a stage parameter the stages would never see is refused
(exit 2, one line saying why and what to do) before anything starts; the flow's own sections
pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.overrides import refuse_stage_overrides
from medae.config import load_params
from medae.errors import UsageError
from tests.flows.project import ROOT

MEDAE = str(Path(sys.executable).parent / "medae")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The project's dvc.yaml and params.yaml: enough for the refresh to reach its checks."""
    root = tmp_path / "proj"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        (root / name).write_bytes((ROOT / name).read_bytes())
    return root


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def medae_refresh(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MEDAE, "refresh", *args], cwd=root, capture_output=True, text=True,
                          timeout=120)


def test_cli_refuses_a_stage_override_and_says_to_edit_params_yaml(project: Path):
    before = snapshot(project)
    proc = medae_refresh(project, "--set", "refresh.commit_lock=false",
                         "--set", "ingest_ehr.shards=3")
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: refresh: ingest_ehr.shards differs from "
                                f"{project / 'params.yaml'} (--set / --params)")
    assert "`dvc repro`, which reads params.yaml" in errors[0]
    assert "edit params.yaml instead" in errors[0]
    assert errors[0].endswith("A refresh takes --set only for refresh.*, dvc.*")
    assert snapshot(project) == before  # no lock file, no report, params.yaml untouched


def test_cli_refuses_another_params_file_whose_stage_sections_differ(project: Path):
    settings = yaml.safe_load((project / "params.yaml").read_text())
    settings["export_latents"]["meds"] = not settings["export_latents"]["meds"]
    settings["mlflow"]["tracking_uri"] = "sqlite:///elsewhere.db"
    (project / "nightly.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    proc = medae_refresh(project, "--params", "nightly.yaml")
    assert proc.returncode == 2, proc.stderr
    assert "error: refresh: export_latents.meds, mlflow.tracking_uri differ from" in proc.stderr


@pytest.mark.parametrize("override", ["export_latents.meds=true",
                                      "mlflow.tracking_uri=sqlite:///other.db",
                                      "executor.workers=1"])
def test_sections_that_stages_read_are_refused(project: Path, override: str):
    key = override.partition("=")[0]
    with pytest.raises(UsageError, match=rf"^refresh: {key} differs from"):
        refuse_stage_overrides(load_params(project / "params.yaml", [override]))


def test_the_flows_own_sections_pass(project: Path, tmp_path: Path):
    settings = yaml.safe_load((project / "params.yaml").read_text())
    settings["refresh"]["training"] = "never"
    (project / "nightly.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    refuse_stage_overrides(load_params(project / "nightly.yaml", [
        "refresh.commit_lock=false", "refresh.push=false", f"dvc.remote={tmp_path / 'r'}"]))
