"""The study runner against a stubbed experiment store: skipping, queueing, failures."""

import subprocess
import time

import pytest

from sfae.errors import SfaeError
from sfae.params import VARIANTS
from sfae.study import DvcExperiments, Run, completed, parse_exp_show, run_name, run_study

PARAMS = {"variant": "pure", "seed": 6278, "train": {"epochs": 801}, "study": {"seeds": [1, 2]}}


def finished(variant, seed, state="success", params=None):
    merged = {**(params or PARAMS), "variant": variant, "seed": seed}
    metrics = {"metrics/evaluate.json": {"test": {}}, "metrics/mall.json": {}}
    return Run(run_name(variant, seed), f"rev-{variant}-{seed}", state, merged, metrics, "log")


class StubExperiments:
    """Runs queued experiments on start(); the ones named in `failing` fail."""

    def __init__(self, existing, failing=()):
        self.store = list(existing)
        self.failing = set(failing)
        self.queued: list[tuple[str, int]] = []
        self.started_with = None
        self.removed_failed = False

    def runs(self):
        return list(self.store)

    def queue(self, variant, seed):
        self.queued.append((variant, seed))
        self.store.append(Run(run_name(variant, seed), "", "queued", {**PARAMS}))

    def start(self, jobs):
        self.started_with = jobs
        self.store = [run for run in self.store if run.state != "queued"]
        for variant, seed in self.queued:
            state = "failed" if run_name(variant, seed) in self.failing else "success"
            self.store.append(finished(variant, seed, state))

    def remove_failed(self):
        self.removed_failed = True
        self.store = [run for run in self.store if run.state != "failed"]


def test_runs_only_what_is_missing_and_returns_every_finished_run():
    existing = [finished("pure", 1), finished("l1", 2)]
    stub = StubExperiments(existing)
    runs, failed = run_study(stub, PARAMS, (1, 2), jobs=2, sleep=lambda _: None)
    assert ("pure", 1) not in stub.queued and ("l1", 2) not in stub.queued
    assert len(stub.queued) == len(VARIANTS) * 2 - 2
    assert stub.started_with == 2
    assert failed == []
    assert set(runs) == {(v, s) for v in VARIANTS for s in (1, 2)}


def test_nothing_is_queued_when_every_run_exists():
    stub = StubExperiments([finished(v, s) for v in VARIANTS for s in (1, 2)])
    runs, failed = run_study(stub, PARAMS, (1, 2), sleep=lambda _: None)
    assert stub.queued == [] and stub.started_with is None
    assert len(runs) == 10 and failed == []


def test_a_failed_run_is_reported_and_the_others_still_count():
    stub = StubExperiments([], failing={"l2-seed1"})
    runs, failed = run_study(stub, PARAMS, (1,), sleep=lambda _: None)
    assert failed == ["l2-seed1"]
    assert ("l2", 1) not in runs
    assert set(runs) == {(v, 1) for v in VARIANTS if v != "l2"}


def test_an_earlier_failure_is_cleared_and_run_again():
    stub = StubExperiments([finished("l1", 1, state="failed")])
    run_study(stub, PARAMS, (1,), sleep=lambda _: None)
    assert stub.removed_failed
    assert ("l1", 1) in stub.queued


def test_runs_still_queued_or_running_are_waited_for_not_queued_again():
    # An interrupted study left l1 seed 1 running and l2 seed 1 queued.
    in_flight = [Run(run_name("l1", 1), "", "running", {**PARAMS, "variant": "l1", "seed": 1})]
    in_flight.append(Run(run_name("l2", 1), "", "queued", {**PARAMS, "variant": "l2", "seed": 1}))

    class ResumedStub(StubExperiments):
        def start(self, jobs):
            super().start(jobs)
            self.store = [run for run in self.store if run.state not in ("queued", "running")]
            self.store += [finished("l1", 1), finished("l2", 1)]

    stub = ResumedStub(in_flight)
    runs, failed = run_study(stub, PARAMS, (1,), sleep=lambda _: None)
    assert ("l1", 1) not in stub.queued and ("l2", 1) not in stub.queued
    assert len(stub.queued) == len(VARIANTS) - 2
    assert set(runs) == {(v, 1) for v in VARIANTS} and failed == []


def test_runs_with_other_shared_params_do_not_count():
    other = {**PARAMS, "train": {"epochs": 5}}
    runs = [finished("pure", 1, params=other), finished("l1", 1)]
    found = completed(runs, PARAMS)
    assert set(found) == {("l1", 1)}


def test_a_different_study_seed_list_does_not_invalidate_runs():
    changed = {**PARAMS, "study": {"seeds": [1, 2, 3]}}
    assert set(completed([finished("pure", 1)], changed)) == {("pure", 1)}


