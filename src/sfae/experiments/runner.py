"""The resumable runner behind `make study` and `make sweep`: DVC experiments in, records out.

A plan is a list of runs, each a few params set on top of params.yaml (a `Spec`). The
runner skips the runs a record already holds, waits for those still queued or running,
queues the rest with DVC's grid syntax (`-S 'seed=1,2'`), runs the queue with a progress
bar and writes each run's record the moment it finishes, so that an interrupted campaign
loses nothing and a restarted one picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from sfae.errors import SfaeError
from sfae.experiments.records import (
    EVALUATE_JSON,
    IN_REPO,
    MALL_JSON,
    TRAINING_JSONS,
    RunRecord,
    add_records,
    matches,
    read_records,
    run_params,
    trained_on,
)
from sfae.machine import machine_kind, package_versions

PER_IMAGE_TSV = IN_REPO.per_image.as_posix()
FINISHED = ("success", "failed")
IN_FLIGHT = ("queued", "running")
VANISHED_AFTER_POLLS = 3
# DVC's TaskStatus of a run's info file while it prepares or runs (dvc.repo.experiments).
ACTIVE_STATUSES = (1, 2)
SHOW_TIMEOUT = 300.0  # seconds; `exp show` takes under a minute even with two workers busy
# Settings added after runs were recorded, at the value that keeps those runs as they were.
LATER_DEFAULTS = {"data.val_count": 0, "model.arch": "paper"}
# What a run's scores depend on: the rest of params.yaml (render, planning) does not count.
SCORED_SECTIONS = ("data", "mall", "train", "evaluate")


@dataclass(frozen=True)
class Spec:
    """One planned run: the params it sets on top of params.yaml (dotted keys)."""

    overrides: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, **overrides: Any) -> Spec:
        return cls(tuple(sorted(overrides.items())))

    @classmethod
    def from_dict(cls, overrides: dict) -> Spec:
        return cls(tuple(sorted(overrides.items())))

    def as_dict(self) -> dict:
        return dict(self.overrides)

    @property
    def label(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.overrides)


@dataclass
class Run:
    """One row of `dvc exp show`: a baseline commit or an experiment."""

    name: str
    rev: str
    state: str  # "success", "failed", "queued", "running" (a baseline counts as "success")
    params: dict  # params.yaml as yaml loads it
    metrics: dict[str, dict] = field(default_factory=dict)
    log: str | None = None
    baseline: str = ""  # the commit the experiment derived from (its own rev for a baseline)
    baseline_params: dict = field(default_factory=dict)

    @property
    def flat(self) -> dict:
        return {**LATER_DEFAULTS, **run_params(self.params)}


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
    flat = {**LATER_DEFAULTS, **run_params(current), **spec.as_dict()}
    return scored_params(flat)


def fulfils(params: dict, wanted: dict) -> bool:
    """Whether a run's flattened params give what is wanted. A key the run does not have
    (a setting added after it ran) counts as its default, i.e. as matching."""
    return matches({**wanted, **params}, wanted)


class Experiments(Protocol):
    base: str

    def runs(self) -> list[Run]: ...
    def queue(self, grid: dict[str, list], target: str | None) -> None: ...
    def start(self, jobs: int) -> None: ...
    def remove_failed(self) -> None: ...
    def reap_orphans(self) -> list[str]: ...
    def read_text(self, rev: str, path: str) -> str: ...
    def log_text(self, run: Run) -> str | None: ...


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


class DvcExperiments:
    """Experiments as DVC keeps them, through its command line."""

    def __init__(self, root: Path, base: str = "HEAD", dvc: Path | None = None, commits: int = 100):
        self.root = root
        venv_dvc = Path(sys.executable).with_name("dvc")
        self.dvc = str(dvc or (venv_dvc if venv_dvc.exists() else "dvc"))
        self.commits = commits
        self.show_timeout = SHOW_TIMEOUT
        # Pin the commit the experiments derive from: a commit made while a campaign runs
        # must not hide them. Earlier commits' experiments are listed too (`-n`), so runs
        # queued before a commit are still waited for rather than queued again.
        self.base = self._git("rev-parse", base).strip()

    def _git(self, *args: str) -> str:
        done = subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True)
        if done.returncode != 0:
            raise SfaeError(f"`git {' '.join(args)}` failed: {done.stderr.strip()}")
        return done.stdout

    def _dvc(self, *args: str, timeout: float | None = None) -> str:
        # With a timeout the command gets a process group of its own, so that killing it
        # also kills whatever it started, which would otherwise hold our pipes open.
        command = [self.dvc, *args]
        with subprocess.Popen(
            command,
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=timeout is not None,
        ) as process:
            try:
                stdout, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise SfaeError(
                    f"`dvc {' '.join(args)}` gave no answer in {timeout:g} s and was stopped"
                ) from None
        if process.returncode != 0:
            raise SfaeError(f"`dvc {' '.join(args)}` failed: {stderr.strip()[-2000:]}")
        return stdout

    def baselines(self) -> list[str]:
        """The pinned base and every commit an experiment here derives from: finished ones
        (refs/exps/ab/cdef.../name), queued ones (the queue's stash) and running ones (their
        info files). Showing only these is ~8x faster than `exp show -n 100`."""
        found = {self.base}
        refs = self._git("for-each-ref", "--format=%(refname)", "refs/exps/")
        for ref in refs.split():
            parts = ref.split("/")
            if len(parts) == 5 and len(parts[2]) == 2:
                found.add(parts[2] + parts[3])
        with contextlib.suppress(SfaeError):  # no queue stash yet
            stash = self._git("log", "-g", "--format=%gs", "refs/exps/celery/stash")
            found.update(line.split(":")[2] for line in stash.splitlines() if "dvc-exp:" in line)
        for info in (self.root / ".dvc" / "tmp" / "exps" / "run").glob("*/*.run"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                found.add(json.loads(info.read_text())["baseline_rev"])
        return sorted(found)

    def runs(self, tries: int = 3, pause: float = 5.0) -> list[Run]:
        # `exp show` fails now and then while a queue worker sets up its temporary
        # workspace ("directory ... does not exist"), and now and then hangs on a lock
        # forever (seen for 12 min with two workers busy): ask again before giving up.
        revs = [arg for rev in self.baselines() for arg in ("--rev", rev)]
        command = ("exp", "show", "--json", *revs, "-n", "1")
        for _ in range(tries - 1):
            with contextlib.suppress(SfaeError):
                return parse_exp_show(json.loads(self._dvc(*command, timeout=self.show_timeout)))
            time.sleep(pause)
        return parse_exp_show(json.loads(self._dvc(*command, timeout=self.show_timeout)))

    def queue(self, grid: dict[str, list], target: str | None = None) -> None:
        settings = [
            arg
            for key, values in grid.items()
            for arg in ("-S", f"{key}={','.join(_yaml_value(v) for v in values)}")
        ]
        self._dvc("exp", "run", "--queue", *([target] if target else []), *settings)

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

    def reap_orphans(self) -> list[str]:
        """Mark failed (`dvc queue kill`) the runs DVC still calls running whose process is
        gone: after a reboot or an ended session DVC would report them running forever, and
        a resumed campaign would wait for them forever. Returns the names killed."""
        orphans = []
        for info in sorted((self.root / ".dvc" / "tmp" / "exps" / "run").glob("*/*.run")):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                run = json.loads(info.read_text())
                # dvc-task writes the pid alone in <stash>.pid (its .json holds it too).
                pid = int(info.with_suffix(".pid").read_text())
                if run["status"] in ACTIVE_STATUSES and not process_alive(pid):
                    orphans.append(run["name"])
        killed = []
        for name in orphans:  # one at a time: one name DVC rejects fails the whole call
            try:
                self._dvc("queue", "kill", name)
            except SfaeError as error:
                if "valid running experiment name" not in str(error):
                    raise
                continue  # a leftover info file: DVC's queue already counts it ended
            killed.append(name)
        return killed

    def read_text(self, rev: str, path: str) -> str:
        return self._git("show", f"{rev}:{path}")

    def log_text(self, run: Run) -> str | None:
        """What a queued run printed (`dvc queue logs`); None for a run without a log here
        (run in the workspace, or pulled from another machine)."""
        try:
            return self._dvc("queue", "logs", run.name, timeout=self.show_timeout)
        except SfaeError:
            return None

    def push(self, remote: str) -> None:
        """Send this base's experiments (git refs, and outputs to the DVC remote)."""
        self._dvc("exp", "push", "--rev", self.base, "-n", str(self.commits), remote)

    def pull(self, remote: str) -> None:
        self._dvc("exp", "pull", "--rev", self.base, "-n", str(self.commits), remote)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _params_and_metrics(data: dict) -> tuple[dict, dict]:
    params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
    metrics = {path: entry.get("data", {}) for path, entry in (data.get("metrics") or {}).items()}
    return params, metrics


