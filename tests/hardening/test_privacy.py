"""Patient-data protection: keyed pseudonyms, Parquet modular encryption, owner-only outputs."""

from __future__ import annotations

import doctest
import hashlib
import hmac
import os
import stat
from types import SimpleNamespace

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import medae.errors
import medae.io
import medae.privacy.encryption
import medae.privacy.pseudonym
import medae.privacy.record_names
from medae.errors import ConfigError, DataError
from medae.io import atomic_dir, atomic_path, ensure_dir, write_json_atomic
from medae.privacy import (
    create_key_file,
    is_encrypted,
    load_key,
    pseudonymise,
    read_table,
    write_table,
)

KEY = b"test-key-0123456789abcdef"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("module", [medae.privacy.pseudonym, medae.privacy.encryption, medae.io,
                                    medae.privacy.record_names, medae.errors])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# --- pseudonyms -------------------------------------------------------------------------------

def _latents() -> pl.DataFrame:
    return pl.DataFrame({
        "subject_id": [10000032, 10000032, 10001217, None],
        "hadm_id": [22595853, 22595853, 24597018, 1],
        "stay_id": [39553978, 39553978, None, 2],
        "record_name": ["p000878", "p000878", "s00001", None],
        "z_00": pl.Series([0.1, 0.2, 0.3, 0.4], dtype=pl.Float32),
    }, schema_overrides={"subject_id": pl.Int64, "hadm_id": pl.Int64, "stay_id": pl.Int64})


def test_pseudonym_is_documented_hmac_sha256_int64():
    out = pseudonymise(_latents(), key=KEY)
    digest = hmac.new(KEY, b"subject_id:10000032", hashlib.sha256).digest()
    expected = int.from_bytes(digest[:8], "big") & (2**63 - 1)
    assert out["subject_id"][0] == expected
    assert out.schema["subject_id"] == pl.Int64 and out.schema["stay_id"] == pl.Int64
    assert (out["hadm_id"] >= 0).all()
    # nulls stay null, repeated ids map to the same pseudonym, other columns untouched
    assert out["subject_id"].null_count() == 1 and out["stay_id"].null_count() == 1
    assert out["subject_id"][0] == out["subject_id"][1] != out["subject_id"][2]
    assert out["z_00"].equals(_latents()["z_00"])
    # record_name is pseudonymised only when asked
    assert out["record_name"].to_list() == _latents()["record_name"].to_list()


def test_same_key_same_pseudonyms_other_key_different():
    a = pseudonymise(_latents(), key=KEY)
    b = pseudonymise(_latents().reverse(), key=KEY).reverse()
    c = pseudonymise(_latents(), key=b"another-key-0123456789")
    assert a.equals(b)
    assert not set(a["subject_id"].drop_nulls()) & set(c["subject_id"].drop_nulls())
    assert not set(a["subject_id"].drop_nulls()) & {10000032, 10001217}


def test_columns_are_domain_separated_and_strings_become_hex():
    df = pl.DataFrame({"subject_id": [5], "hadm_id": [5], "record_name": ["p000878"]})
    out = pseudonymise(df, ("subject_id", "hadm_id", "record_name"), key=KEY)
    assert out["subject_id"][0] != out["hadm_id"][0]
    name = out["record_name"][0]
    assert len(name) == 16 and int(name, 16) >= 0 and name != "p000878"


def test_pseudonymise_rejects_float_ids_and_short_keys():
    with pytest.raises(ConfigError, match="column 'subject_id' has type Float64"):
        pseudonymise(pl.DataFrame({"subject_id": [1.0]}), key=KEY)
    with pytest.raises(ConfigError, match="too short"):
        pseudonymise(_latents(), key=b"short")


def _cfg(env="MEDAE_TEST_PSEUDONYM_KEY", file=None):
    return SimpleNamespace(pseudonymise_key_env=env, pseudonymise_key_file=file)


def test_load_key_env_then_file_then_refuses(tmp_path, monkeypatch, caplog):
    key_file = tmp_path / "pseudonym.key"
    key_file.write_bytes(b"file-key-0123456789abcdef\n")
    key_file.chmod(0o600)
    monkeypatch.delenv("MEDAE_TEST_PSEUDONYM_KEY", raising=False)
    assert load_key(_cfg(file="pseudonym.key"), base=tmp_path) == b"file-key-0123456789abcdef"
    monkeypatch.setenv("MEDAE_TEST_PSEUDONYM_KEY", "env-key-0123456789abcdef")
    with caplog.at_level("INFO", logger="medae"):
        assert load_key(_cfg(file=str(key_file))) == b"env-key-0123456789abcdef"
    assert "env-key" not in caplog.text  # the key itself is never logged
    monkeypatch.delenv("MEDAE_TEST_PSEUDONYM_KEY")
    with pytest.raises(ConfigError, match="pseudonymisation is on but no key was found: set the "
                       "environment variable MEDAE_TEST_PSEUDONYM_KEY"):
        load_key(_cfg())
    with pytest.raises(ConfigError, match="missing.key: pseudonymisation key file not found"):
        load_key(_cfg(file=str(tmp_path / "missing.key")))
    monkeypatch.setenv("MEDAE_TEST_PSEUDONYM_KEY", "tiny")
    with pytest.raises(ConfigError, match="MEDAE_TEST_PSEUDONYM_KEY: pseudonymisation key is too "
                       r"short \(4 bytes"):
        load_key(_cfg())


