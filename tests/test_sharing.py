"""Two machines share one study the DVC way: each runs its share in its own clone and pushes
its experiments (git refs to a git remote, outputs to a DVC remote); any clone then pulls
them and builds the report. Simulated here with two clones, a bare git repository and a
local folder as the DVC remote, on tiny params."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import environment

from sfae.experiments.records import read_records

pytestmark = pytest.mark.slow

GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


def git(cwd: Path, *args: str) -> None:
    subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True)


def start_study(clone: Path, mirror: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    """`sfae study` in a clone, its output to a log beside it (no pipe to fill up)."""
    log = clone.parent / f"{clone.name}-study.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "sfae.cli", "study", *args],
            cwd=clone,
            env={**environment(clone, mirror), "PYTHONPATH": str(clone / "src")},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return process, log


def finish(process: subprocess.Popen, log: Path) -> None:
    try:
        process.wait(timeout=1200)
    finally:
        process.kill()  # a no-op once it ended; else (timed out, or the other failed) it stops
    assert process.returncode == 0, f"{' '.join(process.args)}:\n{log.read_text()}"


def study(clone: Path, mirror: Path, *args: str) -> None:
    finish(*start_study(clone, mirror, *args))


def test_a_report_built_in_one_clone_holds_the_runs_of_another(
    make_prepared_copy, mirror, tmp_path
):
    source = make_prepared_copy()
    params = yaml.safe_load((source / "params.yaml").read_text())
    params["study"]["seeds"] = [1]
    (source / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (source / "reports" / "runs.jsonl").unlink(missing_ok=True)
    storage = tmp_path / "dvc-storage"
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run([dvc, "remote", "add", "-d", "storage", str(storage)], cwd=source, check=True)
    git(source, "add", "-A")
    git(source, "commit", "-qm", "tiny study with a DVC remote")
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(origin))
    clones = []
    for name in ("machine-a", "machine-b"):
        git(tmp_path, "clone", "-q", str(origin), name)
        # Each machine has prepared its data once before (its DVC cache holds the outputs
        # and the run cache of the data stages): the runs restore them, as they would there.
        shutil.copytree(source / ".dvc" / "cache", tmp_path / name / ".dvc" / "cache")
        clones.append(tmp_path / name)
    a, b = clones

    # The two machines run their shares at the same time, as two machines would, each
    # pushing to the same remotes.
    running = [
        start_study(clone, mirror, "--share", part, "--remote", "origin", "--jobs", "1")
        for clone, part in ((a, "1/2"), (b, "2/2"))
    ]
    try:
        for process, log in running:
            finish(process, log)
    finally:
        for process, _ in running:
            process.kill()
    shares = {
        c: {(r.variant, r.seed) for r in read_records(c / "reports/runs.jsonl")} for c in clones
    }
    # Each machine ran (and recorded) only its own share, together the whole plan.
    assert shares[a] and shares[b] and not shares[a] & shares[b]
    plan = {(v, 1) for v in ("pure", "l1", "l2", "sparse_softabs", "sparse_elu")}
    assert shares[a] | shares[b] == plan

    study(a, mirror, "--report-only", "--remote", "origin")
    records = read_records(a / "reports" / "runs.jsonl")
    assert {(r.variant, r.seed) for r in records} == plan
    report = (a / "reports" / "study.md").read_text()
    for record in records:
        if (record.variant, record.seed) in shares[b]:
            assert record.rev in report, f"B's run {record.name} is not in A's report"
    # A pulled B's outputs from the DVC remote too, not only the git refs.
    pulled = [r for r in records if (r.variant, r.seed) in shares[b]]
    show = subprocess.run(
        [dvc, "exp", "show", "--json", "-n", "5"],
        cwd=a,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(r.rev in show.stdout for r in pulled)
    json.loads(show.stdout)