def parse_exp_show(rows: list[dict]) -> list[Run]:
    """The baselines and their experiments from `dvc exp show --json`."""
    runs = []
    for row in rows:
        if row.get("rev") == "workspace":
            continue
        base_params, metrics = _params_and_metrics(row.get("data") or {})
        base = row["rev"]
        runs.append(Run("baseline", base, "success", base_params, metrics, None, base, base_params))
        for group in row.get("experiments") or []:
            executor = group.get("executor") or {}
            for rev in group.get("revs") or []:
                params, metrics = _params_and_metrics(rev.get("data") or {})
                state = executor.get("state") or ("failed" if rev.get("error") else "success")
                log = (executor.get("local") or {}).get("log")
                name = rev.get("name") or group.get("name") or rev["rev"][:7]
                runs.append(Run(name, rev["rev"], state, params, metrics, log, base, base_params))
    return runs


def has_results(run: Run) -> bool:
    return run.state == "success" and EVALUATE_JSON in run.metrics and MALL_JSON in run.metrics


TRAINED = re.compile(r"sfae train: ([0-9.]+) s pretraining, ([0-9.]+) s training")


def training_seconds(experiments: Experiments, run: Run) -> float | None:
    """Seconds a run spent training: from its training stage's line in its log (the clock is
    kept out of tracked outputs), or from the metrics of runs recorded before that."""
    summaries = [run.metrics.get(path, {}) for path in TRAINING_JSONS]
    if any("seconds" in summary for summary in summaries):
        return sum(float(summary.get("seconds", 0.0)) for summary in summaries)
    found = TRAINED.findall(experiments.log_text(run) or "")
    return sum(map(float, found[-1])) if found else None


