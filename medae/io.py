"""Atomic output helpers: write beside the target, then rename, so a crash never leaves a
half-written file and readers always see either the old or the new version.

Published files and the folders these helpers create are owner-only by default (0o600 / 0o700:
outputs are patient data). ``MEDAE_FILE_MODE`` / ``MEDAE_DIR_MODE`` (octal, e.g. ``640`` /
``750``) widen that for a trusted group. Existing folders are never re-moded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medae.errors import ConfigError

DEFAULT_FILE_MODE = 0o600
DEFAULT_DIR_MODE = 0o700


def _mode_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        mode = int(raw, 8)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an octal file mode such as 600") from None
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"{name}={raw!r}: expected an octal file mode such as 600")
    return mode


def output_modes() -> tuple[int, int]:
    """``(file_mode, dir_mode)`` for outputs: owner-only unless the environment widens them.

    >>> output_modes() if "MEDAE_FILE_MODE" not in os.environ else (0o600, 0o700)
    (384, 448)
    """
    return (_mode_from_env("MEDAE_FILE_MODE", DEFAULT_FILE_MODE),
            _mode_from_env("MEDAE_DIR_MODE", DEFAULT_DIR_MODE))


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` and any missing parents with the output folder mode (existing folders
    keep their mode: a user's project root is theirs to set)."""
    target = Path(path)
    missing = [p for p in (target, *target.parents) if not p.exists()]
    _, dir_mode = output_modes()
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:  # created concurrently by another writer
            continue
        os.chmod(folder, dir_mode)
    return target


def apply_output_modes(path: str | os.PathLike[str]) -> None:
    """Give ``path`` (a file, or a folder and everything under it) the output modes; for stage
    code that writes with its own writers (e.g. partitioned sinks) before publishing."""
    file_mode, dir_mode = output_modes()
    root = Path(path)
    if not root.is_dir():
        os.chmod(root, file_mode)
        return
    os.chmod(root, dir_mode)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), dir_mode)
        for name in files:
            os.chmod(os.path.join(folder, name), file_mode)


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    ensure_dir(path.parent)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    return Path(name)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success it is renamed onto ``path``.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> target.read_text()
    'hello'
    """
    target = Path(path)
    tmp = _tmp_sibling(target, target.suffix)
    try:
        yield tmp
        os.chmod(tmp, output_modes()[0])  # the writer may have re-created it with umask bits
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as sorted, indented JSON (deterministic bytes) atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder beside ``path``; on success it replaces ``path``.

    The old folder is moved aside first and removed only after the new one is in place, so a
    crash at any point leaves either the old or the new complete folder at ``path`` (or the old
    one under ``.<name>.old``, which the next call restores before starting).
    """
    target = Path(path)
    ensure_dir(target.parent)
    old = target.parent / f".{target.name}.old"
    if old.exists() and not target.exists():
        os.replace(old, target)  # a previous swap was interrupted between its two renames
    shutil.rmtree(old, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield staging
        apply_output_modes(staging)
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
