"""run.json's record of the code a run ran: the git commit of the vlsa source (a new user found none)."""

import shutil
import subprocess

import pytest

from vlsa.engine.runinfo import source_revision

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_source_revision_is_the_checkout_commit_and_says_when_tracked_files_changed(tmp_path):
    package = tmp_path / "src" / "vlsa"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    assert source_revision(package) == {"commit": _git(tmp_path, "rev-parse", "HEAD"), "dirty": False}
    (tmp_path / "notes.txt").write_text("untracked files are not the code that ran\n")
    (tmp_path / "results.md").write_text("one\n")
    _git(tmp_path, "add", "results.md")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "two")
    (tmp_path / "results.md").write_text("a benchmark rewrote its results: not the package's code\n")
    assert source_revision(package) == {"commit": _git(tmp_path, "rev-parse", "HEAD"), "dirty": False}
    (package / "__init__.py").write_text("x = 2\n")
    assert source_revision(package)["dirty"] is True


def test_an_untracked_copy_inside_a_repository_records_no_commit(tmp_path):
    """A wheel installed into a repository's (ignored) .venv must not claim the repository's commit."""
    _git(tmp_path, "init", "-q")
    installed = tmp_path / ".venv" / "site-packages" / "vlsa"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("x = 1\n")
    assert source_revision(installed) is None
