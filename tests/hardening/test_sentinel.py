"""Patient data never reaches logs, MLflow or Prefect; two refreshes at once are refused.

A sentinel patient with ids and clinical values that occur nowhere else is planted in small
generated data (the real generator, ``medae synth``), a real ``medae refresh`` runs on a
throw-away copy of the project (real DVC, an ephemeral Prefect server, SQLite MLflow), and
then everything a curious reader could look at besides the data products themselves is
scanned for the sentinel: the refresh's stdout/stderr, the MLflow database and artifact store,
the Prefect database (flow-run parameters, logs, artifacts) and the run report.

While that refresh runs, a second ``medae refresh`` on the same workspace must fail at once
with one clear line and change nothing.
"""

from __future__ import annotations

import gzip
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hardening import harness

pytest.importorskip("flows.nightly", reason="stage not registered yet: refresh")
from tests.flows.project import make_project  # noqa: E402 - after the skip

SUBJECTS = 8
SENTINEL_OF = "10000655"  # a generated subject with waveform records; its ids get replaced
SENTINEL_ID = "19181716"
SENTINEL_HR = "87.6543"  # heart rate: in range, so it is kept and featurised


def plant_sentinel(source: Path) -> dict[str, str]:
    """Give one generated subject unique ids and a unique heart-rate value, everywhere.

    Returns the strings that must never appear outside the data products.
    """
    ids = {"subject_id": SENTINEL_ID}
    for table in sorted((source / "ehr").rglob("*.csv.gz")):
        lines = gzip.decompress(table.read_bytes()).decode().splitlines(keepends=True)
        header = lines[0].rstrip("\r\n").split(",")
        out = [lines[0]]
        for line in lines[1:]:
            fields = line.rstrip("\r\n").split(",")
            if "subject_id" in header and fields[header.index("subject_id")] == SENTINEL_OF:
                fields[header.index("subject_id")] = SENTINEL_ID
                for key, base in (("hadm_id", "28"), ("stay_id", "38")):
                    if key in header and fields[header.index(key)]:
                        old = fields[header.index(key)]
                        ids.setdefault(f"{key}:{old}", base + SENTINEL_ID[2:] + old[-1])
                        fields[header.index(key)] = ids[f"{key}:{old}"]
                if "itemid" in header and fields[header.index("itemid")] == "220045":
                    fields[header.index("valuenum")] = SENTINEL_HR
                    fields[header.index("value")] = SENTINEL_HR
                line = ",".join(fields) + "\n"
            out.append(line)
        table.write_bytes(gzip.compress("".join(out).encode(), mtime=0))
    waves = source / "waveforms"
    for path in sorted(waves.rglob("*"), key=lambda p: -len(p.parts)):
        if path.is_file() and (path.suffix == ".hea" or path.name == "RECORDS"):
            path.write_text(path.read_text(encoding="latin-1").replace(SENTINEL_OF, SENTINEL_ID),
                            encoding="latin-1")
        if SENTINEL_OF in path.name:
            path.rename(path.with_name(path.name.replace(SENTINEL_OF, SENTINEL_ID)))
    return {"subject_id": SENTINEL_ID, "heart rate": SENTINEL_HR,
            **{k.split(":")[0] + " " + v: v for k, v in ids.items() if ":" in k}}


