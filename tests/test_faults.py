"""Faults leave no litter, no tracebacks and no needless re-runs.

Outputs are staged out of the workspace in a DVC repository; staging folders of killed writers
are cleared by the next writer; damaged inputs and unwritable outputs are one `error:` line;
the same weights give the same models/model.keras bytes; a killed training leaves no
half-written metrics.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import runpy
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from conftest import dvc, environment, output
from test_no_litter import shared_staging, staging_names, training_stage

import sfae.nn.training
from sfae.atomic import SHARED_STAGING, staged_outputs
from sfae.data.prepare import save_arrays
from sfae.errors import SfaeError
from sfae.inference.predict import load_trained
from sfae.nn.model import build_model
from sfae.nn.regularisers.registry import load_config
from sfae.nn.saving import deterministic_archive, load_weights, save_model_deterministic
from sfae.paths import ProjectPaths

# ---------------------------------------------------------------- staging folders


def is_staging_folder(path: Path, target: Path) -> bool:
    """Whether path is named as a staging folder of target: beside it, or in a shared area."""
    if (beside := path.parent == target.parent) or path.parent.match(f"*/{SHARED_STAGING}"):
        return bool(
            re.fullmatch(re.escape(f"{'.' * beside}{target.name}.") + "[a-z0-9_]{8}", path.name)
        )
    return False


def staging_folder(target: Path) -> Path:
    """A staging folder of target as a killed writer leaves it: named, filled, unlocked."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    (folder / target.name).mkdir()
    (folder / target.name / "half.bin").write_bytes(b"half")
    return folder


@pytest.mark.parametrize("logged", ['{"iou": {"train": 0.5, "test": 0.4}}', '{"iou": {"val"', None])
def test_a_selection_runs_evaluate_names_the_log_without_a_validation_iou(tmp_path, logged):
    """A selection run's evaluate reads the validation IoU that train logged: a log without it
    (missing, damaged, from a run without validation images) is one error naming the file."""
    stage = runpy.run_path(str(Path(__file__).parents[1] / "stages" / "evaluate.py"))
    paths = ProjectPaths(tmp_path)
    log = paths.finetune_log / "metrics.json"
    if logged is not None:
        log.parent.mkdir(parents=True)
        log.write_text(logged)
    with pytest.raises(SfaeError) as raised:
        stage["selection_scores"](paths, 17)
    assert str(raised.value) == f"{log}: no validation IoU (iou.val) logged by train"


def test_a_writer_removes_the_stale_staging_folders_of_its_own_target_only(tmp_path):
    target = tmp_path / "models" / "model.keras"
    stale = [staging_folder(target), staging_folder(target)]
    others = [
        staging_folder(tmp_path / "models" / "model"),  # another target, a shorter name
        staging_folder(tmp_path / "models" / "model.keras.x"),  # another, a longer name
        staging_folder(tmp_path / "models" / "pretrained.weights.h5"),
        tmp_path / "models" / ".model.keras.notmkdtemp",  # not mkdtemp's 8 characters
        tmp_path / "models" / ".model.keras.abcdefgh",  # a file, not a staging folder
    ]
    others[-2].mkdir()
    others[-1].write_text("not ours")
    assert all(is_staging_folder(folder, target) for folder in stale)
    assert not any(is_staging_folder(path, target) for path in others[:-1])

    with staged_outputs(target) as (staged,):
        staged.write_text("new")
    assert target.read_text() == "new"
    assert not any(folder.exists() for folder in stale)
    assert all(path.exists() for path in others)


def test_a_live_writers_staging_folder_is_kept(tmp_path):
    """flock is per open file, so a second writer in this process stands for another process."""
    target = tmp_path / "metrics" / "finetune"
    with staged_outputs(target) as (first,):
        first.mkdir()
        (first / "metrics.json").write_text("{}")
        with staged_outputs(target) as (second,):
            assert first.is_dir() and second.parent != first.parent
            second.mkdir()
        assert (first / "metrics.json").read_text() == "{}"
    assert (target / "metrics.json").read_text() == "{}"  # the last to finish wins
    assert [p.name for p in target.parent.iterdir()] == ["finetune"]


