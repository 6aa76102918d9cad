"""The resumable runner against a stubbed experiment store: records, skipping, queueing,
grids, shares, failures; and DvcExperiments against a fake `dvc`."""

import itertools
import json
import os
import shutil
import subprocess
import time

import psutil
import pytest

from sfae.errors import SfaeError
from sfae.experiments.dvc_experiments import DvcExperiments, Run, parse_exp_show
from sfae.experiments.records import read_records
from sfae.experiments.runner import QUIET_POLLS, Spec, grids, run_plan, share

PARAMS = {
    "variant": "pure",
    "seed": 6278,
    "data": {"val_count": 0},
    "train": {"epochs": 801},
    "variants": {"pure": {"regularizer": "none"}, "l2": {"regularizer_scale": 0.005}},
    "study": {"seeds": [1, 2]},
}
TABLE = "name\tiou\nFudanPed00001\t0.5\nFudanPed00002\t0.25\n"


def nested(overrides: dict) -> dict:
    params = {
        key: dict(value) if isinstance(value, dict) else value for key, value in PARAMS.items()
    }
    params["variants"] = {k: dict(v) for k, v in PARAMS["variants"].items()}
    for dotted, value in overrides.items():
        *path, last = dotted.split(".")
        node = params
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return params


def run_of(overrides: dict, state="success", rev=None) -> Run:
    metrics = {
        "metrics/evaluate.json": {"test": {"pooled": {"iou": 0.4}}},
        "metrics/mall.json": {"frames": 3},
        "metrics/finetune/metrics.json": {"seconds": 60.0},
    }
    label = Spec.from_dict(overrides).label
    return Run(
        label,
        rev or f"rev {label}",
        state,
        nested(overrides),
        metrics if state == "success" else {},
        "log",
        "base",
        PARAMS,
    )


class StubExperiments:
    """Expands queued grids as DVC does; start() finishes them (those in `failing` fail)."""

    base = "base"

    def __init__(self, existing=(), failing=()):
        self.store = list(existing)
        self.failing = set(failing)
        self.queued: list[dict] = []
        self.grids: list[dict] = []
        self.started_with = None
        self.removed_failed = False

    def runs(self):
        return list(self.store)

    def activity(self):
        return object()  # never the same: every poll reads the runs

    def queue(self, grid, target=None):
        self.grids.append(grid)
        for values in itertools.product(*grid.values()):
            overrides = dict(zip(grid, values, strict=True))
            self.queued.append(overrides)
            self.store.append(run_of(overrides, "queued"))

    def start(self, jobs):
        self.started_with = jobs
        self.store = [run for run in self.store if run.state != "queued"]
        for overrides in self.queued:
            failing = Spec.from_dict(overrides).label in self.failing
            self.store.append(run_of(overrides, "failed" if failing else "success"))

    def remove_failed(self):
        self.removed_failed = True
        self.store = [run for run in self.store if run.state != "failed"]

    def reap_orphans(self):
        return []

    def read_text(self, rev, path):
        assert path == "metrics/per_image.tsv"
        return TABLE

    def log_text(self, run):
        return "Running stage 'train':\nsfae train: 1.5 s pretraining, 40.0 s training\n"


def plan(variants=("pure", "l2"), seeds=(1, 2)) -> list[Spec]:
    return [Spec.of(variant=v, seed=s) for v in variants for s in seeds]


def no_sleep(_):
    return None


def test_runs_what_has_no_record_and_records_every_finished_run(tmp_path):
    records = tmp_path / "runs.jsonl"
    stub = StubExperiments([run_of({"variant": "pure", "seed": 1})])
    outcome = run_plan(stub, plan(), PARAMS, records, sleep=no_sleep)
    assert {"variant": "pure", "seed": 1} not in stub.queued
    assert len(stub.queued) == 3 and stub.started_with == 2
    assert outcome.failed == [] and set(outcome.records) == set(plan())
    written = read_records(records)
    assert len(written) == 4
    assert {(r.variant, r.seed) for r in written} == {
        ("pure", 1),
        ("pure", 2),
        ("l2", 1),
        ("l2", 2),
    }
    assert all(r.per_image_iou == {"FudanPed00001": 0.5, "FudanPed00002": 0.25} for r in written)
    assert all(r.train_seconds == 60.0 and r.commit == "base" for r in written)
    assert [r.overrides for r in written if (r.variant, r.seed) == ("l2", 2)] == [
        {"variant": "l2", "seed": 2}
    ]