def _synth(dest: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "medae.cli", "synth", "--out",
                          str(dest / "data/source/ehr"), "--subjects", str(SUBJECTS),
                          "--waveform-out", str(dest / "data/source/waveforms"),
                          "--waveform-share", "0.5"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


# Every stage from the raw tables to the published latents; `evaluate` trains its own models
# on MIT-BIH and reads no EHR (tests/training covers it), so it is left out to save time.
STAGES = ("ingest_ehr", "clean_ehr", "featurize_ehr", "catalog_waveforms", "window_waveforms",
          "train_ehr", "train_waveforms", "pair_windows", "train_multimodal", "export_latents")


def _refresh_cmd(project: Path) -> list[str]:
    cmd = [sys.executable, "-m", "medae.cli", "refresh", "--params",
           str(project / "params.yaml"), "--set", f"dvc.remote={project.parent / 'remote'}"]
    for stage in STAGES:
        cmd += ["--stage", stage]
    return cmd


def _find(needle: str, blob: bytes) -> bool:
    return needle.encode() in blob


def _sqlite_dump(db: Path) -> bytes:
    """Every text value of every table (a value can sit in a page the file scan misses)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        parts = []
        for (table,) in con.execute("select name from sqlite_master where type='table'"):
            for row in con.execute(f'select * from "{table}"'):
                parts.append(f"{table}: {row!r}".encode())
        return b"\n".join(parts)
    finally:
        con.close()


def sentinel_refresh(base: Path) -> dict:
    """Plant the sentinel in a fresh project under ``base``, start a refresh, start a second
    one while the first holds the lock, and wait for both. (tests/hardening/conftest.py
    starts this in the background when the session begins: it overlaps the other tests.)"""
    project = make_project(base / "proj")
    _synth(project)
    secrets = plant_sentinel(project / "data/source")
    env = harness.cli_env(PREFECT_HOME=str(base / "prefect_home"))
    first = subprocess.Popen(_refresh_cmd(project), cwd=project, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock = project / ".dvc/tmp/medae-refresh.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and first.poll() is None:
        if lock.exists() and lock.read_text().startswith("pid"):
            break
        time.sleep(0.05)
    t0 = time.perf_counter()
    second = subprocess.run(_refresh_cmd(project), cwd=project, env=env, text=True,
                            capture_output=True, timeout=120)
    second_s = time.perf_counter() - t0
    first_still_running = first.poll() is None
    out, err = first.communicate(timeout=900)
    return {"project": project, "base": base, "secrets": secrets, "first": first,
            "stdout": out, "stderr": err, "second": second, "second_s": second_s,
            "first_still_running": first_still_running}


@pytest.fixture(scope="module")
def refreshed(request, tmp_path_factory):
    started = getattr(request.config, "_medae_sentinel", None)
    if started is not None:
        return started.result()
    return sentinel_refresh(tmp_path_factory.mktemp("sentinel"))


def test_second_refresh_is_refused_at_once_with_one_line(refreshed):
    second = refreshed["second"]
    assert second.returncode == 1, second.stderr
    lines = [line for line in second.stderr.splitlines() if not harness.LOG_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith(
        "error: another refresh is already running in"), lines
    assert "Traceback" not in second.stderr
    # Fails fast: it did not wait for the first (interpreter start-up on a loaded 2-core
    # machine alone can take several seconds, so the bound is loose).
    assert refreshed["first_still_running"], "the second refresh waited for the first"
    assert refreshed["second_s"] < 30, f"took {refreshed['second_s']:.1f}s to refuse"


def test_first_refresh_completes_with_the_sentinel_in_the_latents(refreshed):
    import polars as pl

    assert refreshed["first"].returncode == 0, refreshed["stderr"][-3000:]
    latents = pl.scan_parquet(refreshed["project"] / "data/latents/ehr/*.parquet").collect()
    assert int(SENTINEL_ID) in latents["subject_id"].to_list()  # planted where it matters


def _leaks(secrets: dict[str, str], blob: bytes) -> list[str]:
    return [f"{what} ({value})" for what, value in secrets.items() if _find(value, blob)]


def test_no_sentinel_in_refresh_logs_or_report(refreshed):
    text = refreshed["stdout"] + refreshed["stderr"]
    assert "export_latents" in text, "the refresh output is not what we meant to scan"
    blob = text.encode()
    report = refreshed["project"] / "reports/refresh.md"
    if report.exists():
        blob += report.read_bytes()
    assert not _leaks(refreshed["secrets"], blob)


def test_no_sentinel_in_mlflow_database_or_params(refreshed):
    db = refreshed["project"] / "mlflow.db"
    assert db.exists()
    blob = db.read_bytes() + _sqlite_dump(db)
    assert not _leaks(refreshed["secrets"], blob)


def test_no_sentinel_in_mlflow_artifacts(refreshed):
    root = refreshed["project"] / "mlartifacts"
    leaks = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        found = _leaks(refreshed["secrets"], path.read_bytes())
        if found:
            leaks[str(path.relative_to(root))] = found
    assert not leaks


def test_mlflow_input_examples_are_synthetic_not_patient_rows(refreshed):
    """MLflow stores the input example as plain JSON beside the model: it must be the
    synthetic all-zero example, never (normalised) rows of real patients."""
    import json

    root = refreshed["project"] / "mlartifacts"
    examples = sorted(root.rglob("input_example.json"))
    assert examples, "training logged no input example"
    for path in examples:
        values = json.loads(path.read_text())
        flat = [v for row in values for v in row] if isinstance(values, list) else []
        assert flat and all(v == 0 for v in flat), f"{path.relative_to(root)} holds data"


def test_no_sentinel_in_prefect_database(refreshed):
    home = refreshed["base"] / "prefect_home"
    dbs = sorted(home.rglob("*.db"))
    assert dbs, f"no Prefect database under {home}"
    leaks = {str(db): _leaks(refreshed["secrets"], db.read_bytes() + _sqlite_dump(db))
             for db in dbs}
    assert not any(leaks.values()), leaks


def test_outputs_are_owner_only(refreshed):
    import stat

    project = refreshed["project"]
    loose = []
    for top in ("data/latents", "data/features", "data/interim", "data/raw", "reports",
                "models", "mlartifacts"):
        for path in [project / top, *(project / top).rglob("*")]:
            if not path.exists() or path.is_symlink() or path.name == ".gitignore":
                continue
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                loose.append(f"{path.relative_to(project)} {mode:o}")
    assert not loose, loose[:20]
