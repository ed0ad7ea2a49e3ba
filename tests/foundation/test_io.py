"""Atomic writes: the previous version survives a failure at any point."""

import pytest

from medae.io import atomic_dir, atomic_path, write_json_atomic


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_write_json_atomic_is_deterministic(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    write_json_atomic(tmp_path / "b.json", {"a": [1, 2], "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_atomic_dir_swaps_and_keeps_old_on_error(tmp_path):
    target = tmp_path / "latents"
    with atomic_dir(target) as stage:
        (stage / "part.parquet").write_text("v1")
    assert (target / "part.parquet").read_text() == "v1"
    with pytest.raises(RuntimeError), atomic_dir(target) as stage:
        (stage / "part.parquet").write_text("v2-half")
        raise RuntimeError("crash")
    assert (target / "part.parquet").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latents"]


def test_atomic_dir_recovers_interrupted_swap(tmp_path):
    """A crash between the two renames leaves only .<name>.old: the next call restores it."""
    target = tmp_path / "latents"
    old = tmp_path / ".latents.old"
    old.mkdir()
    (old / "part.parquet").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(target):
        raise RuntimeError("crash before publishing")
    assert (target / "part.parquet").read_text() == "v1"
