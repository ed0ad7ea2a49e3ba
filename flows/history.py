"""History of data versions: commit the ``dvc.lock`` a refresh produced, and nothing else.

``dvc.lock`` names the exact content (hashes) of every stage output, so one commit per refresh
that changed it is a version history of the data: ``git checkout <rev> -- dvc.lock`` then
``dvc checkout`` (or ``dvc pull``) brings that version back. The commit is a pathspec commit of
``dvc.lock`` alone, so whatever else the user has staged or modified stays as it was.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from medae.errors import MedaeError

log = logging.getLogger("medae.refresh")

LOCK_FILE = "dvc.lock"
# Used only when git has no identity configured (a fresh machine, a service account), so the
# nightly history is still recorded; a configured user.name / user.email always wins.
FALLBACK_IDENTITY = ("-c", "user.name=medae refresh", "-c", "user.email=medae-refresh@localhost")


class LockCommitFailed(MedaeError):
    """git refused the commit (a hook, a merge in progress, signing...)."""


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          check=False)


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else f"git exited {proc.returncode}"


def commit_message(ran: list[str], started: str) -> str:
    """Subject naming the stages that ran, body with when and how to restore.

    >>> print(commit_message(["ingest_ehr", "export_latents"], "2026-11-22T02:00:00+00:00"))
    medae refresh: dvc.lock after ingest_ehr, export_latents
    <BLANKLINE>
    Refresh started 2026-11-22T02:00:00+00:00. Restore this data version with
    `git checkout <this commit> -- dvc.lock && dvc checkout`.
    """
    stages = ", ".join(ran) if ran else "no stage ran in this refresh"
    return (f"medae refresh: {LOCK_FILE} after {stages}\n\n"
            f"Refresh started {started}. Restore this data version with\n"
            f"`git checkout <this commit> -- {LOCK_FILE} && dvc checkout`.")


def commit_lock(root: Path, ran: list[str], started: str) -> str:
    """Commit ``root/dvc.lock`` alone when git sees it changed; returns what happened.

    Skips (a log line, not an error) when git is not installed, ``root`` is not in a git work
    tree, ``dvc.lock`` is git-ignored or unchanged. Raises :class:`LockCommitFailed` with
    git's own last line when git refuses the commit.
    """
    root = Path(root)
    if shutil.which("git") is None:  # a slim deployment image: the refresh itself still counts
        return _skipped("git is not installed")
    if _git(root, "rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        return _skipped(f"{root} is not in a git repository")
    if _git(root, "check-ignore", "-q", "--", LOCK_FILE).returncode == 0:
        return _skipped(f"{LOCK_FILE} is git-ignored")
    status = _git(root, "status", "--porcelain", "--", LOCK_FILE).stdout
    if not status.strip():
        return _skipped(f"{LOCK_FILE} unchanged")
    identity = () if _git(root, "var", "GIT_COMMITTER_IDENT").returncode == 0 \
        else FALLBACK_IDENTITY
    steps = {"commit": (*identity, "commit", "-q", "-m", commit_message(ran, started), "--",
                        LOCK_FILE)}
    if status.startswith("??"):  # a first dvc.lock: a pathspec commit takes only known files
        steps = {"add": ("add", "--", LOCK_FILE), **steps}
    for step, args in steps.items():
        proc = _git(root, *args)
        if proc.returncode != 0:
            raise LockCommitFailed(f"git {step} {LOCK_FILE} failed in {root}: "
                                   f"{_last_line(proc)}")
    sha = _git(root, "rev-parse", "--short", "HEAD").stdout.strip()
    log.info("committed %s as %s (stages run: %s)", LOCK_FILE, sha, ", ".join(ran) or "none")
    return f"committed {sha}"


def _skipped(why: str) -> str:
    log.info("%s not committed: %s", LOCK_FILE, why)
    return f"skipped: {why}"
