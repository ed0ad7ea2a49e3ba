"""One refresh at a time per workspace: an ``flock`` on ``.dvc/tmp/medae-refresh.lock``.

The kernel releases the lock when the holder dies, so a crashed refresh never blocks the next
one. A second refresh fails fast with the holder's pid and start time instead of waiting on
DVC's own rwlock halfway through the pipeline. Re-entrant within one process, so
``run_refresh`` can take it before Prefect starts and the flow can take it again for
deployment runs.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medae.errors import MedaeError

_HELD: set[Path] = set()


class RefreshBusy(MedaeError):
    """Another refresh holds the workspace lock."""


def lock_path(root: Path) -> Path:
    return root / ".dvc" / "tmp" / "medae-refresh.lock"


@contextmanager
def refresh_lock(root: Path) -> Iterator[None]:
    """Hold the workspace's refresh lock, or raise :class:`RefreshBusy` at once."""
    path = lock_path(Path(root).resolve())
    if path in _HELD:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise RefreshBusy(f"another refresh is already running in {root} ({holder}); "
                              f"nothing was changed - wait for it or check {path}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
                  .encode(), 0)
        _HELD.add(path)
        try:
            yield
        finally:
            _HELD.discard(path)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
