"""Shared fixtures: the repository, the offline data mirror, and throw-away repo copies."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
MIRROR_ZIPS = ("PennFudanPed.zip", "mall_dataset.zip")
# Never copied, even if git does not ignore them: outputs and the environment.
NOT_COPIED = {".git", ".venv", "data", "models", "renders"}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline data mirror named by SFAE_DATA_MIRROR; the tests fail without it."""
    value = os.environ.get("SFAE_DATA_MIRROR", "").strip()
    if not value:
        pytest.fail(
            "SFAE_DATA_MIRROR is not set: point it at the folder holding "
            f"{' and '.join(MIRROR_ZIPS)} (CI uses ../shared/data)"
        )
    folder = Path(value).expanduser()
    missing = [name for name in MIRROR_ZIPS if not (folder / name).is_file()]
    if missing:
        pytest.fail(f"SFAE_DATA_MIRROR={folder} lacks {', '.join(missing)}")
    return folder


@pytest.fixture(scope="session")
def make_repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Path]:
    """A factory of fresh git repositories holding the project's source (no data, no models).

    Copies what git tracks or would track (tracked plus untracked-but-not-ignored files),
    then commits it so `dvc repro` and `dvc exp run` work there.
    """

    def make() -> Path:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        copy = tmp_path_factory.mktemp("repo")
        for name in sorted(set(filter(None, listed.split("\0")))):
            source = REPO_ROOT / name
            if Path(name).parts[0] in NOT_COPIED or not source.is_file():
                continue
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
        git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
        for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
            subprocess.run([*git, *command], cwd=copy, check=True, capture_output=True)
        return copy

    return make


@pytest.fixture
def repo_copy(make_repo_copy: Callable[[], Path]) -> Path:
    return make_repo_copy()
