"""No litter, whatever DVC restores: a stage killed with kill -9 while it writes, then
`dvc repro`, leaves no staging file or folder in the workspace, also when DVC restores the
killed stage's outputs from its run cache without running the stage again (so no code of
ours runs to clean up after it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, dvc, environment, output

from sfae.atomic import SHARED_STAGING

# staged_outputs' names: `.<name>.<8 random>` beside a target, `<name>.<8 random>` in the
# shared staging area (which is DVC's own temp folder, not the workspace).
BESIDE_NAME = re.compile(r"\..+\.[a-z0-9_]{8}")
SHARED_NAME = re.compile(r"(.+)\.[a-z0-9_]{8}")


def training_stage(dvc_yaml: Path = REPO_ROOT / "dvc.yaml") -> str:
    """The stage that writes models/model.keras, whatever it is called."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    (name,) = [name for name, stage in stages.items() if "models/model.keras" in outputs(stage)]
    return name


def outputs(stage: dict) -> list[str]:
    """Every path a stage of dvc.yaml writes: its outs, metrics and plots."""
    entries = [e for key in ("outs", "metrics", "plots") for e in stage.get(key, [])]
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries]


def staging_names(root: Path) -> list[Path]:
    """Every file or folder of the workspace (all but .git and DVC's .dvc) named as a
    staging folder beside its target is named."""
    found = []
    for folder, folders, files in os.walk(root):
        if Path(folder) == root:
            folders[:] = [name for name in folders if name not in (".git", ".dvc")]
        found += [Path(folder, name) for name in folders + files if BESIDE_NAME.fullmatch(name)]
    return sorted(found)


def shared_staging(root: Path) -> set[str]:
    """The target names of the staging folders in the repository's shared staging area."""
    area = root / SHARED_STAGING
    names = [p.name for p in area.iterdir()] if area.is_dir() else []
    return {SHARED_NAME.fullmatch(name).group(1) for name in names}


def git_status(root: Path) -> list[str]:
    command = ["git", "status", "--porcelain", "--untracked-files=all"]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, check=True).stdout


# Runs a stage script as `python` would, but stops it for good just before it renames the
# first of its outputs into place: everything is staged then, so a kill -9 there leaves the
# most a killed stage can leave. The stage's command finds it first on PATH.
PAUSING_PYTHON = """#!{python}
import os, runpy, sys, time

OUTS = os.environ["PAUSE_BEFORE_RENAMING_INTO"].split(os.pathsep)


def pause(event, args):
    if event == "os.rename":
        into = os.path.abspath(os.fspath(args[1]))
        if any(out == into or out.startswith(into + os.sep) for out in OUTS):
            with open(os.environ["PAUSED_PID_FILE"], "w") as paused:
                paused.write(str(os.getpid()))
            time.sleep(600)


sys.addaudithook(pause)
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def kill_while_writing(root: Path, mirror: Path, stage: str, paths: list[str], scratch: Path):
    """`dvc repro --force` of one stage, its python killed with kill -9 before its rename."""
    bin_dir = scratch / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(PAUSING_PYTHON.format(python=sys.executable))
    (bin_dir / "python").chmod(0o755)
    paused = scratch / f"{stage}.pid"
    env = environment(root, mirror)
    env |= {
        "PATH": os.pathsep.join([str(bin_dir), env["PATH"]]),
        "PAUSE_BEFORE_RENAMING_INTO": os.pathsep.join(str(root / path) for path in paths),
        "PAUSED_PID_FILE": str(paused),
    }
    log = scratch / f"{stage}.log"
    with log.open("w") as sink:
        running = subprocess.Popen(
            [str(Path(sys.executable).parent / "dvc"), "repro", "--force", "--single-item", stage],
            cwd=root,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 240
            while not paused.is_file() or not paused.read_text().strip():
                assert running.poll() is None, f"{stage} ended unpaused:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"{stage} never paused:\n{log.read_text()}"
                time.sleep(0.05)
            os.kill(int(paused.read_text()), signal.SIGKILL)
        finally:
            running.wait(timeout=120)
    assert running.returncode != 0, log.read_text()


@pytest.mark.slow
def test_a_stage_killed_while_it_writes_leaves_no_litter_once_dvc_repro_restores_it(
    make_prepared_copy, mirror: Path, tmp_path: Path
):
    root = make_prepared_copy()
    dvc(root, mirror, "repro")  # every stage once: the run cache holds them all
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    # download_mall and evaluate are restored from the run cache, without running them.
    killed = (("download_mall", True), ("evaluate", True), (training_stage(), False))
    for stage, restored in killed:
        before = git_status(root)
        kill_while_writing(root, mirror, stage, outputs(stages[stage]), tmp_path)
        # What the killed stage staged lies out of the workspace, and only that: the earlier
        # stages' staging (of killed writers) went with this run.
        parts = {part for path in outputs(stages[stage]) for part in Path(path).parts}
        assert shared_staging(root) <= parts, shared_staging(root)
        repro = dvc(root, mirror, "repro")
        if restored:
            assert f"Stage '{stage}' is cached - skipping run" in output(repro), output(repro)
        assert git_status(root) == before
        assert staging_names(root) == []
