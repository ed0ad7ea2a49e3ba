"""The broken-input corpus (tests/hardening/corpus.py) through the real stages, via the CLI.

For every case the stage must do exactly the one thing pinned in the corpus: ingest with a
data-quality entry, quarantine with a reason in the run report, or exit 1 with one ``error:``
line naming the file and the problem. Never a traceback, never a half-written or unreadable
output; when a stage fails its previous outputs are left exactly as they were.

The valid project runs once per session; each case runs on a copy of it (so there *are*
previous outputs to protect). Cases marked ``open`` are known stage defects, listed in
docs/robustness.md: strict expected failures, so a fix shows up as XPASS and the mark goes.
"""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tests.hardening import corpus, harness
from tests.hardening.conftest import available
from tests.hardening.corpus import ERROR, INGESTED, QUARANTINED, Case

PHYSIONET_FOR_IDS = Path("physionet")  # only used to build the ids below (no file access)
CASES = corpus.all_cases(PHYSIONET_FOR_IDS)


@dataclass
class Outcome:
    project: Path
    runs: list[harness.Run]
    before: dict[str, str]
    after: dict[str, str]
    leftovers: list[str]
    unreadable: list[str]


def _run_project(valid: Path, dest: Path, cases: list[Case]) -> Outcome:
    shutil.copytree(valid, dest, symlinks=True)
    for case in cases:
        case.build(dest)
    before = harness.snapshot(dest)
    runs = harness.run_chain(dest, available(cases[0].stages))
    return Outcome(dest, runs, before, harness.snapshot(dest), harness.leftovers(dest),
                   harness.unreadable_parquet(dest))


@pytest.fixture(scope="session")
def outcomes(valid_project, tmp_path_factory, physionet) -> dict[str, Outcome]:
    """Every runnable case, run once; record-level cases share one batch project."""
    cases = [c for c in corpus.all_cases(physionet) if not harness.missing_stages(c.stages)]
    root = tmp_path_factory.mktemp("corpus")
    jobs = {c.name: [c] for c in cases if not c.batch}
    batch = [c for c in cases if c.batch]
    if batch:
        jobs["wfdb_batch"] = batch
    # Two at a time: subprocess start-up overlaps with the other's work on 2 cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run_project, valid_project, root / name, group)
                   for name, group in jobs.items()}
        done = {name: f.result() for name, f in futures.items()}
    return {c.name: done["wfdb_batch" if c.batch else c.name] for c in cases}


# --- reading what the stages wrote -------------------------------------------------------------