def dvc_repository(folder: Path) -> Path:
    """folder made a DVC repository, as far as staging goes: it holds a .dvc folder."""
    (folder / ".dvc").mkdir()
    return folder


def test_in_a_dvc_repository_outputs_are_staged_in_dvcs_temp_folder_not_beside_them(tmp_path):
    root = dvc_repository(tmp_path)
    targets = (root / "metrics" / "evaluate.json", root / "plots" / "evaluate")
    with staged_outputs(*targets) as (scores, plots):
        assert [p.parent.parent for p in (scores, plots)] == [root / SHARED_STAGING] * 2
        assert is_staging_folder(scores.parent, targets[0])
        assert not is_staging_folder(scores.parent, targets[1])
        scores.write_text("{}")
        plots.mkdir()
        (plots / "errors.png").write_bytes(b"png")
        # Nothing but the outputs' (empty) folders in the workspace while it writes.
        workspace = [p for p in root.rglob("*") if ".dvc" not in p.relative_to(root).parts]
        assert sorted(p.relative_to(root).as_posix() for p in workspace) == ["metrics", "plots"]
    assert targets[0].read_text() == "{}"
    assert (targets[1] / "errors.png").read_bytes() == b"png"
    assert list((root / SHARED_STAGING).iterdir()) == []


def test_a_writer_in_a_repository_removes_every_killed_writers_staging_folder(tmp_path):
    """DVC may restore a killed stage's outputs without running it: any later writer cleans."""
    root = dvc_repository(tmp_path)
    area = root / SHARED_STAGING
    area.mkdir(parents=True)
    killed = [Path(tempfile.mkdtemp(dir=area, prefix=f"{name}.")) for name in ("mall_dataset", "x")]
    (killed[0] / "mall_dataset").mkdir()
    (killed[0] / "mall_dataset" / "frame.jpg").write_bytes(b"half")
    older = staging_folder(root / "data" / "raw" / "mall_dataset")  # an older sfae's, beside
    with staged_outputs(root / "metrics" / "mall.json") as (live,):
        live.write_text("{}")
        with staged_outputs(root / "data" / "raw" / "mall_dataset") as (staged,):
            staged.mkdir()
            assert not any(folder.exists() for folder in [*killed, older])
            assert live.parent.is_dir()  # a live writer's is kept
    assert shared_staging(root) == set() and staging_names(root) == []
    assert sorted(p.name for p in (root / "data" / "raw").iterdir()) == ["mall_dataset"]


def test_across_mounts_staging_stays_beside_the_target(tmp_path):
    """The final rename must stay atomic: DVC's temp folder on another mount is not used."""
    elsewhere = Path("/dev/shm")
    if not elsewhere.is_dir() or elsewhere.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system than the test's temp folder")
    root = dvc_repository(tmp_path)
    with tempfile.TemporaryDirectory(dir=elsewhere) as other_mount:
        (root / ".dvc" / "tmp").symlink_to(other_mount)
        target = root / "models" / "model.keras"
        with staged_outputs(target) as (staged,):
            assert is_staging_folder(staged.parent, target)
            assert staged.parent.parent == target.parent
            staged.write_text("model")
        assert target.read_text() == "model" and list(Path(other_mount).iterdir()) == []
    assert [p.name for p in target.parent.iterdir()] == ["model.keras"]


def test_across_a_bind_mount_of_the_same_file_system_staging_stays_beside_the_target(
    tmp_path, monkeypatch
):
    """Same device, other mount: the kernel refuses renames between them (EXDEV)."""
    root = dvc_repository(tmp_path)
    area = root / SHARED_STAGING
    rename, replace = os.rename, os.replace

    def across_mounts(real):
        def renamed(source, destination, *args, **kwargs):
            inside = [Path(p).absolute().is_relative_to(area) for p in (source, destination)]
            if inside[0] != inside[1]:
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(source))
            return real(source, destination, *args, **kwargs)

        return renamed

    monkeypatch.setattr(os, "rename", across_mounts(rename))
    monkeypatch.setattr(os, "replace", across_mounts(replace))
    target = root / "data" / "raw" / "mall_dataset"
    with staged_outputs(target) as (staged,):
        assert is_staging_folder(staged.parent, target)
        assert staged.parent.parent == target.parent
        staged.mkdir()
    assert target.is_dir() and [p.name for p in target.parent.iterdir()] == ["mall_dataset"]
    assert shared_staging(root) == set()