def test_a_selection_run_is_recorded_with_its_validation_iou_and_no_test_scores(tmp_path):
    """A run with validation images held out: evaluate.json holds val alone, the per-image
    table its header line; the record keeps what selection reads, and no test score."""
    from sfae.experiments.sweep_state import val_iou

    class Selection(StubExperiments):
        def start(self, jobs):
            super().start(jobs)
            for run in self.store:
                run.metrics["metrics/evaluate.json"] = {"val": {"iou_pooled": 0.6, "n_images": 17}}
                run.metrics["metrics/mall.json"] = {"scored": False}

        def read_text(self, rev, path):
            return TABLE.splitlines(keepends=True)[0]

    records = tmp_path / "runs.jsonl"
    selection = [Spec.of(variant="l2", seed=1, **{"data.val_count": 17})]
    outcome = run_plan(Selection(), selection, PARAMS, records, sleep=no_sleep)
    assert outcome.failed == []
    (record,) = read_records(records)
    assert record.per_image_iou == {} and "test" not in record.evaluate
    assert val_iou(record) == 0.6 and record.val_count == 17


def test_the_runs_are_read_at_once_when_the_queue_changes_and_else_every_few_polls(tmp_path):
    """`dvc exp show` costs CPU beside the training: while the queue's activity stays the
    same the runner reads the runs only every QUIET_POLLS + 1 polls; a change, at once."""

    class Quiet(StubExperiments):
        token = reads = 0

        def activity(self):
            return self.token

        def start(self, jobs):  # the run keeps running until the test ends it
            self.store = [run_of(overrides, "running") for overrides in self.queued]

        def runs(self):
            self.reads += 1
            return list(self.store)

    stub, reads_at_sleep = Quiet(), []
    change_at = 2 * (QUIET_POLLS + 1)

    def sleep(_):
        reads_at_sleep.append(stub.reads)
        if len(reads_at_sleep) == change_at:  # the run finishes: the queue changes
            stub.store, stub.token = [run_of(o) for o in stub.queued], 1

    outcome = run_plan(stub, [Spec.of(variant="pure", seed=1)], PARAMS, tmp_path / "r", sleep=sleep)
    assert len(outcome.records) == 1
    # Read once before the loop; in it, at the first poll, QUIET_POLLS polls later, and at once
    # after the change.
    assert reads_at_sleep == [2] * (QUIET_POLLS + 1) + [3] * (QUIET_POLLS + 1)
    assert stub.reads == 4


def test_recorded_runs_are_not_run_again_even_without_their_experiments(tmp_path):
    records = tmp_path / "runs.jsonl"
    run_plan(StubExperiments(), plan(), PARAMS, records, sleep=no_sleep)
    fresh = StubExperiments()  # a fresh clone: records, no experiments
    outcome = run_plan(fresh, plan(), PARAMS, records, sleep=no_sleep)
    assert fresh.queued == [] and fresh.started_with is None
    assert len(outcome.records) == 4


def test_missing_runs_are_queued_as_few_grids(tmp_path):
    stub = StubExperiments()
    specs = [
        Spec.of(variant="l2", seed=s, **{"variants.l2.regularizer_scale": x})
        for s in (1, 2)
        for x in (1e-5, 1e-4, 1e-3)
    ]
    run_plan(stub, specs, PARAMS, tmp_path / "runs.jsonl", sleep=no_sleep)
    assert stub.grids == [
        {"seed": [1, 2], "variant": ["l2"], "variants.l2.regularizer_scale": [1e-5, 1e-4, 1e-3]}
    ]


