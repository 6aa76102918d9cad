"""The resumable runner of a plan (`Spec`s): it skips what a record holds, waits for what is queued
or running, queues the rest as DVC grids and records each run as it finishes."""

import itertools
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sfae.errors import SfaeError
from sfae.experiments.dvc_experiments import DvcExperiments, Run
from sfae.experiments.records import (
    EVALUATE_JSON,
    IN_REPO,
    LATER_DEFAULTS,
    MALL_JSON,
    TRAINING_JSONS,
    RunRecord,
    add_records,
    read_records,
    run_params,
    same_value,
    trained_on,
)
from sfae.machine import machine_kind, package_versions

IN_FLIGHT = ("queued", "running")
VANISHED_AFTER_POLLS = 3  # polls with nothing in flight before waiting ends
# Polls with runs queued, none running, before the workers restart: a worker dies now and then.
STALLED_AFTER_POLLS = 4
# Polls skipping `dvc exp show` (a CPU second) while the activity is unchanged; then it is asked.
QUIET_POLLS = 4
# What a run's scores depend on: the rest of params.yaml (render, planning) does not count.
SCORED_SECTIONS = ("data", "mall", "train", "evaluate")
TRAINED = re.compile(r"sfae train: ([0-9.]+) s pretraining, ([0-9.]+) s training")


@dataclass(frozen=True)
class Spec:  # one planned run: the params it sets on top of params.yaml (dotted keys)
    overrides: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, **overrides: Any) -> "Spec":
        return cls.from_dict(overrides)

    @classmethod
    def from_dict(cls, overrides: dict) -> "Spec":
        return cls(tuple(sorted(overrides.items())))

    def as_dict(self) -> dict:
        return dict(self.overrides)

    @property
    def label(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.overrides)


def scored_params(flat: dict) -> dict:
    """The flattened params a run's scores depend on, for its own variant."""
    variant, arch = flat.get("variant"), flat.get("model.arch", "paper")
    return {
        key: value
        for key, value in flat.items()
        if key in ("variant", "seed", "model.arch")
        or key.split(".")[0] in SCORED_SECTIONS
        or key.startswith((f"variants.{variant}.", f"model.{arch}."))
    }


def wanted_params(current: dict, spec: Spec) -> dict:
    """The scored params a run of `spec` has, given params.yaml as `current` (yaml-loaded)."""
    return scored_params({**run_params(current), **spec.as_dict()})


def fulfils(params: dict, wanted: dict) -> bool:
    """Whether flattened params give `wanted` (LATER_DEFAULTS in; other absent keys match)."""
    given = {**wanted, **LATER_DEFAULTS, **params}
    return all(same_value(given[key], value) for key, value in wanted.items())


def make_record(experiments: DvcExperiments, run: Run) -> RunRecord:
    """The record of a finished run, from its row of `exp show` and its per-image table."""
    header, *lines = experiments.read_text(run.rev, IN_REPO.per_image.as_posix()).splitlines()
    iou = header.split("\t").index("iou")
    per_image = {fields[0]: float(fields[iou]) for fields in (line.split("\t") for line in lines)}
    flat, base = run.flat, run_params(run.baseline_params)
    overrides = {key: value for key, value in flat.items() if base.get(key, object()) != value}
    # Training seconds: from the metrics of older runs, else the log (the clock stays untracked).
    summaries = [run.metrics.get(path, {}) for path in TRAINING_JSONS]
    seconds = None
    if any("seconds" in summary for summary in summaries):
        seconds = sum(float(summary.get("seconds", 0.0)) for summary in summaries)
    elif found := TRAINED.findall(experiments.log_text(run) or ""):
        seconds = sum(map(float, found[-1]))
    return RunRecord(
        variant=flat["variant"],
        seed=flat["seed"],
        name=run.name,
        rev=run.rev,
        evaluate=run.metrics[EVALUATE_JSON],
        mall=run.metrics[MALL_JSON],
        train_seconds=seconds,
        per_image_iou=per_image,
        commit=run.baseline,
        params=flat,
        overrides=overrides,
        metrics=run.metrics,
        machine=trained_on(run.metrics),
        packages=package_versions(),
    )


def grids(specs: Iterable[Spec]) -> list[dict[str, list]]:
    """Few `-S key=a,b,c` grids whose products are `specs` (two differing in one key merge)."""
    merged = [{key: [value] for key, value in spec.overrides} for spec in specs]
    while True:
        for a, b in itertools.combinations(merged, 2):
            differing = [key for key in a if a[key] != b[key]] if a.keys() == b.keys() else []
            if len(differing) == 1:
                (key,) = differing
                a[key] = sorted(set(a[key]) | set(b[key]), key=lambda v: (str(type(v)), v))
                merged = [grid for grid in merged if grid is not b]
                break
        else:
            return merged


