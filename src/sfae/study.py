"""The study: every variant x every study seed as DVC experiments, then the report.

`make study` calls `python -m sfae.study`. Runs whose results already exist (the
committed baseline, or a finished experiment of this commit with the same params) are
skipped; a run that fails is reported and the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Protocol

import numpy as np
import yaml
from tqdm import tqdm

from sfae.errors import SfaeError, run_stage
from sfae.params import VARIANTS, load_config
from sfae.paths import ProjectPaths
from sfae.report import RunRecord, StudyContext, write_report

# Files as DVC and git name them (relative to the repository), e.g. in `dvc exp show`.
IN_REPO = ProjectPaths(Path())
EVALUATE_JSON = IN_REPO.evaluate_metrics.as_posix()
MALL_JSON = IN_REPO.mall_metrics.as_posix()
TRAINING_SUMMARIES = tuple(
    (folder / "metrics.json").as_posix() for folder in (IN_REPO.pretrain_log, IN_REPO.finetune_log)
)
FINISHED = ("success", "failed")
IN_FLIGHT = ("queued", "running")
VANISHED_AFTER_POLLS = 3
RUN_KEYS = ("variant", "seed")  # the params a study run overrides; all others must match


@dataclass
class Run:
    """One row of `dvc exp show`: the baseline commit or an experiment."""

    name: str
    rev: str
    state: str  # "success", "failed", "queued", "running" (the baseline counts as "success")
    params: dict
    metrics: dict[str, dict] = field(default_factory=dict)
    log: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.params.get("variant"), self.params.get("seed")


def run_name(variant: str, seed: int) -> str:
    return f"{variant}-seed{seed}"


def shared_params(params: dict) -> dict:
    """The params that must match for a finished run to count: all but variant, seed, study."""
    return {k: v for k, v in params.items() if k not in (*RUN_KEYS, "study")}


class Experiments(Protocol):
    def runs(self) -> list[Run]: ...
    def queue(self, variant: str, seed: int) -> None: ...
    def start(self, jobs: int) -> None: ...
    def remove_failed(self) -> None: ...
    def read_text(self, rev: str, path: str) -> str: ...
    def read_bytes(self, rev: str, path: str) -> bytes: ...


class DvcExperiments:
    """Experiments as DVC keeps them, through its command line and Python API."""

    def __init__(self, root: Path, base: str = "HEAD", dvc: Path | None = None):
        self.root = root
        venv_dvc = Path(sys.executable).with_name("dvc")
        self.dvc = str(dvc or (venv_dvc if venv_dvc.exists() else "dvc"))
        # Pin the commit the experiments derive from: a commit made while the study runs
        # must not hide them (`dvc exp show` alone lists only the experiments of HEAD).
        self.base = subprocess.run(
            ["git", "rev-parse", base], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    def _dvc(self, *args: str) -> str:
        done = subprocess.run([self.dvc, *args], cwd=self.root, capture_output=True, text=True)
        if done.returncode != 0:
            raise SfaeError(f"`dvc {' '.join(args)}` failed: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def runs(self, tries: int = 3, pause: float = 5.0) -> list[Run]:
        # `exp show` fails now and then while a queue worker sets up its temporary
        # workspace ("directory ... does not exist"): ask again before giving up.
        def show() -> list[Run]:
            return parse_exp_show(
                json.loads(self._dvc("exp", "show", "--json", "--rev", self.base))
            )

        for _ in range(tries - 1):
            with contextlib.suppress(SfaeError):
                return show()
            time.sleep(pause)
        return show()

    def queue(self, variant: str, seed: int) -> None:
        name = run_name(variant, seed)
        self._dvc(
            "exp", "run", "--queue", "-S", f"variant={variant}", "-S", f"seed={seed}", "-n", name
        )

    def start(self, jobs: int) -> None:
        # The queue's workers stay in the background and inherit our output: with pipes
        # (capture_output) we would wait for the whole queue, with no progress shown.
        command = [self.dvc, "queue", "start", "-j", str(jobs)]
        with tempfile.TemporaryFile() as output:
            done = subprocess.run(command, cwd=self.root, stdout=output, stderr=output)
            if done.returncode != 0:
                output.seek(0)
                message = output.read().decode(errors="replace").strip()[-2000:]
                raise SfaeError(f"`dvc queue start -j {jobs}` failed: {message}")

    def remove_failed(self) -> None:
        self._dvc("queue", "remove", "--failed")

    def read_text(self, rev: str, path: str) -> str:
        return self.read_bytes(rev, path).decode()

    def read_bytes(self, rev: str, path: str) -> bytes:
        import dvc.api

        return dvc.api.read(path, repo=str(self.root), rev=rev, mode="rb")


def _params_and_metrics(data: dict) -> tuple[dict, dict]:
    params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
    metrics = {path: entry.get("data", {}) for path, entry in (data.get("metrics") or {}).items()}
    return params, metrics


def parse_exp_show(rows: list[dict]) -> list[Run]:
    """The baseline (HEAD) and its experiments from `dvc exp show --json`."""
    runs = []
    for row in rows:
        if row.get("rev") == "workspace":
            continue
        params, metrics = _params_and_metrics(row.get("data") or {})
        runs.append(Run("baseline", row["rev"], "success", params, metrics))
        for group in row.get("experiments") or []:
            executor = group.get("executor") or {}
            for rev in group.get("revs") or []:
                params, metrics = _params_and_metrics(rev.get("data") or {})
                state = executor.get("state") or ("failed" if rev.get("error") else "success")
                log = (executor.get("local") or {}).get("log")
                runs.append(
                    Run(
                        rev.get("name") or group.get("name"),
                        rev["rev"],
                        state,
                        params,
                        metrics,
                        log,
                    )
                )
    return runs


def queued_or_running(runs: list[Run], params: dict) -> set[tuple[str, int]]:
    """(variant, seed) of the runs already queued or running with the current shared params."""
    wanted = shared_params(params)
    return {
        run.key for run in runs if run.state in IN_FLIGHT and shared_params(run.params) == wanted
    }


def completed(runs: list[Run], params: dict) -> dict[tuple[str, int], Run]:
    """Finished runs with results whose shared params equal the current ones, by (variant, seed)."""
    wanted = shared_params(params)
    found = {}
    for run in runs:
        if (
            run.state == "success"
            and EVALUATE_JSON in run.metrics
            and MALL_JSON in run.metrics
            and shared_params(run.params) == wanted
        ):
            found.setdefault(run.key, run)
    return found


def run_study(
    experiments: Experiments,
    params: dict,
    seeds: tuple[int, ...],
    jobs: int = 2,
    poll_seconds: float = 10.0,
    sleep=time.sleep,
) -> tuple[dict[tuple[str, int], Run], list[str]]:
    """Queue what is missing, run the queue, wait; return (finished runs by key, failed names)."""
    wanted = [(variant, seed) for variant in VARIANTS for seed in seeds]
    runs = experiments.runs()
    done = completed(runs, params)
    # A study that was interrupted leaves its queue running: wait for those, don't re-queue.
    flying = queued_or_running(runs, params)
    pending = [key for key in wanted if key not in done and key in flying]
    missing = [key for key in wanted if key not in done and key not in pending]
    print(
        f"study: {len(wanted)} runs, {len(wanted) - len(pending) - len(missing)} already done, "
        f"{len(pending)} already "
        f"queued or running, {len(missing)} to run"
    )
    if missing:
        experiments.remove_failed()
        for variant, seed in missing:
            experiments.queue(variant, seed)
        experiments.start(jobs)
    names = {run_name(*key): key for key in [*pending, *missing]}
    failed: list[str] = []
    idle_polls = 0
    with tqdm(total=len(names), desc="study", unit="run") as bar:
        while True:
            runs = {run.name: run for run in experiments.runs() if run.name in names}
            finished = [name for name, run in runs.items() if run.state in FINISHED]
            bar.n = len(finished)
            bar.refresh()
            if len(finished) == len(names):
                break
            # Runs that vanished from the queue (a killed worker, a removed task) would
            # otherwise be waited for forever: give up once nothing is left in flight.
            in_flight = [run for run in runs.values() if run.state not in FINISHED]
            idle_polls = 0 if in_flight else idle_polls + 1
            if idle_polls >= VANISHED_AFTER_POLLS:
                break
            sleep(poll_seconds)
    for name in sorted(names):
        run = runs.get(name)
        if run is None or run.state != "success":
            failed.append(name)
            where = f"its log: {run.log}" if run else "it left the queue without a result"
            print(f"study: run {name} failed; {where}", file=sys.stderr)
    done = completed(experiments.runs(), params)
    return {key: done[key] for key in wanted if key in done}, failed


def _record(experiments: Experiments, run: Run) -> RunRecord:
    table = experiments.read_text(run.rev, IN_REPO.per_image.as_posix()).splitlines()
    header = table[0].split("\t")
    per_image = {
        fields[0]: float(fields[header.index("iou")])
        for fields in (line.split("\t") for line in table[1:])
    }
    seconds = sum(
        float(run.metrics.get(path, {}).get("seconds", 0.0)) for path in TRAINING_SUMMARIES
    )
    return RunRecord(
        variant=run.key[0],
        seed=run.key[1],
        name=run.name,
        rev=run.rev,
        evaluate=run.metrics[EVALUATE_JSON],
        mall=run.metrics[MALL_JSON],
        train_seconds=seconds,
        per_image_iou=per_image,
    )


def machine_description() -> str:
    processor = platform.processor() or platform.machine()
    return f"{platform.platform()}, {processor}, {os.cpu_count()} CPUs"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("tensorflow", "keras", "numpy", "dvc", "dvclive", "opencv-python-headless"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_report(experiments, runs, failed, paths: ProjectPaths, params, seconds=None):
    records = [_record(experiments, run) for run in runs.values()]
    first_seed = min(record.seed for record in records)
    probabilities, frames = {}, None
    for key, run in runs.items():
        if key[1] == first_seed:
            data = experiments.read_bytes(run.rev, IN_REPO.mall_probability.as_posix())
            probabilities[key[0]] = np.load(io.BytesIO(data)).astype(np.float32)
    if len(probabilities) == len(VARIANTS):
        from sfae.datasets import MALL, mall_frame_path
        from sfae.image_io import read_rgb

        count = min(len(p) for p in probabilities.values())
        step = max(1, count // 40)  # ~40 frames keep the committed GIF a few MB
        picks = list(range(0, count, step))
        frames = [read_rgb(mall_frame_path(paths.raw / MALL.folder, i + 1)) for i in picks]
        probabilities = {variant: p[picks] for variant, p in probabilities.items()}
    context = StudyContext(
        commit=experiments.base,
        machine=machine_description(),
        packages=package_versions(),
        params=params,
        study_seconds=seconds,
        failed=failed,
    )
    return write_report(
        records, context, paths.reports, frames, probabilities if frames is not None else None
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2, help="experiments run at once (default 2)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report only")
    parser.add_argument(
        "--rev", default="HEAD", help="the commit the experiments derive from (default HEAD)"
    )
    arguments = parser.parse_args()
    paths = ProjectPaths.here()
    config = load_config(paths.params)
    params = yaml.safe_load(paths.params.read_text())
    experiments = DvcExperiments(paths.root, arguments.rev)
    started = time.perf_counter()
    if arguments.report_only:
        runs, failed = completed(experiments.runs(), params), []
        seconds = None
    else:
        runs, failed = run_study(experiments, params, config.study.seeds, jobs=arguments.jobs)
        seconds = time.perf_counter() - started
    if not runs:
        raise SfaeError("no finished study runs to report on; run `make study` first")
    for path in build_report(experiments, runs, failed, paths, params, seconds):
        print(f"wrote {path}")


if __name__ == "__main__":
    run_stage(main)
