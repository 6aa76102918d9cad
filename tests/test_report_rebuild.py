"""The committed reports are a pure function of the committed run records: rebuilding them
(what `sfae reports` runs) with no experiment at hand gives the same bytes, README included,
and on a fresh clone a clean git status."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from sfae.config import read_yaml
from sfae.experiments.records import read_records
from sfae.experiments.sweep import sweeps
from sfae.nn.regularisers.registry import REGULARISERS
from sfae.paths import ProjectPaths
from sfae.plans import load_plans
from sfae.reports.build import write_all_reports

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "reports"


def test_every_report_and_the_readme_rebuild_byte_for_byte(tmp_path: Path) -> None:
    for name in ("params.yaml", "README.md", "reports/runs.jsonl"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copyfile(REPO / name, tmp_path / name)
    written = write_all_reports(ProjectPaths(tmp_path))
    names = sorted(path.name for path in written if path.parent == tmp_path / "reports")
    plans = load_plans(REPO / "params.yaml", REGULARISERS)
    params = read_yaml((REPO / "params.yaml").read_text())
    every = sweeps(plans, params, read_records(REPORTS / "runs.jsonl"))
    stems = [sweep.stem for sweep in every]
    expected = [f"{stem}{suffix}" for stem in stems for suffix in (".md", "_selection.png")]
    assert names == sorted(["study.md", "study.png", *expected])
    assert stems == ["sweep", "sweep_unet", "sweep_unet_stacked", "sweep_unet_unlabeled"]
    for name in names:
        assert (tmp_path / "reports" / name).read_bytes() == (REPORTS / name).read_bytes(), name
    # The README's results are the reports', not typed.
    assert (tmp_path / "README.md").read_bytes() == (REPO / "README.md").read_bytes()


def test_report_only_on_a_fresh_clone_leaves_git_status_clean(make_repo_copy) -> None:
    clone = make_repo_copy()
    commands = (["study", "--report-only"], ["sweep", "--report-only"], ["reports"])
    for command in (*commands, ["sweep", "--report-only", "--name", "unet_stacked"]):
        done = subprocess.run(
            [sys.executable, "-m", "sfae.cli", *command],
            cwd=clone,
            env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(clone / "src")},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        assert "wrote" in done.stdout
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True
    )
    assert status.stdout == "", status.stdout
