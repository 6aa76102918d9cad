"""The runner against the real DVC it is pinned to (pyproject: one minor version).

Two things the runner reads are DVC's own files, not its commands' output: the queue's stash
(which commits queued runs derive from) and the info files of running experiments (their
status and process). An upgrade of DVC may change either: this test fails first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import dvc, environment, tiny_params

from sfae.experiments.runner import DvcExperiments

pytestmark = pytest.mark.slow
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


def processes_in(root: Path) -> list[int]:
    """The processes working in `root` or below it (DVC's queue worker, its runs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")).is_relative_to(root):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_queued_running_and_orphaned_runs_as_the_pinned_dvc_keeps_them(make_repo_copy, mirror):
    root = make_repo_copy()
    tiny_params(root)
    subprocess.run([*GIT, "commit", "-qam", "tiny"], cwd=root, check=True)
    base = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    # A queued run derives from the commit it was queued at, which the stash names.
    # Long enough (a few hundred tiny epochs) to be caught running.
    longer = ["train.epochs=600"] + [
        f"variants.{name}.sparse.finetune_epochs=598" for name in ("sparse_softabs", "sparse_elu")
    ]
    settings = [arg for setting in ["seed=11", *longer] for arg in ("-S", setting)]
    dvc(root, mirror, "exp", "run", "--queue", "evaluate", *settings)
    for key, value in environment(root, mirror).items():
        os.environ[key] = value
    experiments = DvcExperiments(root)
    assert base in experiments.baselines()
    (queued,) = [run for run in experiments.runs() if run.state == "queued"]
    assert queued.params["seed"] == 11
    # Running: its info file says so, with the process that runs it.
    dvc(root, mirror, "queue", "start", "-j", "1")
    deadline = time.monotonic() + 240
    while not [r for r in experiments.runs() if r.state == "running"]:
        ended = [r for r in experiments.runs() if r.rev != r.baseline and r.state != "queued"]
        assert not ended, dvc(root, mirror, "queue", "logs", ended[0].name, check=False).stdout
        assert time.monotonic() < deadline, "the queued run never started"
        time.sleep(1)
    assert experiments.reap_orphans() == []  # alive: left alone
    # The session ends: every process of it is gone, DVC still says running.
    for pid in processes_in(root):
        os.kill(pid, signal.SIGKILL)
    time.sleep(2)
    infos = list((root / ".dvc" / "tmp" / "exps" / "run").glob("*/*.run"))
    assert infos and json.loads(infos[0].read_text())["status"] in (1, 2)
    assert experiments.reap_orphans() == [queued.name]
    assert not [r for r in experiments.runs() if r.state in ("queued", "running")]
