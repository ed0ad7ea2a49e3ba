"""Atomic output helpers: write beside the target, then rename, so a crash never leaves a
half-written file and readers always see either the old or the new version.

Published files and the folders these helpers create are owner-only by default (0o600 / 0o700:
outputs are patient data). ``MEDAE_FILE_MODE`` / ``MEDAE_DIR_MODE`` (octal, e.g. ``640`` /
``750``) widen that for a trusted group. Existing folders are never re-moded.

Temporary files are not written inside the target's folder but in a hidden sibling folder
(``data/features/.waveform_windows.medae-tmp/``): Polars globs (``dir/*.parquet``) and folder
scans read hidden files, so an in-progress or -- after a SIGKILL -- stale temporary inside the
folder would be read by consumers or break them. Temporary names carry the writer's host and
process id, and the first write of a process into a folder sweeps the temporaries of writers
on this host that are no longer alive.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from medae.errors import ConfigError, DataError

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


def private_umask() -> int:
    """Set the process umask from the output modes (owner-only by default: 0o077) and return
    the previous one. Meant for the CLI's start-up: it also covers files medae does not write
    itself (Polars sinks, DVC's workspace copies, MLflow's database and artifacts)."""
    file_mode, dir_mode = output_modes()
    return os.umask(0o777 & ~(dir_mode | file_mode))


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


_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# .<target name>.<host>.<pid>.<random>.tmp[<suffix>]  (mkstemp/mkdtemp add the random part)
_TEMP_NAME = re.compile(r"^\..+\.([0-9a-f]{8})\.(\d+)\.[a-z0-9_]+\.tmp")
_swept: set[str] = set()


def _temp_prefix(name: str) -> str:
    """``.<name>.<host>.<pid>.``: the start of every temporary's name, as ``_TEMP_NAME``
    (the sweep) reads it back."""
    return f".{name}.{_HOST}.{os.getpid()}."


def _temp_dir(name: str, where: Path) -> str:
    return tempfile.mkdtemp(prefix=_temp_prefix(name), suffix=".tmp", dir=where)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def sweep_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries in ``folder`` left by dead writers on this host; returns them.

    Writers on other hosts (a Dask cluster on a shared file system) are never touched: their
    process ids mean nothing here.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or match.group(1) != _HOST or _alive(int(match.group(2))):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed.append(Path(entry.path))
    return removed


def _sweep_once(folder: Path) -> None:
    key = str(folder.resolve())
    if key not in _swept:  # once per folder and process: folders can hold 10^5 files
        sweep_stale_temporaries(folder)
        _swept.add(key)


def temporaries_folder(folder: Path) -> Path:
    """Where temporaries of files in ``folder`` are written: ``<parent>/.<name>.medae-tmp``,
    or ``folder`` itself when the parent is another file system (rename needs the same one)
    or not writable."""
    parent = folder.parent
    try:
        if parent == folder or os.stat(parent).st_dev != os.stat(folder).st_dev:
            return folder
        return ensure_dir(parent / f".{folder.name}.medae-tmp")
    except OSError:
        return folder


def _release(where: Path, folder: Path) -> None:
    """Remove an empty temporaries folder (another writer's file keeps it)."""
    if where != folder:
        with suppress(OSError):
            where.rmdir()


def _create_temporary(folder: Path, create: Callable[[Path], str]) -> Path:
    """``create(where)`` in ``folder``'s temporaries folder (see :func:`temporaries_folder`)."""
    for _ in range(5):  # a concurrent writer may remove the empty folder between two calls
        where = temporaries_folder(folder)
        _sweep_once(where)
        try:
            return Path(create(where))
        except FileNotFoundError:
            continue
    return Path(create(folder))  # keep losing that race: write beside the target instead


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    ensure_dir(path.parent)
    prefix, suffix = _temp_prefix(path.name), f".tmp{suffix}"

    def create(where: Path) -> str:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=where)
        os.close(fd)
        return name

    return _create_temporary(path.parent, create)