def test_grids_cover_exactly_the_specs_when_they_are_no_product():
    specs = [
        Spec.of(variant="l2", seed=1),
        Spec.of(variant="l2", seed=2),
        Spec.of(variant="l1", seed=1),
    ]
    expanded = {
        Spec.from_dict(dict(zip(grid, values, strict=True)))
        for grid in grids(specs)
        for values in itertools.product(*grid.values())
    }
    assert expanded == set(specs)


def test_shares_split_the_plan_without_overlap():
    specs = plan(("pure", "l1", "l2"), (1, 2, 3))
    parts = [share(specs, f"{k}/3") for k in (1, 2, 3)]
    assert sorted(s.label for part in parts for s in part) == sorted(s.label for s in specs)
    assert all(len(part) == 3 for part in parts)
    assert share(list(reversed(specs)), "2/3") == parts[1]
    with pytest.raises(SfaeError, match="1..3"):
        share(specs, "4/3")


def test_a_failed_run_is_reported_and_the_others_still_count(tmp_path):
    stub = StubExperiments(failing={"seed=1 variant=l2"})
    outcome = run_plan(stub, plan(), PARAMS, tmp_path / "runs.jsonl", sleep=no_sleep)
    assert outcome.failed == ["seed=1 variant=l2"]
    assert Spec.of(variant="l2", seed=1) not in outcome.records and len(outcome.records) == 3


def test_an_earlier_failure_is_cleared_and_run_again(tmp_path):
    stub = StubExperiments([run_of({"variant": "l2", "seed": 1}, "failed")])
    run_plan(stub, plan(("l2",), (1,)), PARAMS, tmp_path / "runs.jsonl", sleep=no_sleep)
    assert stub.removed_failed and stub.queued == [{"seed": 1, "variant": "l2"}]


def test_runs_still_queued_or_running_are_waited_for_not_queued_again(tmp_path):
    in_flight = [run_of({"variant": "l2", "seed": 1}, "running")]

    class ResumedStub(StubExperiments):
        polls = 0

        def runs(self):
            ResumedStub.polls += 1
            if ResumedStub.polls > 2:
                self.store = [r for r in self.store if r.state != "running"]
                self.store.append(run_of({"variant": "l2", "seed": 1}))
            return super().runs()

    stub = ResumedStub(in_flight)
    sleeps = []
    outcome = run_plan(
        stub, plan(("l2",), (1, 2)), PARAMS, tmp_path / "r.jsonl", sleep=sleeps.append
    )
    assert stub.queued == [{"seed": 2, "variant": "l2"}]
    assert len(outcome.records) == 2 and outcome.failed == [] and sleeps


def test_queued_runs_an_ended_session_left_get_workers(tmp_path):
    left = [run_of({"variant": "l2", "seed": seed}, "queued") for seed in (1, 2)]
    stub = StubExperiments(left)
    stub.queued = [{"variant": "l2", "seed": seed} for seed in (1, 2)]  # what start() runs
    outcome = run_plan(stub, plan(("l2",), (1, 2)), PARAMS, tmp_path / "r.jsonl", sleep=no_sleep)
    assert stub.grids == [] and stub.started_with == 2
    assert len(outcome.records) == 2 and outcome.failed == []


def test_runs_whose_process_is_gone_are_run_again(tmp_path):
    orphan = run_of({"variant": "l2", "seed": 1}, "running")

    class AfterReboot(StubExperiments):
        def reap_orphans(self):  # as `dvc queue kill` marks them
            self.store = [run_of({"variant": "l2", "seed": 1}, "failed")]
            return ["l2-seed1"]

    stub = AfterReboot([orphan])
    outcome = run_plan(stub, plan(("l2",), (1,)), PARAMS, tmp_path / "r.jsonl", sleep=no_sleep)
    assert stub.removed_failed and stub.queued == [{"seed": 1, "variant": "l2"}]
    assert len(outcome.records) == 1 and outcome.failed == []


def test_runs_with_other_params_do_not_count(tmp_path):
    other = run_of({"variant": "pure", "seed": 1, "train.epochs": 5})
    stub = StubExperiments([other])
    run_plan(stub, plan(("pure",), (1,)), PARAMS, tmp_path / "runs.jsonl", sleep=no_sleep)
    assert stub.queued == [{"seed": 1, "variant": "pure"}]