def test_an_unwritable_output_folder_is_one_error_naming_the_output(tmp_path, monkeypatch):
    target = tmp_path / "models" / "model.keras"
    target.parent.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: refuse as a read-only folder would
        attempted = target.parent / ".model.keras.abcdefgh"

        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied", str(attempted))

        monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    else:
        target.parent.chmod(0o555)
    try:
        with pytest.raises(SfaeError) as caught, staged_outputs(target):
            pytest.fail("the body must not run")
    finally:
        target.parent.chmod(0o755)
    assert str(caught.value) == f"{target}: not writable (permission denied); nothing was written"
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "what"),
    [(errno.ENOSPC, "disk full"), (errno.EROFS, "not writable (read-only file system)")],
)
def test_a_failed_write_in_the_body_keeps_the_old_output(tmp_path, code, what):
    """h5py and Keras raise OSError(28) naming no file: the output is named instead."""
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(SfaeError) as caught, staged_outputs(target) as (staged,):
        staged.write_text("half")
        raise OSError(code, os.strerror(code))
    assert str(caught.value).startswith(f"{target}: {what}")
    assert "\n" not in str(caught.value)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_full_disk_names_the_file_the_error_names(tmp_path):
    targets = (tmp_path / "metrics" / "scores.json", tmp_path / "plots" / "evaluate")
    with pytest.raises(SfaeError) as caught, staged_outputs(*targets) as (scores, plots):
        plots.mkdir()
        raise OSError(errno.ENOSPC, "No space left on device", str(plots / "errors.png"))
    assert str(caught.value) == f"{targets[1]}: disk full (no space left on device); " + (
        "nothing was written"
    )
    assert [p for p in tmp_path.rglob("*")] == []


