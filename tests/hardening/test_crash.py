"""Crash safety: SIGKILL a stage while it writes, then check what a reader sees and that a
re-run converges to exactly what an uninterrupted run writes.

Kill points are chosen inside the stage, not by guesswork with timers: an audit hook in the
stage process SIGKILLs it right after it opened its first temporary file for writing, and
right before its 2nd rename (the moments outputs are published). After each kill:

- every published output is, file by file, either the previous version or the new one (never
  a third, partial version) and reads back;
- every output folder still reads as a whole with ``pl.scan_parquet(folder / "*.parquet")``
  and ``pl.scan_parquet(folder)`` (a stray temporary file would break consumers' globs);
- re-running the stage gives outputs identical to an uninterrupted run from the same state.

A stage that replaces its files one by one (EHR shards and parts) marks its folder unfinished
while it does (``medae.io.unfinished``): a kill there leaves the mark, and the next stage
refuses the folder (it would mix old and new files) until the stage is re-run.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from medae.io import UNFINISHED
from tests.hardening import corpus, harness


@dataclass(frozen=True)
class CrashStage:
    stage: str
    upstream: tuple[str, ...]  # run (not killed) after the change, before the stage
    more_kills: tuple[tuple[str, int], ...] = ()  # besides KILL_POINTS
    downstream: str | None = None  # reads the outputs: must refuse them while marked unfinished

    def change_inputs(self, project: Path, physionet: Path) -> None:
        """Change the sources so that the stage has new outputs to write."""
        if self.stage in ("catalog_waveforms", "window_waveforms"):
            src = project / corpus.WAVES / "p10018328"
            corpus.write_record(src, "p10018328-0002", corpus.mitdb_samples(physionet, 40.0))
        else:
            if self.stage == "pair_windows":  # its previous outputs, to be replaced
                run = harness.run_stage(project, "pair_windows")
                assert run.returncode == 0, run.stderr[-1000:]
            corpus.edit_lines(project, "hosp/labevents", lambda ls: ls[:-15])


STAGES = [
    # "after-mark" 2: the second rename once the folder is marked unfinished, i.e. with one
    # file replaced and the others not yet
    CrashStage("ingest_ehr", (), (("after-mark", 2),), downstream="clean_ehr"),
    CrashStage("clean_ehr", ("ingest_ehr",), (("after-mark", 2),), downstream="featurize_ehr"),
    CrashStage("featurize_ehr", ("ingest_ehr", "clean_ehr"), (("after-mark", 2),),
               downstream="pair_windows"),
    CrashStage("catalog_waveforms", ()),
    CrashStage("window_waveforms", ("catalog_waveforms",)),
    # renames: its digest cache, then each part, then its fingerprints: the 3rd is a kill
    # with one part new and its fingerprint not yet saved
    CrashStage("pair_windows", ("ingest_ehr", "clean_ehr", "featurize_ehr"),
               more_kills=(("rename", 3),)),
]


# Runs the real CLI in-process after installing an audit hook that SIGKILLs the process at
# the chosen point: just before its k-th rename (publishing a file or folder), just before its
# k-th rename after it marked a folder unfinished, or just after it opened its k-th temporary
# file for writing (a half-written temporary exists).
KILLER = """
import os, signal, sys
from medae.io import UNFINISHED
point, k = sys.argv[1], int(sys.argv[2])
count = 0
marked = False
WRITE = os.O_WRONLY | os.O_RDWR

def hook(event, args):
    global count, marked
    if point == "after-mark" and event == "os.rename" and str(args[1]).endswith(UNFINISHED):
        marked = True
        return
    if event == "os.rename" and (point == "rename" or point == "after-mark" and marked):
        count += 1
    elif (point == "open-tmp" and event == "open" and ".tmp" in str(args[0])
          and isinstance(args[2], int) and args[2] & WRITE):
        count += 1
    else:
        return
    if count == k:
        os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(hook)
