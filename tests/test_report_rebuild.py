"""The committed reports are a pure function of the committed run records: rebuilding them
on a fresh clone, with no experiment at hand, gives the same bytes and a clean git status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sfae.config import read_yaml
from sfae.experiments.records import read_records
from sfae.experiments.study import study_plan, study_records
from sfae.experiments.sweep import sweeps
from sfae.nn.regularisers.registry import REGULARISERS
from sfae.plans import load_plans
from sfae.reports.study_report import write_report
from sfae.reports.sweep_report import write_sweep_reports

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "reports"


def test_the_study_report_rebuilds_byte_for_byte_from_the_records(tmp_path: Path) -> None:
    params = read_yaml((REPO / "params.yaml").read_text())
    records = read_records(REPORTS / "runs.jsonl")
    study = study_records(
        records, study_plan(load_plans(REPO / "params.yaml", REGULARISERS)), params
    )
    assert len(study) == 25, "the committed study has 5 variants x 5 seeds"
    write_report(study, params, tmp_path)
    for name in ("study.md", "study.png"):
        assert (tmp_path / name).read_bytes() == (REPORTS / name).read_bytes(), name


def test_the_sweep_report_rebuilds_byte_for_byte_from_the_records(tmp_path: Path) -> None:
    params = read_yaml((REPO / "params.yaml").read_text())
    readme = tmp_path / "README.md"
    readme.write_bytes((REPO / "README.md").read_bytes())
    both = sweeps(load_plans(REPO / "params.yaml", REGULARISERS), params)
    written = write_sweep_reports(both, read_records(REPORTS / "runs.jsonl"), tmp_path, readme)
    names = [path.name for path in written[:-1]]
    assert names == ["sweep.md", "sweep_selection.png", "sweep_unet.md", "sweep_unet_selection.png"]
    for name in names:
        assert (tmp_path / name).read_bytes() == (REPORTS / name).read_bytes(), name
    # The README's results are the report's, not typed.
    assert readme.read_bytes() == (REPO / "README.md").read_bytes()


def test_report_only_on_a_fresh_clone_leaves_git_status_clean(make_repo_copy) -> None:
    clone = make_repo_copy()
    for command in (["study", "--report-only"], ["sweep", "--report-only"], ["reports"]):
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
