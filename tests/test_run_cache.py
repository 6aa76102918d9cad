"""Stages DVC can restore from its run cache: a selection run restores `preprocess_pennfudan`
(its inputs never change between runs) rather than run it again.

DVC keeps no run-cache entry for a stage with an output that is neither cached nor a metric
or plot (`no_cache_outs` in dvc.stage.Stage.run), and says nothing about it: the stage just
runs again every time. So an uncached output of a stage that could be restored is declared a
metric; only the stages that run anew for every seed anyway may have plain uncached outputs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO_ROOT

# They run for every seed (their outputs depend on it), so the run cache has nothing for them.
RUN_FOR_EVERY_SEED = {"check_params", "train"}


def plain_uncached_outs(stage: dict) -> list[str]:
    found = []
    for entry in stage.get("outs", []):
        if isinstance(entry, dict):
            (path, settings), *_ = entry.items()
            if settings and settings.get("cache") is False:
                found.append(path)
    return found


def test_only_stages_run_for_every_seed_have_plain_uncached_outputs():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    offending = {
        name: outs
        for name, stage in stages.items()
        if (outs := plain_uncached_outs(stage)) and name not in RUN_FOR_EVERY_SEED
    }
    assert offending == {}, (
        f"declare these as metrics, or DVC never restores the stage: {offending}"
    )
    assert set(stages) >= RUN_FOR_EVERY_SEED


STAGE = """stages:
  {name}:
    cmd: python -c "import shutil; shutil.copy('in.txt', '{name}.json')"
    deps: [in.txt]
    {kind}:
      - {name}.json:
          cache: false
"""


def test_dvc_restores_a_stage_with_an_uncached_metric_but_not_one_with_an_uncached_out(
    tmp_path: Path,
):
    """The rule above, as the installed DVC keeps it."""
    dvc = str(Path(sys.executable).with_name("dvc"))
    said = {}
    for name, kind in (("metric", "metrics"), ("plain", "outs")):
        root = tmp_path / name
        root.mkdir()
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        subprocess.run([dvc, "init", "-q"], cwd=root, check=True)
        (root / "dvc.yaml").write_text(STAGE.format(name=name, kind=kind))
        for content in ("1", "2", "1"):  # the third run's inputs are the first's
            (root / "in.txt").write_text(content)
            done = subprocess.run(
                [dvc, "repro"], cwd=root, capture_output=True, text=True, check=True
            )
        said[name] = done.stdout
    assert "Stage 'metric' is cached - skipping run" in said["metric"], said["metric"]
    assert "Running stage 'plain'" in said["plain"], said["plain"]