def share(specs: list[Spec], text: str) -> list[Spec]:
    """The K-th of N shares (`text` "K/N"): every N-th spec in label order (N machines, no talk)."""
    try:
        part, parts = (int(value) for value in text.split("/"))
    except ValueError as error:
        raise SfaeError(f"--share {text}: expected K/N, e.g. 2/3") from error
    if parts < 1:
        raise SfaeError(f"--share {text}: N must be at least 1")
    if not 1 <= part <= parts:
        raise SfaeError(f"--share {part}/{parts}: the part must lie in 1..{parts}")
    return sorted(specs, key=lambda spec: spec.label)[part - 1 :: parts]


@dataclass
class Outcome:  # a record per planned run that has one, and the failed runs' labels
    records: dict[Spec, RunRecord]
    failed: list[str]


def find_record(
    records: Iterable[RunRecord], wanted: dict, kind: str | None = None
) -> RunRecord | None:
    """The first record that gives `wanted`, trained on a machine of `kind` (None: any)."""
    kinds = (r for r in records if kind is None or r.machine_kind == kind)
    return next((record for record in kinds if fulfils(record.params, wanted)), None)


def record_finished(
    experiments: DvcExperiments, runs: list[Run], records_path: Path, wanted: list[dict]
) -> None:
    """Record the finished runs that give a wanted spec and have no record of their kind."""
    known = read_records(records_path)
    new = []
    for run in runs:
        if run.state != "success" or not {EVALUATE_JSON, MALL_JSON} <= run.metrics.keys():
            continue
        flat = scored_params(run.flat)
        kind = machine_kind(trained_on(run.metrics))
        if any(fulfils(flat, w) for w in wanted) and not find_record([*known, *new], flat, kind):
            new.append(make_record(experiments, run))
    add_records(records_path, new)


def run_plan(
    experiments: DvcExperiments,
    specs: list[Spec],
    current: dict,
    records_path: Path,
    jobs: int = 2,
    target: str | None = None,
    poll_seconds: float = 15.0,
    sleep=time.sleep,
    desc: str = "runs",
    kind: str | None = None,
) -> Outcome:
    """Run whatever of `specs` has no record of a machine of `kind` (None: any) yet."""
    wanted = {spec: wanted_params(current, spec) for spec in specs}

    def recorded(runs: list[Run], specs: list[Spec]) -> dict[Spec, RunRecord]:
        record_finished(experiments, runs, records_path, [wanted[s] for s in specs])
        records = read_records(records_path)
        return {s: r for s, w in wanted.items() if (r := find_record(records, w, kind))}

    for name in experiments.reap_orphans():
        print(f"{desc}: run {name} had lost its process (an ended session?); run again")
    runs = experiments.runs()
    done = recorded(runs, specs)

    def runs_of(spec: Spec) -> list[Run]:
        return [r for r in runs if fulfils(scored_params(r.flat), wanted[spec])]

    pending = [s for s in specs if s not in done and any(r.state in IN_FLIGHT for r in runs_of(s))]
    missing = [spec for spec in specs if spec not in done and spec not in pending]
    print(
        f"{desc}: {len(specs)} runs, {len(done)} recorded, {len(pending)} queued or running, "
        f"{len(missing)} to run"
    )
    if missing:
        experiments.remove_failed()
        for grid in grids(missing):
            experiments.queue(grid, target)
    if missing or pending:
        # An ended session's queued runs have no worker (DVC starts only the missing ones).
        experiments.start(jobs)
    waiting = [*pending, *missing]
    failed: dict[Spec, str] = {}
    idle_polls = stalled_polls = quiet_polls = 0
    seen = None
    with tqdm(total=len(waiting), desc=desc, unit="run") as bar:
        while waiting:
            activity = experiments.activity()
            if activity == seen and quiet_polls < QUIET_POLLS:
                quiet_polls += 1
                sleep(poll_seconds)
                continue
            seen, quiet_polls = activity, 0
            runs = experiments.runs()
            done = recorded(runs, waiting)
            for spec in [spec for spec in waiting if spec not in done]:
                if (matching := runs_of(spec)) and all(r.state == "failed" for r in matching):
                    failed[spec] = matching[-1].log or "no log"
            finished = [spec for spec in waiting if spec in done or spec in failed]
            bar.n = len(finished)
            bar.refresh()
            if len(finished) == len(waiting):
                break
            # Runs gone from the queue (a killed worker) are waited for until none is in flight.
            flying = [run for run in runs if run.state in IN_FLIGHT]
            idle_polls = 0 if flying else idle_polls + 1
            if idle_polls >= VANISHED_AFTER_POLLS:
                break
            stalled = flying and not any(run.state == "running" for run in flying)
            stalled_polls = stalled_polls + 1 if stalled else 0
            if stalled_polls >= STALLED_AFTER_POLLS:
                print(f"{desc}: runs queued and none running: starting the workers again")
                experiments.start(jobs)
                stalled_polls = 0
            sleep(poll_seconds)
    failures = [spec for spec in waiting if spec not in done]
    for spec in failures:
        where = f"its log: {failed[spec]}" if spec in failed else "it left the queue"
        print(f"{desc}: run {spec.label} failed; {where}", file=sys.stderr)
    return Outcome(records=done, failed=[spec.label for spec in failures])