def test_another_variants_settings_and_planning_sections_do_not_invalidate_runs(tmp_path):
    records = tmp_path / "runs.jsonl"
    run_plan(StubExperiments(), plan(("pure",), (1,)), PARAMS, records, sleep=no_sleep)
    changed = nested({"variants.l2.regularizer_scale": 0.1, "study.seeds": [1, 2, 3]})
    stub = StubExperiments()
    run_plan(stub, plan(("pure",), (1,)), changed, records, sleep=no_sleep)
    assert stub.queued == []


def test_runs_that_leave_the_queue_without_a_result_count_as_failed(tmp_path):
    class LosingStub(StubExperiments):
        def start(self, jobs):
            super().start(jobs)
            self.store = [run for run in self.store if run.params["variant"] != "l2"]

    sleeps = []
    outcome = run_plan(LosingStub(), plan(), PARAMS, tmp_path / "r.jsonl", sleep=sleeps.append)
    assert sorted(outcome.failed) == ["seed=1 variant=l2", "seed=2 variant=l2"]
    assert len(sleeps) == 2  # three polls with nothing in flight, then it stops waiting


def test_parse_exp_show_reads_baselines_experiments_and_states():
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
                    "name": "tipsy-sail",
                    "executor": {"state": "success", "local": {"log": "x.out"}},
                    "revs": [{"rev": "def", "name": "tipsy-sail", "data": data("l1", 1)}],
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
    assert [(r.name, r.rev, r.state, r.params["variant"], r.baseline) for r in runs] == [
        ("baseline", "abc", "success", "pure", "abc"),
        ("tipsy-sail", "def", "success", "l1", "abc"),
        ("l2-seed1", "ghi", "failed", "l2", "abc"),
    ]
    assert runs[1].metrics["metrics/evaluate.json"]["test"]["pooled"]["iou"] == pytest.approx(0.4)
    assert runs[2].log == "y.out"