def make_record(experiments: Experiments, run: Run) -> RunRecord:
    """The record of a finished run, from its row of `exp show` and its per-image table."""
    table = experiments.read_text(run.rev, PER_IMAGE_TSV).splitlines()
    header = table[0].split("\t")
    per_image = {
        fields[0]: float(fields[header.index("iou")])
        for fields in (line.split("\t") for line in table[1:])
    }
    flat, base = run.flat, {**LATER_DEFAULTS, **run_params(run.baseline_params)}
    overrides = {key: value for key, value in flat.items() if base.get(key, object()) != value}
    return RunRecord(
        variant=flat["variant"],
        seed=flat["seed"],
        name=run.name,
        rev=run.rev,
        evaluate=run.metrics[EVALUATE_JSON],
        mall=run.metrics[MALL_JSON],
        train_seconds=training_seconds(experiments, run),
        per_image_iou=per_image,
        commit=run.baseline,
        params=flat,
        overrides=overrides,
        metrics=run.metrics,
        machine=trained_on(run.metrics),
        packages=package_versions(),
    )


def grids(specs: Iterable[Spec]) -> list[dict[str, list]]:
    """Few `-S key=a,b,c` grids whose products are exactly the given specs.

    Specs that differ only in one key merge into one grid over that key's values, first
    over seeds, then over any other key (a strength), while the result stays a product.
    """
    merged = [{key: [value] for key, value in spec.overrides} for spec in specs]
    changed = True
    while changed:
        changed = False
        for i, a in enumerate(merged):
            for j in range(i + 1, len(merged)):
                b = merged[j]
                if a.keys() != b.keys():
                    continue
                differing = [key for key in a if a[key] != b[key]]
                if len(differing) == 1:
                    key = differing[0]
                    a[key] = sorted(set(a[key]) | set(b[key]), key=lambda v: (str(type(v)), v))
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


