"""Shared fixtures: the repository, the offline data mirror, and throw-away repo copies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parent.parent
MIRROR_ZIPS = ("PennFudanPed.zip", "mall_dataset.zip")
# Never copied, even if git does not ignore them: outputs and the environment.
NOT_COPIED = {".git", ".venv", "data", "models", "renders"}
# The longest files (each well over a minute on 2 cores), run first: `make test` spreads
# whole files over two workers (pytest-xdist), and a long file started last would run alone.
LONGEST_FIRST = (
    "test_pipeline_training.py",
    "test_sharing.py",
    "test_training_jax.py",
    "test_no_litter.py",
    "test_benchmark.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="module")
def sweep():
    """The paper net's sweep as params.yaml sets it."""
    from sfae.config import read_yaml
    from sfae.experiments.sweep import Sweep
    from sfae.nn.regularisers.registry import REGULARISERS
    from sfae.plans import load_plans

    path = REPO_ROOT / "params.yaml"
    return Sweep(load_plans(path, REGULARISERS), read_yaml(path.read_text()))


@pytest.fixture(scope="module")
def unet_sweep():
    """The U-Net's sweep as params.yaml sets it."""
    from sfae.config import read_yaml
    from sfae.experiments.sweep import Sweep
    from sfae.nn.regularisers.registry import REGULARISERS
    from sfae.plans import load_plans

    path = REPO_ROOT / "params.yaml"
    return Sweep(load_plans(path, REGULARISERS), read_yaml(path.read_text()), "unet")


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


# ---------------------------------------------------------------- running stages through DVC

EPOCHS = 4


def tiny_params(root: Path) -> None:
    """Small enough that every training stage takes seconds."""
    path = root / "params.yaml"
    document = yaml.safe_load(path.read_text())
    document["data"]["image_size"] = 32
    document["mall"]["frames"] = 20
    # Not the 1980 frames after them: reading those takes each pipeline ~15 s.
    document["mall"]["unlabeled_frames"] = 8
    document["variants"]["sparse_softabs_frames"]["sparse"]["unlabeled_frames"] = 8
    document["train"]["epochs"] = EPOCHS
    document["train"]["iou_every"] = 2
    for name in ("sparse_softabs", "sparse_elu"):
        document["variants"][name]["sparse"].update(pretrain_epochs=2, finetune_epochs=2)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def environment(root: Path, mirror: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "SFAE_DATA_MIRROR": str(mirror),
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(root.parent / f"{root.name}-dvc-site-cache"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def dvc(root: Path, mirror: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=root,
        env=environment(root, mirror),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, (
            f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


PREPARING_STAGES = (
    "download_pennfudan",
    "download_mall",
    "preprocess_pennfudan",
    "preprocess_mall",
    "preprocess_unlabeled",
)


@pytest.fixture(scope="session")
def make_prepared_copy(
    make_repo_copy, mirror: Path, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Callable[[], Path]:
    """A factory of repository copies on tiny params whose data stages have run and are
    committed (their outputs, dvc.lock and DVC's cache, run cache included, come along).

    The tests of training, faults and the queue start there instead of preparing the data
    again each (~25 s a copy); the data stages themselves are tested from scratch
    (test_pipeline_data.py, and the `dvc repro` of test_pipeline_training.py). Built once for
    the whole session: under pytest-xdist the workers share it, the first builds it."""
    # Under xdist each worker has its own basetemp, in one folder of this session's run.
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    template = shared / "tiny-prepared"
    with FileLock(str(shared / "tiny-prepared.lock")):
        if not (template / ".git").is_dir():
            root = make_repo_copy()
            tiny_params(root)
            dvc(root, mirror, "repro", *PREPARING_STAGES)
            git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
            for command in (["add", "-A"], ["commit", "-qm", "tiny params, data prepared"]):
                subprocess.run([*git, *command], cwd=root, check=True, capture_output=True)
            shutil.copytree(root, template.with_suffix(".partial"), symlinks=True)
            template.with_suffix(".partial").rename(template)  # whole, or not there at all

    def make() -> Path:
        copy = tmp_path_factory.mktemp("prepared")
        shutil.copytree(template, copy, symlinks=True, dirs_exist_ok=True)
        return copy

    return make