FAKE_DVC = """#!/bin/sh
# `queue start` leaves a worker behind that keeps our output open, as DVC's does.
if [ "$1" = queue ] && [ "$2" = start ]; then
    echo "started workers"
    sleep 30 &
    exit 0
fi
# `exp show` fails once, as DVC's does while a worker sets up its workspace; with a file
# `hang` it first hangs instead, in a child that holds our output open.
if [ "$1" = exp ] && [ "$2" = show ]; then
    if [ -e hang ] && [ ! -e hung-once ]; then
        touch hung-once shown-once
        sleep 60
    fi
    # With a file `lost`, it fails for good on the run it names until that run is killed,
    # as DVC's does on a run it calls running whose info file is gone.
    if [ -e lost ] && [ ! -e killed ]; then
        rev=$(cat lost)
        echo "ERROR: unexpected error - [Errno 2] No such file or directory: \
'$PWD/.dvc/tmp/exps/run/$rev/$rev.run'" >&2
        exit 255
    fi
    # With a file `initializing`, it fails so on the run it names once, as DVC's does while a
    # live worker sets that run up (its info file not yet written).
    if [ -e initializing ]; then
        rev=$(cat initializing)
        mv initializing setting-up
        echo "ERROR: unexpected error - [Errno 2] No such file or directory: \
'$PWD/.dvc/tmp/exps/run/$rev/$rev.run'" >&2
        exit 255
    fi
    if [ ! -e shown-once ]; then
        touch shown-once
        echo "ERROR: directory '.dvc/tmp/exps/tmpx/.dvc' does not exist" >&2
        exit 255
    fi
    echo '[]'
    exit 0
fi
# `queue kill` notes whom it was asked to kill; a run its queue no longer counts as
# running (a leftover info file) fails the whole call, as DVC's does.
if [ "$1" = queue ] && [ "$2" = kill ]; then
    shift 2
    if [ -e setting-up ]; then
        echo "ERROR: Task '$(cat setting-up)' is initializing, please wait a few seconds until \
the experiments start running to retry the kill operation." >&2
        exit 255
    fi
    case " $* " in *" stale-run "*)
        echo "ERROR: 'stale-run' is not a valid running experiment name" >&2
        exit 255
    esac
    echo "$*" >> killed
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


def test_a_run_called_running_without_its_info_file_is_killed_rather_than_failing_show(
    tmp_path,
):
    experiments = fake_dvc(tmp_path)
    rev = "f55f9495c1c41a7d3f92e9bd2b263046803dc37b"
    (tmp_path / "lost").write_text(rev)
    (tmp_path / "shown-once").touch()  # no passing failure besides
    assert experiments.runs(pause=0) == []
    assert (tmp_path / "killed").read_text() == rev + "\n"


def test_a_run_a_live_worker_still_sets_up_is_waited_for_not_killed(tmp_path):
    experiments = fake_dvc(tmp_path)
    rev = "0c055368f489f8220e4815a16462a001b6da18f7"
    (tmp_path / "initializing").write_text(rev)
    (tmp_path / "shown-once").touch()
    assert experiments.runs(pause=0) == []  # DVC refused the kill: a worker holds the run
    assert not (tmp_path / "killed").exists()


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


def test_a_hanging_exp_show_is_stopped_and_asked_again(tmp_path):
    experiments = fake_dvc(tmp_path)
    (tmp_path / "hang").touch()
    experiments.show_timeout = 1
    started = time.monotonic()
    assert experiments.runs(pause=0) == []
    assert (tmp_path / "hung-once").exists()
    assert time.monotonic() - started < 20, "runs() waited for the hanging exp show"


def test_exp_show_hanging_every_time_raises(tmp_path):
    experiments = fake_dvc(tmp_path)
    (tmp_path / "hang").touch()
    experiments.show_timeout = 1
    with pytest.raises(SfaeError, match="gave no answer in 1 s"):
        experiments.runs(tries=1)


def test_exp_show_failing_every_time_raises(tmp_path):
    experiments = fake_dvc(tmp_path)
    with pytest.raises(SfaeError, match="does not exist"):
        experiments.runs(tries=1)


def test_the_architecture_counts_and_only_its_own_settings_do(tmp_path):
    records = tmp_path / "runs.jsonl"
    current = nested({"model.arch": "paper", "model.unet.width": 8})
    run_plan(StubExperiments(), plan(("pure",), (1,)), current, records, sleep=no_sleep)
    other_unet = nested({"model.arch": "paper", "model.unet.width": 16})
    stub = StubExperiments()
    run_plan(stub, plan(("pure",), (1,)), other_unet, records, sleep=no_sleep)
    assert stub.queued == []  # a paper run does not depend on the U-Net's width
    unet = Spec.of(variant="pure", seed=1, **{"model.arch": "unet"})
    stub = StubExperiments()
    run_plan(stub, [unet], current, records, sleep=no_sleep)
    assert stub.queued == [{"model.arch": "unet", "seed": 1, "variant": "pure"}]


def write_run_info(root, stash: str, name: str, status: int, pid: int) -> None:
    """A run's info files as DVC's queue writes them (.dvc/tmp/exps/run/<stash>/)."""
    folder = root / ".dvc" / "tmp" / "exps" / "run" / stash
    folder.mkdir(parents=True)
    (folder / f"{stash}.run").write_text(json.dumps({"name": name, "status": status}))
    (folder / f"{stash}.pid").write_text(str(pid))
    (folder / f"{stash}.json").write_text(json.dumps({"pid": pid, "returncode": None}))


def test_only_running_runs_whose_process_is_gone_are_killed(tmp_path):
    experiments = fake_dvc(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()
    # Ended but not reaped (its parent has not waited yet): a killed run's process whose
    # parent died too stays so until an init process reaps it.
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    write_run_info(tmp_path, "z0", "zombie-run", 2, zombie.pid)  # running, process ended
    write_run_info(tmp_path, "a1", "lost-run", 2, gone.pid)  # running, process gone
    write_run_info(tmp_path, "b2", "lost-prep", 1, gone.pid)  # preparing, process gone
    write_run_info(tmp_path, "c3", "alive-run", 2, os.getpid())  # running, process alive
    write_run_info(tmp_path, "d4", "done-run", 6, gone.pid)  # finished
    write_run_info(tmp_path, "e5", "stale-run", 2, gone.pid)  # DVC knows it ended
    assert experiments.reap_orphans() == ["lost-run", "lost-prep", "zombie-run"]
    assert (tmp_path / "killed").read_text() == "lost-run\nlost-prep\nzombie-run\n"
    zombie.wait()
    (tmp_path / "killed").unlink()
    for stash in ("a1", "b2", "e5", "z0"):
        shutil.rmtree(tmp_path / ".dvc" / "tmp" / "exps" / "run" / stash)
    assert experiments.reap_orphans() == [] and not (tmp_path / "killed").exists()


CPU = "Linux-6.18.44-fc-v669-x86_64-with-glibc2.36, x86_64, 2 CPUs"
GPU = "Linux-6.18.44-fc-v657-gpu-x86_64-with-glibc2.39, x86_64, 16 CPUs, NVIDIA H100 80GB HBM3"


def on_machine(run: Run, machine: str) -> Run:
    run.metrics["metrics/finetune/metrics.json"]["machine"] = machine
    return run


def test_machine_kinds_name_the_gpu_or_the_cpu_and_never_the_kernel():
    from sfae.machine import machine_kind

    assert machine_kind(CPU) == "2-core x86_64 CPU"
    assert machine_kind(CPU.replace("v669", "v700")) == machine_kind(CPU)
    assert machine_kind(GPU) == "NVIDIA H100 80GB HBM3 GPU"
    assert machine_kind("2-core x86_64 CPU") == "2-core x86_64 CPU"  # already a kind
    assert machine_kind("unknown") == machine_kind("a text of no known form") == "unknown"


def test_a_run_of_another_machine_kind_does_not_count_and_is_run_again(tmp_path):
    """The same params on a GPU round otherwise: planned for the CPU, it runs again here,
    and both records are kept (a record is its params and its machine kind)."""
    records = tmp_path / "runs.jsonl"
    spec = Spec.of(variant="pure", seed=1)
    gpu = StubExperiments([on_machine(run_of(spec.as_dict()), GPU)])
    run_plan(gpu, [spec], PARAMS, records, sleep=no_sleep, kind="NVIDIA H100 80GB HBM3 GPU")
    assert gpu.queued == [] and [r.machine_kind for r in read_records(records)] == [
        "NVIDIA H100 80GB HBM3 GPU"
    ]
    cpu = StubExperiments()
    cpu.start = lambda jobs: (  # the queued run finishes on this machine's CPU
        setattr(cpu, "store", [on_machine(run_of(o), CPU) for o in cpu.queued])
    )
    outcome = run_plan(cpu, [spec], PARAMS, records, sleep=no_sleep, kind="2-core x86_64 CPU")
    assert cpu.queued == [spec.as_dict()]
    assert outcome.records[spec].machine_kind == "2-core x86_64 CPU"
    kinds = sorted(r.machine_kind for r in read_records(records))
    assert kinds == ["2-core x86_64 CPU", "NVIDIA H100 80GB HBM3 GPU"]


def test_a_run_that_did_not_say_where_it_trained_is_recorded_as_unknown(tmp_path):
    """Not as the recorder's machine: the recorder need not be where it trained."""
    records = tmp_path / "runs.jsonl"
    run_plan(StubExperiments([run_of({"seed": 1})]), [Spec.of(seed=1)], PARAMS, records)
    assert [r.machine for r in read_records(records)] == ["unknown"]