def test_load_key_warns_about_a_world_readable_key_file(tmp_path, caplog):
    key_file = tmp_path / "k"
    key_file.write_bytes(b"file-key-0123456789abcdef")
    key_file.chmod(0o644)
    with caplog.at_level("WARNING", logger="medae"):
        load_key(_cfg(env=None, file=str(key_file)))
    assert "readable by other users" in caplog.text


# --- Parquet modular encryption ---------------------------------------------------------------

@pytest.fixture
def latents_table() -> pa.Table:
    return _latents().to_arrow()


def test_encrypted_round_trip_and_no_plaintext_on_disk(tmp_path, latents_table):
    keys = create_key_file(tmp_path / "keys.json")
    assert _mode(keys) == 0o600
    target = tmp_path / "part_0000.parquet"
    write_table(latents_table, target, encryption=keys)
    assert is_encrypted(target)
    assert read_table(target, encryption=keys).equals(latents_table)
    blob = target.read_bytes()
    assert b"p000878" not in blob and b"record_name" not in blob  # data and schema encrypted


def test_reading_without_or_with_the_wrong_key_fails_clearly(tmp_path, latents_table):
    keys = create_key_file(tmp_path / "keys.json")
    other = create_key_file(tmp_path / "other.json")
    target = tmp_path / "part_0000.parquet"
    write_table(latents_table, target, encryption=keys)
    with pytest.raises(OSError, match="encrypted"):
        pq.read_table(target)
    with pytest.raises(pl.exceptions.ComputeError, match="encrypted footer"):
        pl.read_parquet(target)
    with pytest.raises(DataError, match=r"part_0000.parquet: the file is encrypted"):
        read_table(target)
    with pytest.raises(DataError, match=r"part_0000.parquet: cannot decrypt with key file "
                       r".*other.json \(wrong key\)"):
        read_table(target, encryption=other)


def test_read_table_reads_a_folder_in_path_order(tmp_path, latents_table):
    keys = create_key_file(tmp_path / "keys.json")
    for i in (1, 0):
        write_table(latents_table.slice(i * 2, 2), tmp_path / "ehr" / f"part_000{i}.parquet",
                    encryption=keys)
    assert read_table(tmp_path / "ehr", encryption=keys).equals(latents_table)


def test_key_file_errors(tmp_path, latents_table):
    keys = create_key_file(tmp_path / "keys.json")
    with pytest.raises(ConfigError, match="already exists"):
        create_key_file(keys)
    with pytest.raises(ConfigError, match="nope.json: encryption key file not found"):
        write_table(latents_table, tmp_path / "x.parquet", encryption=tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"footer_key": "!!"}')
    with pytest.raises(ConfigError, match="bad.json: not a medae key file"):
        write_table(latents_table, tmp_path / "x.parquet", encryption=tmp_path / "bad.json")
    assert not (tmp_path / "x.parquet").exists()


# --- owner-only outputs -----------------------------------------------------------------------

def test_outputs_are_owner_only_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDAE_FILE_MODE", raising=False)
    monkeypatch.delenv("MEDAE_DIR_MODE", raising=False)
    write_json_atomic(tmp_path / "new" / "deep" / "summary.json", {"a": 1})
    assert _mode(tmp_path / "new") == 0o700 and _mode(tmp_path / "new" / "deep") == 0o700
    assert _mode(tmp_path / "new" / "deep" / "summary.json") == 0o600
    with atomic_dir(tmp_path / "latents" / "ehr") as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "part.parquet").write_text("x")  # written with the process umask
    assert _mode(tmp_path / "latents" / "ehr") == 0o700
    assert _mode(tmp_path / "latents" / "ehr" / "sub") == 0o700
    assert _mode(tmp_path / "latents" / "ehr" / "sub" / "part.parquet") == 0o600


def test_existing_folders_keep_their_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDAE_DIR_MODE", raising=False)
    (tmp_path / "project").mkdir(mode=0o755)
    os.chmod(tmp_path / "project", 0o755)
    with atomic_path(tmp_path / "project" / "out.txt") as tmp:
        tmp.write_text("x")
    assert _mode(tmp_path / "project") == 0o755


