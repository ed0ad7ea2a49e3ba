"""The refresh's data history: dvc.lock alone committed to a real git repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.history import LockCommitFailed, commit_lock
from tests.doctests import assert_examples_pass
from tests.flows.project import git

STARTED = "2026-11-22T02:00:00+00:00"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit, a tracked source file and no dvc.lock yet."""
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "test@example.invalid")
    git(root, "config", "user.name", "medae tests")
    (root / "params.yaml").write_text("a: 1\n")
    (root / "notes.md").write_text("v1\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "project")
    return root


def head(root: Path) -> str:
    return git(root, "rev-parse", "HEAD").strip()


def files_in_head(root: Path) -> list[str]:
    return git(root, "show", "--name-only", "--format=", "HEAD").split()


def test_commits_only_dvc_lock_and_leaves_the_users_changes_alone(repo: Path):
    (repo / "params.yaml").write_text("a: 2\n")  # unstaged edit
    (repo / "notes.md").write_text("v2\n")
    git(repo, "add", "notes.md")  # staged edit
    (repo / "scratch.txt").write_text("x")  # untracked
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")

    outcome = commit_lock(repo, ["ingest_ehr", "export_latents"], STARTED)

    assert outcome == f"committed {git(repo, 'rev-parse', '--short', 'HEAD').strip()}"
    assert files_in_head(repo) == ["dvc.lock"]
    assert git(repo, "log", "-1", "--format=%s", "--", "dvc.lock").strip() == (
        "medae refresh: dvc.lock after ingest_ehr, export_latents")
    assert git(repo, "diff", "--cached", "--name-only").split() == ["notes.md"]
    assert git(repo, "diff", "--name-only").split() == ["params.yaml"]
    assert "?? scratch.txt" in git(repo, "status", "--porcelain")


def test_unchanged_lock_makes_no_commit_and_a_changed_one_does(repo: Path):
    (repo / "dvc.lock").write_text("v1\n")
    commit_lock(repo, ["ingest_ehr"], STARTED)
    before = head(repo)
    assert commit_lock(repo, [], STARTED) == "skipped: dvc.lock unchanged"
    assert head(repo) == before

    (repo / "dvc.lock").write_text("v2\n")  # tracked now: no `git add` needed
    assert commit_lock(repo, ["export_latents"], STARTED).startswith("committed ")
    assert git(repo, "rev-parse", "HEAD~1").strip() == before
    assert git(repo, "show", "HEAD:dvc.lock") == "v2\n"


def test_outside_git_or_ignored_lock_is_skipped(tmp_path: Path, repo: Path, monkeypatch):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "dvc.lock").write_text("v1\n")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repo above tmp counts
    assert commit_lock(plain, ["ingest_ehr"], STARTED) == (
        f"skipped: {plain} is not in a git repository")

    before = head(repo)
    (repo / ".gitignore").write_text("dvc.lock\n")
    (repo / "dvc.lock").write_text("v1\n")
    assert commit_lock(repo, ["ingest_ehr"], STARTED) == "skipped: dvc.lock is git-ignored"
    assert head(repo) == before


def test_without_git_on_the_path_the_commit_is_skipped(repo: Path, monkeypatch):
    (repo / "dvc.lock").write_text("v2\n")
    monkeypatch.setenv("PATH", str(repo / "no-such-bin"))
    assert commit_lock(repo, ["ingest_ehr"], STARTED) == "skipped: git is not installed"


def test_without_a_git_identity_the_refresh_identity_is_used(repo: Path, monkeypatch):
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    git(repo, "config", "user.useConfigOnly", "true")  # no guessing from the host name
    (repo / "dvc.lock").write_text("v1\n")
    assert commit_lock(repo, ["ingest_ehr"], STARTED).startswith("committed ")
    assert git(repo, "log", "-1", "--format=%an <%ae>").strip() == (
        "medae refresh <medae-refresh@localhost>")


def test_a_refused_commit_raises_with_gits_reason_and_commits_nothing(repo: Path):
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'policy: no commits tonight' >&2\nexit 1\n")
    hook.chmod(0o755)
    (repo / "dvc.lock").write_text("v1\n")
    before = head(repo)
    with pytest.raises(LockCommitFailed,
                       match=r"git commit dvc\.lock failed in .*: policy: no commits tonight"):
        commit_lock(repo, ["ingest_ehr"], STARTED)
    assert head(repo) == before


def test_doctests():
    assert_examples_pass("flows.history")
    assert_examples_pass("flows.overrides")