def test_a_report_reads_the_kind_that_trained_most_of_a_networks_runs():
    from dataclasses import replace

    from sfae.experiments.records import RunRecord
    from sfae.experiments.sweep import records_kind

    base = RunRecord("pure", 1, "n", "r", {}, {}, 1.0, {}, params={"model.arch": "unet"})
    records = [replace(base, machine=GPU)] * 2 + [replace(base, machine=CPU)] * 3
    records += [replace(base, machine="unknown")] * 9
    records += [replace(base, machine=GPU, params={"model.arch": "paper"})] * 9
    assert records_kind(records, "unet") == "2-core x86_64 CPU"
    assert records_kind(records, "paper") == "NVIDIA H100 80GB HBM3 GPU"
    assert records_kind([], "unet") is None


def test_training_seconds_come_from_the_log_when_the_metrics_keep_no_clock(tmp_path):
    records = tmp_path / "runs.jsonl"
    run = run_of({"seed": 1})
    del run.metrics["metrics/finetune/metrics.json"]["seconds"]
    run_plan(StubExperiments([run]), [Spec.of(seed=1)], PARAMS, records)
    assert [r.train_seconds for r in read_records(records)] == [41.5]
    # No log (a run pulled from another machine): not known, rather than zero.
    records.unlink()
    silent = StubExperiments([run])
    silent.log_text = lambda run: None
    run_plan(silent, [Spec.of(seed=1)], PARAMS, records)
    assert [r.train_seconds for r in read_records(records)] == [None]