def test_output_modes_are_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDAE_FILE_MODE", "640")
    monkeypatch.setenv("MEDAE_DIR_MODE", "750")
    write_json_atomic(tmp_path / "shared" / "summary.json", {"a": 1})
    ensure_dir(tmp_path / "shared2")
    assert _mode(tmp_path / "shared") == 0o750 and _mode(tmp_path / "shared2") == 0o750
    assert _mode(tmp_path / "shared" / "summary.json") == 0o640
    monkeypatch.setenv("MEDAE_FILE_MODE", "rw-r--r--")
    with pytest.raises(ConfigError, match="MEDAE_FILE_MODE='rw-r--r--': expected an octal"):
        write_json_atomic(tmp_path / "x.json", {})


# --- temporaries of killed writers ------------------------------------------------------------

def test_a_killed_writer_leaves_the_folder_readable_and_is_swept(tmp_path):
    """SIGKILL inside atomic_path: the temporary is outside the target folder (Polars globs
    and folder scans read hidden files), and the next write removes it -- never a live
    writer's."""
    import signal
    import subprocess
    import sys

    import polars as pl

    folder = tmp_path / "latents"
    folder.mkdir()
    pl.DataFrame({"a": [1]}).write_parquet(folder / "part_0000.parquet")
    code = ("import os, signal, sys; from medae.io import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'PAR1 half written')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    res = subprocess.run([sys.executable, "-c", code, str(folder / "part_0001.parquet")])
    assert res.returncode == -signal.SIGKILL
    assert [p.name for p in folder.iterdir()] == ["part_0000.parquet"]
    assert pl.scan_parquet(folder / "*.parquet").collect().height == 1
    assert pl.scan_parquet(folder).collect().height == 1
    stale = list((tmp_path / ".latents.medae-tmp").iterdir())
    assert len(stale) == 1 and stale[0].name.startswith(".part_0001.parquet.")
    with atomic_path(folder / "part_0002.parquet") as tmp:
        pl.DataFrame({"a": [2]}).write_parquet(tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latents"]  # swept and released
    assert pl.scan_parquet(folder / "*.parquet").collect()["a"].sort().to_list() == [1, 2]


def test_private_umask_follows_the_output_modes(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDAE_FILE_MODE", raising=False)
    monkeypatch.delenv("MEDAE_DIR_MODE", raising=False)
    previous = medae.io.private_umask()
    try:
        (tmp_path / "plain.txt").write_text("x")  # not through medae.io
        (tmp_path / "made").mkdir()
        assert _mode(tmp_path / "plain.txt") == 0o600 and _mode(tmp_path / "made") == 0o700
        monkeypatch.setenv("MEDAE_FILE_MODE", "640")
        monkeypatch.setenv("MEDAE_DIR_MODE", "750")
        assert medae.io.private_umask() == 0o077
        (tmp_path / "group.txt").write_text("x")
        assert _mode(tmp_path / "group.txt") == 0o640
    finally:
        os.umask(previous)


SWAP_KILLER = """
import os, signal, sys
from pathlib import Path
from medae.io import atomic_dir
event, k = sys.argv[2], int(sys.argv[3])
seen = 0

def hook(name, args):
    global seen
    if name == event:
        seen += 1
        if seen == k:
            os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(hook)
with atomic_dir(Path(sys.argv[1])) as staging:
    (staging / "part_0000.parquet").write_text("new")
    (staging / "part_0001.parquet").write_text("new")
"""


@pytest.mark.parametrize("event,k", [("os.rename", 1), ("os.rename", 2), ("shutil.rmtree", 1),
                                     ("shutil.rmtree", 2), ("os.chmod", 2)])
def test_a_killed_folder_swap_always_leaves_a_complete_folder(tmp_path, event, k):
    """A reader finds the old or the new complete table at the path at every kill point."""
    import signal
    import subprocess
    import sys

    target = tmp_path / "latents" / "ehr"
    target.mkdir(parents=True)
    for name in ("part_0000.parquet", "part_0001.parquet"):
        (target / name).write_text("old")
    res = subprocess.run([sys.executable, "-c", SWAP_KILLER, str(target), event, str(k)])
    assert res.returncode in (0, -signal.SIGKILL)
    contents = {p.name: p.read_text() for p in target.iterdir()}
    assert sorted(contents) == ["part_0000.parquet", "part_0001.parquet"]
    assert len(set(contents.values())) == 1, f"a mix of versions: {contents}"
    with atomic_dir(target) as staging:  # the next writer cleans up after the dead one
        (staging / "part_0000.parquet").write_text("next")
    assert sorted(p.name for p in target.parent.iterdir()) == ["ehr"]