sys.argv = ["medae", *sys.argv[3:]]
from medae.cli import main
main()
"""
KILL_POINTS = (("open-tmp", 1), ("rename", 2))


def run_and_kill(project: Path, stage: str, point: str, k: int, timeout: float = 60) -> bool:
    """Run ``stage`` and SIGKILL it at ``point`` number ``k``; True when it was killed (False
    when the stage finished before reaching that point)."""
    args = [sys.executable, "-c", KILLER, point, str(k), "run", stage]
    for item in harness.FAST_SETTINGS:
        args += ["--set", item]
    res = subprocess.run(args, cwd=project, env=harness.cli_env(), capture_output=True,
                         text=True, timeout=timeout)
    if res.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"{stage} failed before the kill point: {res.stderr[-1000:]}")
    return res.returncode == -signal.SIGKILL


def _without_times(obj):
    """JSON with its ``created_at`` stamps removed (the only field that may differ)."""
    if isinstance(obj, dict):
        return {k: _without_times(v) for k, v in obj.items() if k != "created_at"}
    if isinstance(obj, list):
        return [_without_times(v) for v in obj]
    return obj


def normalised(project: Path) -> dict[str, str]:
    """Published outputs (no hidden temporaries, no ``data/cache/``: what a stage read of its
    inputs, keyed by file stamps, which differ between copies of a project), with the project
    path masked."""
    import hashlib

    out = {}
    for rel, _ in harness.snapshot(project).items():
        if any(part.startswith(".") for part in Path(rel).parts) or rel.startswith("data/cache/"):
            continue
        data = (project / rel).read_bytes()
        if rel.endswith(".json"):
            data = json.dumps(_without_times(json.loads(data)), sort_keys=True).encode()
        if rel.endswith((".json", ".md")):
            data = data.replace(str(project).encode(), b"<project>")
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


def parquet_folders(project: Path) -> list[Path]:
    folders = {p.parent for p in harness.output_files(project) if p.suffix == ".parquet"
               and not any(part.startswith(".") for part in p.relative_to(project).parts)}
    return sorted(folders)


def readable_scans(project: Path) -> set[str]:
    """The folder scans (``folder/*.parquet`` and ``folder``) that read as one table."""
    ok = set()
    for folder in parquet_folders(project):
        for target in (folder / "*.parquet", folder):
            try:
                pl.scan_parquet(target).collect()
            except Exception:  # noqa: BLE001 - mixed-schema folders are not tables
                continue
            ok.add(str(target.relative_to(project)))
    return ok


@pytest.mark.parametrize("spec", STAGES, ids=[s.stage for s in STAGES])
def test_sigkill_leaves_previous_outputs_and_rerun_converges(spec, valid_project, physionet,
                                                            tmp_path):
    missing = harness.missing_stages((spec.stage, *spec.upstream))
    if missing:
        pytest.skip(f"stage not registered yet: {', '.join(missing)}")
    prepared = tmp_path / "prepared"
    shutil.copytree(valid_project, prepared, symlinks=True)
    spec.change_inputs(prepared, physionet)
    for run in harness.run_chain(prepared, spec.upstream):
        assert run.returncode == 0, run.stderr[-1000:]
    previous = normalised(prepared)
    scans = readable_scans(prepared)
    reference = tmp_path / "reference"
    shutil.copytree(prepared, reference, symlinks=True)
    run = harness.run_stage(reference, spec.stage)
    assert run.returncode == 0, run.stderr[-1000:]
    expected = normalised(reference)
    assert expected != previous, "the change did not give the stage anything new to write"

    killed = marks = 0
    for point, k in (*KILL_POINTS, *spec.more_kills):
        project = tmp_path / f"killed_{point}_{k}"
        shutil.copytree(prepared, project, symlinks=True)
        if not run_and_kill(project, spec.stage, point, k):
            continue
        killed += 1
        after = normalised(project)
        marked = [rel for rel in after if Path(rel).name == UNFINISHED]
        torn = sorted(rel for rel, digest in after.items()
                      if rel not in marked and digest not in (previous.get(rel), expected.get(rel)))
        assert not torn, f"kill at {point} {k}: outputs neither old nor new: {torn}"
        if marked:
            marks += 1
            refused = harness.run_stage(project, spec.downstream)
            assert refused.returncode == 1 and f"{spec.stage} did not finish its last run" in (
                refused.stderr), f"kill at {point} {k}: {spec.downstream}: {refused.stderr[-800:]}"
        broken = scans - readable_scans(project)
        assert not broken, f"kill at {point} {k}: these no longer read as tables: {broken}"
        rerun = harness.run_stage(project, spec.stage)
        assert rerun.returncode == 0, f"re-run after kill at {point} {k}: {rerun.stderr[-1000:]}"
        assert normalised(project) == expected, f"re-run after kill at {point} {k} differs"
        assert not harness.leftovers(project), (
            f"the re-run after kill at {point} {k} did not sweep the killed run's temporaries")
        broken = scans - readable_scans(project)
        assert not broken, f"after the re-run these still do not read as tables: {broken}"
    assert killed >= 2 + len(spec.more_kills), (
        f"{spec.stage}: only {killed} kill points were reached")
    if spec.downstream:  # a kill while it replaced files left the mark at least once
        assert marks, f"{spec.stage}: no kill left its folder marked unfinished"
