"""Crash safety of the stages that train, evaluate and export: SIGKILL them at chosen points
(the same audit-hook killer as ``test_crash``), then check what a reader sees and that a
re-run converges to what an uninterrupted run gives.

These stages write MLflow state (a SQLite registry, run folders with fresh run ids) besides
their DVC outputs, so "identical" is checked on what a consumer uses:

- ``train_*``: after a kill the pointer ``models/<modality>.json`` is the previous one or a
  complete new one, and the ``champion`` alias still loads and encodes; after the re-run the
  champion's weights, the pointer's metrics and the loss CSV equal an uninterrupted run's
  (exact resume from the last published checkpoint);
- ``export_latents``: every latent file is the previous or the new version, each table folder
  still scans, and the re-run's tables and manifest are byte-identical to an uninterrupted run's;
- ``evaluate``: the report is the previous one or the new one, and the re-run's is identical.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest

from tests.hardening import corpus, harness
from tests.hardening.test_crash import normalised, readable_scans, run_and_kill

# Tiny models and a split that gives the few valid-project subjects a tuning set.
TINY_PARAMS = """\
clean_ehr:
  train_fraction: 0.5
  tuning_fraction: 0.25
train_ehr:
  model: {kind: mlp, hidden: [32], latent_dim: 8}
  optim: {epochs: 2, patience: 2}
  system_metrics: false
train_waveforms:
  model: {kind: conv1d, channels: [4, 8], latent_dim: 8}
  optim: {epochs: 2, patience: 2}
  system_metrics: false
train_multimodal:
  model: {kind: multimodal_vae, hidden: [16], latent_dim: 4}
  optim: {epochs: 2, patience: 2}
  system_metrics: false
evaluate:
  mitdb: {mitdb}
  ehr_epochs: 2
  ehr_max_train_windows: 200
  train_records: ["100", "101"]
  tuning_records: ["101"]
  test_records: ["118"]
  wave_max_train_beats: 300
  wave_epochs: 2
  probe_max_iter: 200