def _dig(obj, path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _report(project: Path, name: str) -> dict:
    path = project / "reports" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _catalog_row(project: Path, record: str) -> dict | None:
    catalog = pl.read_parquet(project / "data/interim/waveform_catalog.parquet")
    rows = catalog.filter(pl.col("record_name") == record).to_dicts()
    return rows[0] if rows else None


def dq_value(project: Path, path: tuple[str, ...]):
    """The value at a case's ``dq`` path (None when absent)."""
    if path[0] == "catalog":
        row = _catalog_row(project, path[1])
        return None if row is None else row.get(path[2])
    return _dig(_report(project, path[0]), path[1:])


def quarantine_reasons(project: Path, record: str) -> list[str]:
    """Every reason the run reports give for ``record``: catalog quarantine, a failed record,
    or its skipped segments."""
    reasons = []
    quarantine = project / "data/interim/waveform_catalog_quarantine.parquet"
    if quarantine.exists():
        for row in pl.read_parquet(quarantine).iter_rows(named=True):
            if Path(row["path"]).name == record:
                reasons.append(f"{row['path']}: {row['reason']}")
    entry = _dig(_report(project, "dq_waveforms"), ("records", record)) or {}
    if entry.get("error"):
        reasons.append(entry["error"])
    reasons += [f"{s.get('segment')}: {s.get('reason')}" for s in entry.get("skipped_segments", [])]
    return reasons


def _ingested(project: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(project / "data/raw/ehr" / table / "*.parquet").sort(pl.all())


# --- the checks ------------------------------------------------------------------------------

def check_never(outcome: Outcome) -> None:
    """What no case may ever do."""
    for run in outcome.runs:
        assert "Traceback" not in run.stderr, f"{run.stage} printed a traceback:\n{run.stderr}"
        assert run.returncode in (0, 1), f"{run.stage} exit {run.returncode}: {run.stderr}"
    assert not outcome.leftovers, f"temporary outputs left behind: {outcome.leftovers}"
    assert not outcome.unreadable, f"unreadable outputs: {outcome.unreadable}"


def check_error(case: Case, outcome: Outcome) -> None:
    last = outcome.runs[-1]
    assert last.returncode == 1, f"{last.stage} should fail, exit {last.returncode}"
    lines = last.error_lines
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {lines}"
    assert re.search(case.expect, lines[0]), f"{lines[0]!r} does not match {case.expect!r}"
    assert outcome.after == outcome.before, "a failing stage changed the previous outputs"


def check_ingested(case: Case, outcome: Outcome, valid: Path) -> None:
    failed = [r for r in outcome.runs if r.returncode != 0]
    assert not failed, f"{failed[0].stage} failed: {failed[0].error_lines}"
    if case.same_as_valid:
        assert _ingested(outcome.project, "labevents").equals(_ingested(valid, "labevents"))
    if case.dq:
        got, baseline = dq_value(outcome.project, case.dq), dq_value(valid, case.dq)
        if case.dq_zero:
            assert got == 0, f"DQ {case.dq} should be 0, got {got}"
        elif case.dq[0] == "catalog":
            assert got, f"catalog {case.dq} not set"
        else:
            assert got is not None and got > (baseline or 0), \
                f"DQ {case.dq}: {got} (valid run: {baseline})"


def check_quarantined(case: Case, outcome: Outcome) -> None:
    failed = [r for r in outcome.runs if r.returncode != 0]
    assert not failed, f"{failed[0].stage} failed: {failed[0].error_lines}"
    reasons = quarantine_reasons(outcome.project, case.record)
    assert any(re.search(case.expect, r) for r in reasons), \
        f"{case.record}: no reason matching {case.expect!r} in {reasons}"
    windows = outcome.project / "data/features/waveform_windows" / f"{case.record}.parquet"
    assert not windows.exists() or pl.read_parquet(windows).height == 0, \
        "a quarantined record still has windows"


def _params(case: Case):
    marks = []
    if case.open:
        marks.append(pytest.mark.xfail(reason=f"open: {case.open}", strict=True))
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_params(c) for c in CASES])
def test_broken_input(case: Case, outcomes, valid_project):
    missing = harness.missing_stages(case.stages)
    if missing:
        pytest.skip(f"stage not registered yet: {', '.join(missing)}")
    outcome = outcomes[case.name]
    check_never(outcome)
    {ERROR: lambda: check_error(case, outcome),
     INGESTED: lambda: check_ingested(case, outcome, valid_project),
     QUARANTINED: lambda: check_quarantined(case, outcome)}[case.outcome]()


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


def test_broken_records_do_not_disturb_the_valid_ones(outcomes, valid_project):
    """The valid records' windows are byte-identical with and without the broken batch."""
    if not any(c.batch for c in CASES if c.name in outcomes):
        pytest.skip("stage not registered yet: window_waveforms")
    batch = next(outcomes[c.name] for c in CASES if c.batch and c.name in outcomes)
    folder = Path("data/features/waveform_windows")
    for record in ("p10018328-0001", "3000003_0003"):
        ours = batch.project / folder / f"{record}.parquet"
        assert ours.read_bytes() == (valid_project / folder / f"{record}.parquet").read_bytes()


def test_failing_records_do_not_put_subject_ids_in_logs(outcomes):
    """MIMIC record and folder names embed the subject id (p10012853/...): the logs of a run
    full of failing records name them by catalog or quarantine row instead."""
    batch = [outcomes[c.name] for c in CASES if c.batch and c.name in outcomes]
    if not batch:
        pytest.skip("stage not registered yet: window_waveforms")
    logs = "\n".join(run.stderr for run in batch[0].runs)
    assert "10012853" not in logs
    # The failures are still reported, by row, pointing at the owner-only tables.
    assert re.search(r"quarantined record \(row \d+ of \S+quarantine\.parquet\): "
                     r"<record>\.hea: sampling frequency 'fast' is not a number", logs)
    assert re.search(r"catalog row \d+ failed: DataError: <record>: cannot read frames", logs)
