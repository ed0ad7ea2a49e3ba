"""The medae CLI: instant --help, stage dispatch, exit codes 0/1/2 with one-line errors."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEDAE = [sys.executable, "-m", "medae.cli"]


def medae(*args, cwd=ROOT):
    return subprocess.run([*MEDAE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_is_fast_and_lists_commands():
    t0 = time.perf_counter()
    res = medae("--help")
    elapsed = time.perf_counter() - t0
    assert res.returncode == 0
    for cmd in ("run", "synth", "evaluate", "refresh", "stages"):
        assert cmd in res.stdout
    # generous bound: interpreter start-up included; heavy imports would take ~4 s
    assert elapsed < 3.0, f"medae --help took {elapsed:.2f}s"


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from typer.testing import CliRunner; from medae.cli import app;"
            "CliRunner().invoke(app, ['run', '--help']);"
            "print(sorted(m for m in ('torch','mlflow','prefect','dvc','polars','wfdb')"
            " if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.stdout.strip() == "[]"


def test_every_subcommand_has_help():
    for cmd in ("run", "synth", "evaluate", "refresh", "stages"):
        res = medae(cmd, "--help")
        assert res.returncode == 0, cmd
        assert "Usage" in res.stdout


def test_unknown_stage_is_usage_error_listing_valid_stages():
    res = medae("run", "no_such_stage")
    assert res.returncode == 2
    line = res.stderr.strip()
    assert line.startswith("error: unknown stage 'no_such_stage'; valid stages:")
    assert "\n" not in line


def test_bad_option_is_usage_error():
    res = medae("run", "--no-such-option")
    assert res.returncode == 2


def test_bad_set_is_usage_error_one_line(tmp_path):
    from medae.stages import registry

    stage = next(iter(registry()), None)
    if stage is None:  # before any stage is registered the stage check comes first
        stage = "no_such_stage"
    res = medae("run", stage, "--set", "ingest_ehr.shardz=3")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0


def test_unknown_params_key_is_usage_error(tmp_path):
    from medae.stages import registry

    stages = list(registry())
    if not stages:
        return
    bad = tmp_path / "params.yaml"
    bad.write_text("clean_ehr:\n  splitseed: 1\n")
    res = medae("run", stages[0], "--params", str(bad))
    assert res.returncode == 2
    assert "unknown key 'clean_ehr.splitseed'" in res.stderr


def test_data_error_exits_1_with_one_line(tmp_path):
    """A missing input folder is a data error: exit 1, one line naming the folder."""
    from medae.stages import registry

    if "ingest_ehr" not in registry():
        return
    res = medae("run", "ingest_ehr", "--set", f"ehr.source={tmp_path / 'absent'}",
                "--set", f"ingest_ehr.out={tmp_path / 'out'}")
    assert res.returncode == 1
    assert str(tmp_path / "absent") in res.stderr
    assert res.stderr.strip().startswith("error:") or "error:" in res.stderr.splitlines()[-1]