def test_records_whose_run_did_not_say_where_it_trained_are_corrected():
    """A bit-for-bit reproduction of the same params on a known kind shows where a run that
    did not say trained (another kind rounds otherwise)."""
    from dataclasses import replace

    from sfae.experiments.records import RunRecord, corrected_machines

    said = {"metrics/finetune/metrics.json": {"machine": "2-core x86_64 CPU"}}
    silent = {"metrics/finetune/metrics.json": {"seconds": 9.0}}
    base = RunRecord("pure", 1, "old", "r", {"test": 0.5}, {}, 9.0, {"a": 0.5}, machine="unknown")
    old = [
        replace(base, params={"seed": 1}, metrics=silent),
        replace(base, params={"seed": 2}, metrics=silent, name="old2"),
        replace(base, params={"seed": 3}, metrics=said, name="fine"),
    ]
    twin = replace(
        base, params={"seed": 2}, metrics=said, name="again", machine="2-core x86_64 CPU"
    )
    first, second, fine = corrected_machines(old)
    assert [first, second, fine] == old
    # A reproduction of seed 2 on the CPU, bit for bit: its kind is known again.
    again = corrected_machines([first, second, fine, twin])
    assert again[0] == first and again[1].machine_kind == "2-core x86_64 CPU"
    assert again[1].machine_note == "reproduced bit for bit by run again on a 2-core x86_64 CPU"
    # A reproduction that rounds otherwise shows nothing.
    other = replace(twin, per_image_iou={"a": 0.51})
    assert corrected_machines([second, other])[0].machine == "unknown"
    assert corrected_machines(again) == again  # idempotent


def test_writing_records_corrects_machines_and_keeps_the_self_describing_twin(tmp_path):
    from dataclasses import replace

    from sfae.experiments.records import RunRecord, add_records

    said = {"metrics/finetune/metrics.json": {"machine": "2-core x86_64 CPU"}}
    old = RunRecord("pure", 1, "old", "r", {"test": 0.5}, {}, 9.0, {"a": 0.5}, machine="unknown")
    old = replace(old, params={"seed": 1})
    lone = replace(old, params={"seed": 3}, name="lone")
    path = tmp_path / "runs.jsonl"
    add_records(path, [old, lone])
    assert [r.machine for r in read_records(path)] == ["unknown", "unknown"]
    twin = replace(old, name="again", metrics=said, machine="2-core x86_64 CPU")
    add_records(path, [twin])
    assert sorted((r.name, r.machine_kind) for r in read_records(path)) == [
        ("again", "2-core x86_64 CPU"),
        ("lone", "unknown"),
    ]