def test_waits_until_the_queue_is_finished():
    class SlowStub(StubExperiments):
        polls = 0

        def runs(self):
            SlowStub.polls += 1
            if SlowStub.polls < 4:
                return [Run(run_name(v, 1), "", "running", PARAMS) for v, _ in self.queued]
            return super().runs()

    stub = SlowStub([])
    sleeps = []
    runs, _ = run_study(stub, PARAMS, (1,), poll_seconds=7, sleep=sleeps.append)
    assert sleeps and all(seconds == 7 for seconds in sleeps)
    assert len(runs) == len(VARIANTS)


def test_parse_exp_show_reads_baseline_experiments_and_states():
    def data(variant, seed, with_metrics=True):
        metrics = {"metrics/evaluate.json": {"data": {"test": {"pooled": {"iou": 0.4}}}}}
        return {
            "params": {"params.yaml": {"data": {**PARAMS, "variant": variant, "seed": seed}}},
            "metrics": metrics if with_metrics else {},
        }

    rows = [
        {"rev": "workspace", "data": data("pure", 6278)},
        {
            "rev": "abc",
            "name": "main",
            "data": data("pure", 6278),
            "experiments": [
                {
                    "name": "l1-seed1",
                    "executor": {"state": "success", "local": {"log": "x.out"}},
                    "revs": [{"rev": "def", "name": "l1-seed1", "data": data("l1", 1)}],
                },
                {
                    "name": "l2-seed1",
                    "executor": {"state": "failed", "local": {"log": "y.out"}},
                    "revs": [{"rev": "ghi", "name": "l2-seed1", "data": data("l2", 1, False)}],
                },
            ],
        },
    ]
    runs = parse_exp_show(rows)
    assert [(r.name, r.rev, r.state, r.key) for r in runs] == [
        ("baseline", "abc", "success", ("pure", 6278)),
        ("l1-seed1", "def", "success", ("l1", 1)),
        ("l2-seed1", "ghi", "failed", ("l2", 1)),
    ]
    assert runs[1].metrics["metrics/evaluate.json"]["test"]["pooled"]["iou"] == pytest.approx(0.4)
    assert runs[2].log == "y.out"


def test_runs_that_leave_the_queue_without_a_result_count_as_failed():
    class LosingStub(StubExperiments):
        def start(self, jobs):
            super().start(jobs)
            self.store = [run for run in self.store if run.name != "l1-seed1"]

    stub = LosingStub([])
    sleeps = []
    runs, failed = run_study(stub, PARAMS, (1,), sleep=sleeps.append)
    assert failed == ["l1-seed1"]
    assert ("l1", 1) not in runs and len(runs) == len(VARIANTS) - 1
    assert len(sleeps) == 2  # three polls with nothing in flight, then it stops waiting


FAKE_DVC = """#!/bin/sh
# `queue start` leaves a worker behind that keeps our output open, as DVC's does.
if [ "$1" = queue ] && [ "$2" = start ]; then
    echo "started workers"
    sleep 30 &
    exit 0
fi
# `exp show` fails once, as DVC's does while a worker sets up its workspace.
if [ "$1" = exp ] && [ "$2" = show ]; then
    if [ ! -e shown-once ]; then
        touch shown-once
        echo "ERROR: directory '.dvc/tmp/exps/tmpx/.dvc' does not exist" >&2
        exit 255
    fi
    echo '[]'
    exit 0
fi
echo "unexpected: $*" >&2
exit 3
"""


def fake_dvc(tmp_path):
    path = tmp_path / "dvc"
    path.write_text(FAKE_DVC)
    path.chmod(0o755)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "base",
        ],
        cwd=tmp_path,
        check=True,
    )
    return DvcExperiments(tmp_path, dvc=path)


def test_starting_the_queue_does_not_wait_for_its_workers(tmp_path):
    experiments = fake_dvc(tmp_path)
    started = time.monotonic()
    experiments.start(2)
    assert time.monotonic() - started < 10, "start() waited for the background worker"


def test_a_failing_dvc_command_raises_with_its_message(tmp_path):
    experiments = fake_dvc(tmp_path)
    with pytest.raises(SfaeError, match="unexpected: queue remove --failed"):
        experiments.remove_failed()


def test_a_passing_failure_of_exp_show_is_asked_again(tmp_path):
    experiments = fake_dvc(tmp_path)
    assert experiments.runs(pause=0) == []
    assert (tmp_path / "shown-once").exists()


def test_exp_show_failing_every_time_raises(tmp_path):
    experiments = fake_dvc(tmp_path)
    with pytest.raises(SfaeError, match="does not exist"):
        experiments.runs(tries=1)