"""
TIMEOUT = 600  # s per stage run: generous, CI machines may be busy
EHR_CHAIN = ("ingest_ehr", "clean_ehr", "featurize_ehr")
MLFLOW_STATE = ("mlflow.db", "mlartifacts/", "models/checkpoints/")
# The pointer fields that name MLflow bookkeeping (fresh run ids, version numbers).
BOOKKEEPING = ("run_id", "model_uri", "version", "champion")


@pytest.fixture(scope="module")
def trained_project(valid_project, physionet, tmp_path_factory) -> Path:
    """The valid project with both models trained once and their latents exported."""
    missing = harness.missing_stages(("train_ehr", "train_waveforms", "train_multimodal",
                                      "export_latents"))
    if missing:
        pytest.skip(f"stage not registered yet: {', '.join(missing)}")
    project = tmp_path_factory.mktemp("trained") / "project"
    shutil.copytree(valid_project, project, symlinks=True)
    (project / "params.yaml").write_text(TINY_PARAMS.replace("{mitdb}", str(physionet / "mitdb")))
    chain = ("clean_ehr", "featurize_ehr", "train_ehr", "train_waveforms", "pair_windows",
             "train_multimodal", "export_latents")
    for run in harness.run_chain(project, chain):
        assert run.returncode == 0, f"{run.stage}: {run.stderr[-1500:]}"
    return project


def prepared_copy(trained: Path, dest: Path) -> Path:
    """A copy of the trained project whose EHR windows changed (the last third of the lab rows
    dropped: enough to reach rows inside ICU stays)."""
    shutil.copytree(trained, dest, symlinks=True)
    corpus.edit_lines(dest, "hosp/labevents", lambda lines: lines[: len(lines) * 2 // 3])
    for run in harness.run_chain(dest, EHR_CHAIN):
        assert run.returncode == 0, run.stderr[-1000:]
    return dest


def without_mlflow(digests: dict[str, str]) -> dict[str, str]:
    return {rel: d for rel, d in digests.items() if not rel.startswith(MLFLOW_STATE)}


def without_caches(digests: dict[str, str]) -> dict[str, str]:
    """Without export's cache (``export_latents.cache``): what it read of its inputs, keyed by
    file stamps (inodes, times), which differ between copies of a project."""
    return {rel: d for rel, d in digests.items() if not rel.startswith("data/cache/")}


def published(digests: dict[str, str]) -> dict[str, str]:
    """Outputs a consumer reads. Export's ``_fingerprints.json`` is its own journal: it is
    cleared on purpose before each table swap, so after a kill it may hold a third version (the
    re-run then re-encodes that table; convergence is checked separately)."""
    return {rel: d for rel, d in without_caches(without_mlflow(digests)).items()
            if not rel.endswith("_fingerprints.json")}


def pointer_view(project: Path, modality: str) -> dict:
    """The pointer without MLflow bookkeeping: what the run trained and measured."""
    pointer = json.loads((project / "models" / f"{modality}.json").read_text())
    return {k: v for k, v in pointer.items() if k not in BOOKKEEPING}


def champion_digest(project: Path, modality: str) -> str:
    """sha256 of the ``champion`` model's weights, loaded the way export loads it."""
    import mlflow
    import torch

    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # models:/ resolves through the registry, not the tracking URI
    model = mlflow.pytorch.load_model(f"models:/medae-{modality}@champion")
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def both_cores(jobs):
    """Run the zero-argument callables two at a time (each runs a stage in a subprocess of its
    own project copy), in order of results: the suite's wall time halves on CI's 2 cores."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return [f.result() for f in [pool.submit(job) for job in jobs]]


def reference_and_kills(prepared: Path, stage: str, kills, tmp_path: Path):
    """An uninterrupted run of ``stage`` on a copy of ``prepared``, and one killed copy per
    kill point; returns the reference folder and the killed folders (kill points reached)."""
    reference = tmp_path / "reference"
    copies = {kill: tmp_path / f"killed_{kill[0]}_{kill[1]}" for kill in kills}
    for dest in (reference, *copies.values()):
        shutil.copytree(prepared, dest, symlinks=True)
    jobs = [lambda: harness.run_stage(reference, stage, timeout=TIMEOUT)]
    jobs += [lambda d=dest, k=kill: run_and_kill(d, stage, *k, timeout=TIMEOUT)
             for kill, dest in copies.items()]
    run, *killed = both_cores(jobs)
    assert run.returncode == 0, run.stderr[-1000:]
    reached = [dest for dest, was_killed in zip(copies.values(), killed, strict=True)
                if was_killed]
    assert len(reached) == len(kills), f"{stage}: only {len(reached)} kill points were reached"
    return reference, reached


def rerun_all(projects: list[Path], stage: str) -> None:
    runs = both_cores([lambda p=p: harness.run_stage(p, stage, timeout=TIMEOUT)
                       for p in projects])
    for project, run in zip(projects, runs, strict=True):
        assert run.returncode == 0, f"re-run of {project.name}: {run.stderr[-1000:]}"


# Two epochs: renames 1 and 2 publish the checkpoints, 3 the pointer, 4 the loss CSV.
TRAIN_KILLS = {
    "ehr": (("open-tmp", 1),   # writing the first epoch's checkpoint
            ("rename", 2),     # before publishing the 2nd checkpoint: resume from epoch 1
            ("rename", 3)),    # registered, pointer not yet published
    # the same training code; two points keep the suite's time down
    "waveforms": (("rename", 2), ("rename", 3)),
    "multimodal": (("rename", 2), ("rename", 3)),
}


def trained_view(project: Path, modality: str):
    return (pointer_view(project, modality), champion_digest(project, modality),
            (project / "reports" / f"loss_{modality}.csv").read_bytes())


@pytest.mark.parametrize("modality", ["ehr", "waveforms", "multimodal"])
def test_sigkill_in_training_keeps_the_champion_and_resume_converges(modality, trained_project,
                                                                    physionet, tmp_path):
    stage = f"train_{modality}"
    if modality == "waveforms":  # new waveform data: one more record
        prepared = tmp_path / "prepared"
        shutil.copytree(trained_project, prepared, symlinks=True)
        corpus.write_record(prepared / corpus.WAVES / "p10018328", "p10018328-0002",
                            corpus.mitdb_samples(physionet, 40.0))
        for run in harness.run_chain(prepared, ("catalog_waveforms", "window_waveforms")):
            assert run.returncode == 0, run.stderr[-1000:]
    else:  # new EHR windows (the multimodal rows pair them with the linked ECG windows)
        prepared = prepared_copy(trained_project, tmp_path / "prepared")
    pointer_before = (prepared / "models" / f"{modality}.json").read_bytes()
    champion_before = champion_digest(prepared, modality)

    reference, killed = reference_and_kills(prepared, stage, TRAIN_KILLS[modality], tmp_path)
    expected = trained_view(reference, modality)
    for project in killed:
        pointer = (project / "models" / f"{modality}.json").read_bytes()
        if pointer != pointer_before:  # published: then complete and naming the new model
            assert pointer_view(project, modality) == expected[0], project.name
        assert champion_digest(project, modality) in (champion_before, expected[1]), (
            f"{project.name}: the champion is neither the previous nor the new model")
        assert not harness.unreadable_parquet(project)
    rerun_all(killed, stage)
    for project in killed:
        assert trained_view(project, modality) == expected, (
            f"re-run after {project.name} differs from an uninterrupted run")
        assert not (project / "models" / "checkpoints" / modality / "last.pt").exists()


EXPORT_KILLS = (("open-tmp", 1), ("rename", 1), ("rename", 2))


def test_sigkill_in_export_leaves_readable_latents_and_rerun_converges(trained_project,
                                                                       tmp_path):
    prepared = prepared_copy(trained_project, tmp_path / "prepared")
    previous = published(normalised(prepared))
    scans = readable_scans(prepared)
    assert "data/latents/ehr" in scans

    reference, killed = reference_and_kills(prepared, "export_latents", EXPORT_KILLS, tmp_path)
    expected = without_caches(without_mlflow(normalised(reference)))
    assert published(expected) != previous, "the new windows gave export nothing new to write"
    for project in killed:
        after = published(normalised(project))
        torn = sorted(rel for rel, digest in after.items()
                      if digest not in (previous.get(rel), expected.get(rel)))
        assert not torn, f"{project.name}: outputs neither old nor new: {torn}"
        broken = scans - readable_scans(project)
        assert not broken, f"{project.name}: these no longer read as tables: {broken}"
        rows = pl.scan_parquet(project / "data" / "latents" / "ehr").select(pl.len()).collect()
        assert rows.item() > 0
    rerun_all(killed, "export_latents")
    for project in killed:
        assert without_caches(without_mlflow(normalised(project))) == expected, (
            f"re-run after {project.name} differs from an uninterrupted run")


def evaluation(project: Path) -> dict:
    """The evaluation report without its MLflow run id (fresh per run)."""
    report = json.loads((project / "reports" / "evaluation.json").read_text())
    report.pop("mlflow_run_id")
    return report


def test_sigkill_in_evaluate_leaves_no_partial_report_and_rerun_converges(trained_project,
                                                                          tmp_path):
    reference, (killed,) = reference_and_kills(trained_project, "evaluate",
                                               (("open-tmp", 1),), tmp_path)
    expected = evaluation(reference)
    assert expected["wave_prd_ae_16x"] is not None, expected.get("wave_status")
    assert not (killed / "reports" / "evaluation.json").exists(), \
        "a killed evaluation published a report"
    assert not harness.leftovers(killed)
    rerun_all([killed], "evaluate")
    assert evaluation(killed) == expected