def test_a_full_disk_naming_no_file_names_the_outputs_on_the_fullest_disk(tmp_path, monkeypatch):
    """h5py's OSError(28) names no file: of outputs on two disks, those on the one with the
    least space left are named (both, were it one disk)."""
    targets = (tmp_path / "metrics" / "scores.json", tmp_path / "models" / "model.keras")
    real = os.statvfs

    def statvfs(path):  # the models folder's disk has 10 blocks left, the other 1000
        status = real(path)
        blocks = 10 if "model.keras" in str(path) else 1000
        return type("Status", (), {"f_bavail": blocks, "f_frsize": status.f_frsize})

    with pytest.raises(SfaeError) as caught, staged_outputs(*targets) as (scores, model):
        scores.write_text("{}")
        model.write_bytes(b"half")
        monkeypatch.setattr(os, "statvfs", statvfs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(caught.value) == f"{targets[1]}: disk full (no space left on device); " + (
        "nothing was written"
    )
    monkeypatch.undo()
    with pytest.raises(SfaeError) as caught, staged_outputs(*targets) as (scores, model):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(caught.value).startswith(f"{targets[0]}, {targets[1]}: disk full")
    assert [p for p in tmp_path.rglob("*")] == []


# ---------------------------------------------------------------- model files


@pytest.fixture(scope="module")
def tiny_config(repo_root: Path):
    config = load_config(repo_root / "params.yaml")
    return replace(config, data=replace(config.data, image_size=32))


def rewritten(data: bytes, edit) -> bytes:
    """The archive with each entry passed through edit(name, bytes), in reverse order."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        entries = [(info.filename, source.read(info)) for info in source.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name, content in reversed(entries):
            info = zipfile.ZipInfo(name, date_time=(2031, 7, 4, 12, 30, 2))
            target.writestr(info, edit(name, content))
    return buffer.getvalue()


def test_the_same_weights_give_the_same_model_file(tiny_config, tmp_path):
    first, second = build_model(tiny_config), build_model(tiny_config)  # other object ids
    save_model_deterministic(first, tmp_path / "first.keras")
    save_model_deterministic(second, tmp_path / "second.keras")
    saved = (tmp_path / "first.keras").read_bytes()
    assert saved == (tmp_path / "second.keras").read_bytes()

    # What differs between two plain saves: the date, object ids, entry dates and order.
    def edit(name, content):
        if name == "metadata.json":
            return json.dumps({**json.loads(content), "date_saved": "2031-07-04@12:30:02"})
        if name == "config.json":
            return content.replace(b'"shared_object_id": 1', b'"shared_object_id": 140524114')
        return content

    other_save = rewritten(saved, edit)
    assert other_save != saved and deterministic_archive(other_save) == saved
    assert b'"shared_object_id": 1' in saved  # the renumbering happened at all
    assert json.loads(zipfile.ZipFile(tmp_path / "first.keras").read("metadata.json"))[
        "date_saved"
    ].startswith("1980-01-01")

    images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    expected = first.predict_on_batch(images)
    for loaded in (
        keras.models.load_model(tmp_path / "first.keras"),
        load_trained(tmp_path / "first.keras"),
    ):
        for got, want in zip(loaded.predict_on_batch(images), expected, strict=True):
            np.testing.assert_array_equal(got, want)


def replace_file(path: Path, data: bytes) -> None:
    """A new file at path: DVC links its outputs to its cache (cache.type), read-only, and a
    write through the link would change the cache."""
    path.unlink()
    path.write_bytes(data)


def flip_bytes(data: bytes) -> bytes:
    damaged = bytearray(data)
    middle = len(damaged) // 2
    damaged[middle : middle + 8] = bytes(b ^ 0xFF for b in damaged[middle : middle + 8])
    return bytes(damaged)


@pytest.fixture(scope="module")
def saved_files(tiny_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    model = build_model(tiny_config)
    save_model_deterministic(model, folder / "model.keras")
    model.save_weights(folder / "pretrained.weights.h5")
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (flip_bytes, "damaged (model.weights.h5 fails its checksum)"),
        (lambda data: data[: len(data) // 2], "truncated or damaged, not a .keras zip archive"),
        (lambda data: b"", "empty (truncated)"),
        ("pretrained.weights.h5", "truncated or damaged, not a .keras zip archive"),
    ],
    ids=["flipped", "truncated", "empty", "weights"],
)
def test_a_damaged_model_file_is_one_error(saved_files, tmp_path, damage, says):
    path = tmp_path / "model.keras"
    good = saved_files["model.keras"]
    path.write_bytes(saved_files[damage] if isinstance(damage, str) else damage(good))
    with pytest.raises(SfaeError) as caught:
        load_trained(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {says}") and "\n" not in message
    with pytest.raises(SfaeError, match="not found"):
        load_trained(tmp_path / "missing.keras")


@pytest.mark.parametrize(
    "damage",
    [lambda data: data[: len(data) // 2], lambda data: b"", "model.keras"],
    ids=["truncated", "empty", "model"],
)
def test_a_damaged_weights_file_is_one_error(saved_files, tiny_config, tmp_path, damage):
    path = tmp_path / "pretrained.weights.h5"
    good = saved_files["pretrained.weights.h5"]
    path.write_bytes(saved_files[damage] if isinstance(damage, str) else damage(good))
    with pytest.raises(SfaeError) as caught:
        load_weights(build_model(tiny_config), path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "damaged" in message or "empty" in message


# ---------------------------------------------------------------- through DVC and the stages


@dataclass
class Trained:
    root: Path
    mirror: Path
    model: bytes
    metrics: dict
    loss: str
    lock: dict


TRAINING = training_stage()  # the stage that writes models/model.keras


def results(root: Path) -> tuple[bytes, dict, str, dict]:
    metrics = json.loads((root / "metrics" / "finetune" / "metrics.json").read_text())
    for varying in ("seconds", "machine"):
        metrics.pop(varying, None)
    loss = (root / "metrics" / "finetune" / "plots" / "metrics" / "train" / "loss.tsv").read_text()
    outs = yaml.safe_load((root / "dvc.lock").read_text())["stages"][TRAINING]["outs"]
    # metrics.json holds the seconds the run took: its hash differs from run to run.
    lock = {out["path"]: out["md5"] for out in outs if not out["path"].endswith("metrics.json")}
    return (root / "models" / "model.keras").read_bytes(), metrics, loss, lock


@pytest.fixture(scope="module")
def trained(make_prepared_copy, mirror: Path) -> Trained:
    """A clean `dvc repro` of the training on tiny params: what every fault must lead back to."""
    root = make_prepared_copy()
    dvc(root, mirror, "repro", TRAINING)
    return Trained(root, mirror, *results(root))


@pytest.mark.slow
def test_a_killed_training_leaves_no_litter_and_reruns_to_the_same_model(trained: Trained):
    root = trained.root
    running = subprocess.Popen(
        [str(Path(sys.executable).parent / "dvc"), "repro", "--force", "--single-item", TRAINING],
        cwd=root,
        env=environment(root, trained.mirror),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: dvc and the stage it runs
    )
    deadline = time.monotonic() + 240
    try:
        # Killed mid-training: its log already holds a metrics.json of the first epochs.
        while not list(root.glob(f"{SHARED_STAGING}/finetune.*/finetune/metrics.json")):
            assert running.poll() is None, "the training ended before it could be killed"
            assert time.monotonic() < deadline, "the training never started logging"
            time.sleep(0.02)
        os.killpg(running.pid, signal.SIGKILL)
    finally:
        running.wait(timeout=60)
    assert running.returncode == -signal.SIGKILL
    assert staging_names(root) == []  # what it staged lies out of the workspace
    assert shared_staging(root) == {"model.keras", "pretrain", "finetune"}
    assert not (root / "metrics" / "finetune" / "metrics.json").exists()  # none half-written

    rerun = dvc(root, trained.mirror, "repro", TRAINING)
    assert f"Running stage '{TRAINING}'" in output(rerun)
    assert staging_names(root) == [] and shared_staging(root) == set()  # the rerun cleaned
    model, metrics, loss, lock = results(root)
    assert model == trained.model  # same seed, same bytes: nothing after it re-runs
    assert (metrics, loss, lock) == (trained.metrics, trained.loss, trained.lock)


@pytest.mark.slow
def test_evaluate_on_a_damaged_model_prints_one_line(trained: Trained):
    root = trained.root
    model = root / "models" / "model.keras"
    good = model.read_bytes()
    replace_file(model, flip_bytes(good))
    try:
        result = subprocess.run(
            [sys.executable, "stages/evaluate.py"],
            cwd=root,
            env={**environment(root, trained.mirror), "PYTHONPATH": "src"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        replace_file(model, good)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {model}: damaged (model.weights.h5 fails its checksum); "
        + ("run `dvc repro` to make it again")
    ]
    assert staging_names(root) == [] and shared_staging(root) == set()


def run_stage_here(root: Path, stage: str, monkeypatch, capsys) -> str:
    """Run a stage script in this process (no TensorFlow start-up); return its one error line."""
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "argv", [stage])
    # Keep this process's TensorFlow as it is: the stage would enable op determinism.
    monkeypatch.setattr(sfae.nn.training, "configure_determinism", lambda seed: None)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(root / "stages" / f"{stage}.py"), run_name="__main__")
    assert exited.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "name", "damage", "says"),
    [
        ("evaluate", "models/model.keras", lambda d: d[:-100], "truncated or damaged"),
        ("evaluate", "models/model.keras", lambda d: b"", "empty (truncated)"),
        (TRAINING, "data/prepared/pennfudan.npz", lambda d: d[:50000], "unreadable prepared"),
        (TRAINING, "data/prepared/pennfudan.npz", "mall", "not prepared Penn-Fudan arrays"),
    ],
    ids=["evaluate-truncated", "evaluate-empty", "training-truncated-arrays", "training-mall"],
)
def test_a_stage_on_a_damaged_input_prints_one_line(
    trained: Trained, monkeypatch, capsys, stage, name, damage, says
):
    root = trained.root
    path = root / name
    good = path.read_bytes()
    path.unlink()  # not written through: DVC may have linked it to its cache
    if damage == "mall":  # Mall arrays where the Penn-Fudan arrays belong
        save_arrays(path, {"frames": np.zeros((2, 32, 32, 3), np.float32)})
    else:
        path.write_bytes(damage(good))
    try:
        line = run_stage_here(root, stage, monkeypatch, capsys)
    finally:
        replace_file(path, good)
    assert line.startswith(f"error: {path}: {says}"), line
    assert staging_names(root) == [] and shared_staging(root) == set()
