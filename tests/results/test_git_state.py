"""git_state: the commit and whether tracked code differs from it; results tables the recipes
write are not code."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from speechkit.results.environment import git_state

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_a_rerendered_results_table_is_not_dirty_but_changed_code_is(tmp_path: Path) -> None:
    recipe = tmp_path / "egs" / "recipe"
    recipe.mkdir(parents=True)
    (recipe / "RESULTS.md").write_text("| old |\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "start")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert git_state(recipe) == {"commit": head, "dirty": False}
    (recipe / "RESULTS.md").write_text("| new |\n")  # stage 8 rendered it again
    (recipe / "exp").mkdir()
    (recipe / "exp" / "untracked.json").write_text("{}")
    assert git_state(recipe) == {"commit": head, "dirty": False}
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(recipe) == {"commit": head, "dirty": True}


def test_outside_a_repository_the_state_is_unknown(tmp_path: Path) -> None:
    assert git_state(tmp_path) == {"commit": "unknown", "dirty": None}