@contextmanager
def staging_dir(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """A scratch directory on ``folder``'s file system, for outputs built in several files and
    then renamed into ``folder``; removed on exit. Named like :func:`atomic_path`'s
    temporaries, so when the process is killed first, the next writer's sweep removes it.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "table"
    >>> with staging_dir(out) as scratch:
    ...     scratch.is_dir(), scratch.parent.name
    (True, '.table.medae-tmp')
    >>> scratch.exists(), scratch.parent.exists()
    (False, False)
    """
    target = ensure_dir(folder)
    scratch = _create_temporary(target, lambda where: _temp_dir(target.name, where))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        _release(scratch.parent, target)


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
    finally:
        _release(tmp.parent, target.parent)


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file's content, or ``None`` when it is missing, unreadable or torn (state files:
    fingerprints, manifests, reports; a lost one only costs a recompute).

    >>> read_json("/nonexistent/_fingerprints.json") is None
    True
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A stage's JSON state file (fingerprints, manifests, reports) as a dict; empty when it
    is missing or torn, which only costs a recompute.

    >>> read_state("/nonexistent/_fingerprints.json")
    {}
    """
    return read_json(path) or {}


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, streamed in 1 MiB blocks (content, not mtime: DVC checkouts
    touch mtimes)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


DIGESTS = "_digests.json"  # the usual name of a file_digests cache in a stage's cache folder


def stamp(path: str | os.PathLike[str]) -> list[int]:
    """What changes whenever a file's bytes may have: size, mtime, ctime (ns) and inode."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def per_file_cached(paths: Sequence[Path], cache: Path | None,
                    compute: Callable[[list[Path]], Iterable[Any]]) -> list[Any]:
    """``compute`` of each path (a JSON value), reusing the value ``cache`` recorded while the
    file's :func:`stamp` is unchanged (what DVC does for its hashes); ``compute`` gets only
    the other paths, in order. Any rewrite or ``dvc checkout`` of a file changes its ctime, so
    a stale value is never reused; a missing or torn cache only costs the computing. Entries
    of files that no longer exist are dropped.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "a").write_bytes(b"xyz")
    >>> size = lambda todo: [p.stat().st_size for p in todo]
    >>> per_file_cached([d / "a"], d / "cache.json", size)
    [3]
    >>> per_file_cached([d / "a"], d / "cache.json", lambda todo: [None for _ in todo])
    [3]
    """
    known = read_state(cache) if cache is not None else {}
    stamps = [stamp(path) for path in paths]
    values: list[Any] = [None] * len(paths)
    todo = []
    for i, (path, now) in enumerate(zip(paths, stamps, strict=True)):
        entry = known.get(str(path))
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == now:
            values[i] = entry[1]
        else:
            todo.append(i)
    if todo:
        for i, value in zip(todo, compute([paths[i] for i in todo]), strict=True):
            values[i] = value
        if cache is not None:
            fresh = {str(p): [now, v] for p, now, v in zip(paths, stamps, values, strict=True)}
            write_json_atomic(cache, {k: v for k, v in known.items() if Path(k).exists()}
                              | fresh)
    return values


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def file_digests(paths: Sequence[Path], cache: Path | None = None) -> list[str]:
    """:func:`file_digest` of every path, one thread per core (hashlib releases the GIL).

    ``cache``: a JSON file of earlier digests reused while their file is unchanged
    (:func:`per_file_cached`): a re-export after a new champion hashes only the window files
    written since.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); (d / "a").write_bytes(b"x")
    1
    >>> file_digests([d / "a"], d / "_digests.json") == file_digests([d / "a"])
    True
    """
    from concurrent.futures import ThreadPoolExecutor

    def digest_all(todo: list[Path]) -> list[str]:
        with ThreadPoolExecutor(max(1, min(usable_cores(), len(todo)))) as pool:
            return list(pool.map(file_digest, todo))

    return per_file_cached(paths, cache, digest_all)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as sorted, indented JSON (deterministic bytes) atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False when
    the platform, C library or file system cannot, so the caller falls back to renames."""
    import ctypes
    import errno

    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EXDEV, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder beside ``path``; on success it replaces ``path``.

    On Linux the two folders are exchanged in one atomic ``renameat2(RENAME_EXCHANGE)``, so a
    reader always finds a complete folder at ``path``, even if the process is killed. Where
    that is not available the old folder is moved aside first and removed only after the new
    one is in place: a crash between the two renames leaves the old one under
    ``.<name>.old`` (and nothing at ``path``) until the next call restores it.
    """
    target = Path(path)
    ensure_dir(target.parent)
    old = target.parent / f".{target.name}.old"
    if old.exists() and not target.exists():
        os.replace(old, target)  # a previous swap was interrupted between its two renames
    shutil.rmtree(old, ignore_errors=True)
    _sweep_once(target.parent)
    staging = Path(_temp_dir(target.name, target.parent))
    try:
        yield staging
        apply_output_modes(staging)
        if target.exists() and _exchange(staging, target):
            shutil.rmtree(staging, ignore_errors=True)  # it now holds the old version
            return
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# Left in an output folder while a stage rewrites it file by file (shards, parts): a failed or
# killed run leaves it, so the next stage refuses a folder that mixes old and new files.
UNFINISHED = "_unfinished.json"


@contextmanager
def unfinished(folder: str | os.PathLike[str], stage: str) -> Iterator[None]:
    """Mark ``folder`` as being rewritten by ``stage`` until the block ends without an error.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> with unfinished(out, "clean_ehr"):
    ...     (out / UNFINISHED).exists()
    True
    >>> check_finished(out, "clean_ehr")  # the block ended: nothing to say
    """
    marker = ensure_dir(folder) / UNFINISHED
    write_json_atomic(marker, {"stage": stage, "host": socket.gethostname(), "pid": os.getpid()})
    yield
    marker.unlink(missing_ok=True)


def check_finished(folder: str | os.PathLike[str], stage: str | None = None) -> None:
    """Refuse ``folder`` while :func:`unfinished` marks it (its last run failed part-way).
    ``stage``: the stage that writes it, when the mark does not say (an unreadable mark).

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (out / UNFINISHED).write_text('{"stage": "ingest_ehr"}')
    >>> check_finished(out)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    medae.errors.DataError: ...: ingest_ehr did not finish its last run ... again first
    """
    marker = Path(folder) / UNFINISHED
    if not marker.exists():
        return
    with suppress(OSError, ValueError, KeyError, TypeError):  # else the caller's name for it
        stage = str(json.loads(marker.read_text(encoding="utf-8"))["stage"])
    rerun = f"`medae run {stage}`" if stage else "it"
    raise DataError(f"{folder}: {stage or 'the stage writing it'} did not finish its last run "
                    "(it failed or was stopped part-way), so this folder mixes old and new "
                    f"files; run {rerun} again first")