def share(specs: list[Spec], part: int, parts: int) -> list[Spec]:
    """The `part`-th of `parts` deterministic shares (1-based): every parts-th spec in label
    order, so N machines with the same plan split it without talking to each other."""
    if not 1 <= part <= parts:
        raise SfaeError(f"--share {part}/{parts}: the part must lie in 1..{parts}")
    ordered = sorted(specs, key=lambda spec: spec.label)
    return ordered[part - 1 :: parts]


@dataclass
class Outcome:
    """What a run of the runner found: a record per planned run that has one, and failures."""

    records: dict[Spec, RunRecord]
    failed: list[str]


def find_record(
    records: Iterable[RunRecord], wanted: dict, kind: str | None = None
) -> RunRecord | None:
    """The first record that gives `wanted`, trained on a machine of `kind` (None: any)."""
    for record in records:
        if (kind is None or record.machine_kind == kind) and fulfils(record.params, wanted):
            return record
    return None


def record_finished(
    experiments: Experiments, runs: list[Run], records_path: Path, wanted: list[dict]
) -> None:
    """Write records for finished runs that give a wanted spec and have none yet (of the
    machine kind they trained on)."""
    known = read_records(records_path)
    new = []
    for run in runs:
        if not has_results(run):
            continue
        flat = scored_params(run.flat)
        kind = machine_kind(trained_on(run.metrics))
        if any(fulfils(flat, w) for w in wanted) and not find_record(known, flat, kind):
            record = make_record(experiments, run)
            new.append(record)
            known.append(record)
    add_records(records_path, new)


def run_plan(
    experiments: Experiments,
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
    """Run whatever of `specs` has no record yet (of a machine of `kind`, when given: runs
    of another kind do not count); return every spec's record and failures."""
    wanted = {spec: wanted_params(current, spec) for spec in specs}

    def recorded() -> dict[Spec, RunRecord]:
        records = read_records(records_path)
        found = {spec: find_record(records, w, kind) for spec, w in wanted.items()}
        return {spec: record for spec, record in found.items() if record is not None}

    for name in experiments.reap_orphans():
        print(f"{desc}: run {name} had lost its process (an ended session?); run again")
    runs = experiments.runs()
    record_finished(experiments, runs, records_path, list(wanted.values()))
    done = recorded()
    in_flight = [run for run in runs if run.state in IN_FLIGHT]
    pending = [
        spec
        for spec in specs
        if spec not in done and any(fulfils(scored_params(r.flat), wanted[spec]) for r in in_flight)
    ]
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
        # Queued runs left by an ended session have no worker: start them too (workers
        # already running are kept; DVC starts only those missing).
        experiments.start(jobs)
    waiting = [*pending, *missing]
    failed: dict[Spec, str] = {}
    idle_polls = 0
    with tqdm(total=len(waiting), desc=desc, unit="run") as bar:
        while waiting:
            runs = experiments.runs()
            record_finished(experiments, runs, records_path, [wanted[s] for s in waiting])
            done = recorded()
            for spec in waiting:
                if spec in done:
                    continue
                matching = [r for r in runs if fulfils(scored_params(r.flat), wanted[spec])]
                if matching and all(r.state == "failed" for r in matching):
                    failed[spec] = matching[-1].log or "no log"
            finished = [spec for spec in waiting if spec in done or spec in failed]
            bar.n = len(finished)
            bar.refresh()
            if len(finished) == len(waiting):
                break
            # Runs that vanished from the queue (a killed worker, a removed task) would
            # otherwise be waited for forever: give up once nothing is left in flight.
            flying = [run for run in runs if run.state in IN_FLIGHT]
            idle_polls = 0 if flying else idle_polls + 1
            if idle_polls >= VANISHED_AFTER_POLLS:
                break
            sleep(poll_seconds)
    done = recorded()
    failures = []
    for spec in waiting:
        if spec not in done:
            where = f"its log: {failed[spec]}" if spec in failed else "it left the queue"
            failures.append(spec.label)
            print(f"{desc}: run {spec.label} failed; {where}", file=sys.stderr)
    return Outcome(records=done, failed=failures)
