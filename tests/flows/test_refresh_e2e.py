"""The nightly refresh end to end: tiny generated data, the project's own dvc.yaml in a
temporary git repository, real DVC, a real Prefect test server and real SQLite MLflow.

`evaluate` is left out (it trains its own models on MIT-BIH; tests/training covers it): the
refresh runs every stage from the raw tables to the published latents.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from flows.nightly import RefreshIncomplete, nightly_refresh, run_refresh
from medae.config import load_params
from medae.errors import UsageError
from medae.export.latents import read_manifest
from tests.flows.project import git, make_project, synth

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
STAGES = ["ingest_ehr", "clean_ehr", "featurize_ehr", "catalog_waveforms", "window_waveforms",
          "train_ehr", "train_waveforms", "pair_windows", "train_multimodal", "export_latents"]


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory, prefect_harness):
    """One complete first refresh of a fresh project; the tests below read what it left."""
    base = tmp_path_factory.mktemp("refresh")
    project = make_project(base / "proj")
    synth(project, subjects=8)
    params = load_params(project / "params.yaml", [f"dvc.remote={base / 'remote'}"])
    summary = run_refresh(params, stages=STAGES)
    return project, params, summary, base / "remote"


def head(project: Path) -> str:
    return git(project, "rev-parse", "HEAD").strip()


def files_in_head(project: Path) -> list[str]:
    return git(project, "show", "--name-only", "--format=", "HEAD").split()


def latent_table(project: Path, modality: str) -> pl.DataFrame:
    return pl.scan_parquet(f"{project / 'data' / 'latents' / modality}/").collect()


def test_first_refresh_runs_every_stage_and_pushes(refreshed):
    project, _, summary, remote = refreshed
    assert summary["ok"] is True
    assert {n: o["status"] for n, o in summary["stages"].items()} == dict.fromkeys(STAGES, "ran")
    assert "pushed" in summary["pushed"] and any(remote.rglob("*"))
    report = (project / "reports" / "refresh.md").read_text()
    assert all(f"| {s} | ran |" in report for s in STAGES)
    assert "medae-ehr version 1" in report and "## Latents written" in report
    assert summary["models"]["models/ehr.json"]["champion"] is True


def test_first_refresh_commits_dvc_lock_alone(refreshed):
    project, _, summary, _ = refreshed
    short_head = git(project, "rev-parse", "--short", "HEAD").strip()
    assert summary["lock_commit"] == f"committed {short_head}"
    assert files_in_head(project) == ["dvc.lock"]
    assert git(project, "log", "-1", "--format=%s", "--", "dvc.lock").strip() == (
        f"medae refresh: dvc.lock after {', '.join(STAGES)}")
    # what DVC wrote beside it (its .gitignore entries) is left to the user, uncommitted
    assert "?? data/" in git(project, "status", "--porcelain")
    assert f"dvc.lock in git: {summary['lock_commit']}" in (
        project / "reports" / "refresh.md").read_text()


def test_run_report_is_a_prefect_artifact(refreshed):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["medae-refresh"])))
    assert artifacts and all(a.type == "markdown" for a in artifacts)
    assert any("| export_latents | ran |" in a.data for a in artifacts)


@pytest.mark.parametrize("modality", ["ehr", "waveforms", "multimodal"])
def test_latents_follow_the_contract_with_one_row_per_window(refreshed, modality):
    project, params, summary, _ = refreshed
    table = latent_table(project, modality)
    keys = {"ehr": ["subject_id", "hadm_id", "stay_id", "window_start", "window_end"],
            "waveforms": ["subject_id", "stay_id", "record_name", "channel", "window_start",
                          "window_end", "start_s"],
            "multimodal": ["subject_id", "hadm_id", "stay_id", "window_start", "window_end",
                           "has_waveform"]}[modality]
    zcols = [c for c in table.columns if c.startswith("z_")]
    assert table.columns == keys + zcols + ["model_name", "model_version", "mlflow_run_id"]
    assert zcols == [f"z_{i:02d}" for i in range(len(zcols))] and len(zcols) >= 2
    assert all(table.schema[c] == pl.Float32 for c in zcols)
    assert table.schema["window_start"] == table.schema["window_end"] == pl.Datetime("us")
    assert table.schema["subject_id"] == pl.Int64
    assert table.select(pl.col(zcols).is_nan().any()).row(0) == (False,) * len(zcols)
    assert set(table["model_name"]) == {f"medae-{modality}"}
    if modality == "multimodal":  # EHR windows, some fused with their ecg_ii window
        assert 0 < table["has_waveform"].sum() < table.height

    folder = {"waveforms": "waveform_windows"}.get(modality, "ehr_windows")
    windows = pl.scan_parquet(f"{project / 'data' / 'features' / folder}/*.parquet")
    if modality == "waveforms":
        windows = windows.filter(pl.col("channel") == params.train_waveforms.channel)
    assert table.height == windows.select(pl.len()).collect().item() > 0
    manifest = read_manifest(project / "data" / "latents" / modality)
    assert manifest["rows"] == table.height == summary["latents"][modality]["rows"]
    assert manifest["model_uri"] == f"models:/medae-{modality}@champion"


def test_consumer_joins_ehr_latents_to_stays_on_the_keys(refreshed):
    project = refreshed[0]
    stays = pl.read_csv(project / "data/source/ehr/icu/icustays.csv.gz",
                        columns=["subject_id", "stay_id", "intime"], try_parse_dates=True)
    latents = pl.scan_parquet(f"{project / 'data' / 'latents' / 'ehr'}/")
    joined = latents.join(stays.lazy(), on=["subject_id", "stay_id"], how="inner").collect()
    assert joined.height == latents.select(pl.len()).collect().item()
    assert (joined["window_end"] > joined["intime"]).all()


def test_second_refresh_skips_every_stage(refreshed):
    project, params, _, _ = refreshed
    lock = (project / "dvc.lock").read_bytes()
    parts = {p: p.stat().st_mtime_ns for p in (project / "data/latents").rglob("*.parquet")}
    before = head(project)
    again = run_refresh(params, stages=STAGES)
    assert {n: o["status"] for n, o in again["stages"].items()} == dict.fromkeys(
        STAGES, "skipped")
    assert again["lock_commit"] == "skipped: dvc.lock unchanged" and head(project) == before
    assert (project / "dvc.lock").read_bytes() == lock
    assert {p: p.stat().st_mtime_ns for p in parts} == parts


def test_failed_push_fails_the_refresh_after_writing_the_report(refreshed, tmp_path):
    project = refreshed[0]
    blocker = tmp_path / "remote-is-a-file"
    blocker.write_text("not a folder")
    params = load_params(project / "params.yaml", [f"dvc.remote={blocker}"])
    before = head(project)
    lock = project / "dvc.lock"
    lock.write_text(lock.read_text() + "# a change git sees\n")
    with pytest.raises(RefreshIncomplete, match="dvc push FAILED") as failure:
        run_refresh(params, stages=["export_latents"])
    assert failure.value.summary["stages"]["export_latents"]["status"] == "skipped"
    assert failure.value.summary["lock_commit"] == "not committed: refresh incomplete"
    assert head(project) == before  # a failed refresh commits nothing
    git(project, "checkout", "--", "dvc.lock")
    assert "dvc push FAILED" in (project / "reports" / "refresh.md").read_text()


def test_refused_lock_commit_fails_the_refresh_with_gits_reason(refreshed):
    project, params, _, _ = refreshed
    hook = project / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'policy: no commits tonight' >&2\nexit 1\n")
    hook.chmod(0o755)
    lock = project / "dvc.lock"
    lock.write_text(lock.read_text() + "# a change git sees\n")
    before = head(project)
    try:
        with pytest.raises(RefreshIncomplete,
                           match=r"dvc\.lock commit FAILED: .*policy: no commits tonight"):
            run_refresh(params, stages=["export_latents"])
        assert head(project) == before
    finally:
        hook.unlink()
        git(project, "checkout", "--", "dvc.lock")


def test_deployment_overrides_of_stage_sections_are_refused(refreshed):
    project = refreshed[0]
    with pytest.raises(UsageError, match=r"^refresh: ingest_ehr\.shards differs from"):
        nightly_refresh(project=str(project), overrides=["ingest_ehr.shards=3"])


def test_dvc_checkout_of_an_earlier_lock_restores_the_earlier_latents(refreshed):
    project, params, _, _ = refreshed
    latents = project / "data" / "latents"
    earlier_lock = git(project, "show", "HEAD:dvc.lock").encode()
    earlier_manifest = (latents / "_manifest.json").read_bytes()

    settings = yaml.safe_load((project / "params.yaml").read_text())
    settings["export_latents"]["meds"] = True  # a new version of the latents
    (project / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    newer = run_refresh(load_params(project / "params.yaml", [
        f"dvc.remote={params.path(params.dvc.remote)}"]), stages=["export_latents"])
    assert newer["stages"]["export_latents"]["status"] == "ran"
    assert (latents / "_meds" / "ehr").is_dir()
    assert (latents / "_manifest.json").read_bytes() != earlier_manifest
    # the new data version is a commit of dvc.lock alone; the params edit stays the user's
    assert newer["lock_commit"].startswith("committed ")
    assert files_in_head(project) == ["dvc.lock"]
    assert git(project, "log", "-1", "--format=%s", "--", "dvc.lock").strip() == (
        "medae refresh: dvc.lock after export_latents")
    assert git(project, "status", "--porcelain", "params.yaml").strip() == "M params.yaml"

    git(project, "checkout", "HEAD~1", "--", "dvc.lock")  # the history: one version back
    assert (project / "dvc.lock").read_bytes() == earlier_lock
    subprocess.run([sys.executable, "-m", "dvc", "checkout", "--force", "data/latents"],
                   cwd=project, check=True, capture_output=True)
    assert (latents / "_manifest.json").read_bytes() == earlier_manifest
    assert not (latents / "_meds").exists()