def test_queued_runs_whose_worker_died_get_a_new_worker(tmp_path):
    """DVC's queue worker dies now and then, leaving its queued runs: after a few polls with
    runs queued and none running, the runner starts the workers again (and not before)."""

    class DyingWorkerStub(StubExperiments):
        starts = 0

        def start(self, jobs):
            self.starts += 1
            if self.starts > 1:  # the second worker lives and runs the queue
                super().start(jobs)

    sleeps = []
    stub = DyingWorkerStub()
    outcome = run_plan(stub, plan(), PARAMS, tmp_path / "r.jsonl", sleep=sleeps.append)
    assert stub.starts == 2 and outcome.failed == [] and len(outcome.records) == 4
    assert len(sleeps) == 4  # four polls with nothing running, then the new worker


def test_a_twin_reproduces_the_scores_as_well_as_the_per_image_iou():
    """Another kind can round the pooled scores otherwise while the per-image IoU agree to the
    last bit: such a run shows nothing about where the silent one trained."""
    from dataclasses import replace

    from sfae.experiments.records import RunRecord, corrected_machines

    said = {"metrics/finetune/metrics.json": {"machine": "2-core x86_64 CPU"}}
    silent = replace(
        RunRecord("pure", 2, "old", "r", {"test": 0.5}, {}, 9.0, {"a": 0.5}, machine="unknown"),
        params={"seed": 2},
    )
    close = replace(silent, name="close", metrics=said, machine="2-core x86_64 CPU")
    close = replace(close, evaluate={"test": 0.5000001})
    assert corrected_machines([silent, close])[0].machine == "unknown"
    exact = replace(close, name="exact", evaluate=dict(silent.evaluate))
    assert corrected_machines([silent, exact])[0].machine_kind == "2-core x86_64 CPU"


def test_a_run_trained_where_its_last_training_stage_says():
    """Pretraining restored from DVC's run cache may have run elsewhere: the finetuning
    stage's machine is where the model was trained last."""
    from sfae.experiments.records import TRAINING_JSONS, trained_on

    pretrain, finetune = TRAINING_JSONS
    both = {
        pretrain: {"machine": "NVIDIA H100 80GB HBM3 GPU"},
        finetune: {"machine": "2-core x86_64 CPU"},
    }
    assert trained_on(both) == "2-core x86_64 CPU"
    assert trained_on({**both, finetune: {"seconds": 3.0}}) == "NVIDIA H100 80GB HBM3 GPU"
    assert trained_on({pretrain: {}, finetune: {}}) == trained_on({}) == "unknown"


def test_a_record_from_before_a_later_setting_counts_as_its_value_then():
    from sfae.experiments.runner import fulfils

    old = {"variant": "sparse_softabs_frames", "seed": 1, "mall.frames": 500}  # no such key
    assert fulfils(old, {**old, "mall.unlabeled_frames": 1500})  # all it could prepare then
    assert not fulfils(old, {**old, "mall.unlabeled_frames": 8})
    assert fulfils(old, {**old, "render.fps": 10})  # no later default: any value matches


def test_params_match_up_to_yaml_rounding_but_a_boolean_is_no_number():
    from sfae.experiments.records import same_value
    from sfae.experiments.runner import fulfils

    assert same_value(0.1 + 0.2, 0.3) and same_value(5, 5.0) and same_value(True, True)
    assert not same_value(True, 1) and not same_value(0, False) and not same_value(0.1, 0.1001)
    flip = "variants.augment.augment.flip"
    assert fulfils({flip: True, "seed": 1}, {flip: True}) and not fulfils({flip: 1}, {flip: True})


def test_a_runs_scores_depend_on_its_own_variant_and_architecture_settings_only():
    from sfae.experiments.runner import scored_params

    flat = {
        "variant": "l2",
        "seed": 1,
        "model.arch": "paper",
        "model.unet.width": 8,
        "variants.l2.regularizer_scale": 0.005,
        "variants.pure.regularizer": "none",
        "train.epochs": 801,
        "data.val_count": 0,
        "render.fps": 10,
    }
    others = ("model.unet.width", "variants.pure.regularizer", "render.fps")
    assert scored_params(flat) == {k: v for k, v in flat.items() if k not in others}
    unet = scored_params({**flat, "model.arch": "unet"})
    assert unet["model.unet.width"] == 8 and "variants.pure.regularizer" not in unet
