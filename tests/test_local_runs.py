"""Runs without DVC (sfae.local_runs) on a toy dvc.yaml whose stages are tiny scripts: the
stages a target needs run in order, shared stages run once, failures and lost processes are
reported, and the resumable runner records the runs like DVC's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sfae.errors import SfaeError
from sfae.local_runs import LocalExperiments, Pipeline
from sfae.records import read_records
from sfae.runner import Spec, run_plan

DVC_YAML = {
    "stages": {
        "prepare": {
            "cmd": "python stages/prepare.py",
            "deps": ["stages/prepare.py"],
            "params": ["data.size"],
            "outs": ["data/prepared/data.txt"],
        },
        "train": {
            "cmd": "python stages/train.py",
            "deps": ["stages/train.py", "data/prepared/data.txt"],
            "params": ["seed", "variants.${variant}"],
            "outs": ["models/model.txt"],
            "metrics": [{"metrics/finetune/metrics.json": {"cache": False}}],
        },
        "evaluate": {
            "cmd": "python stages/evaluate.py",
            "deps": ["stages/evaluate.py", "models/model.txt"],
            "outs": [{"metrics/per_image.tsv": {"cache": False}}],
            "metrics": ["metrics/evaluate.json", "metrics/mall.json"],
        },
        "render": {
            "cmd": "python stages/render.py",
            "deps": ["models/model.txt"],
            "outs": ["renders"],
        },
    }
}
PARAMS = {
    "seed": 1,
    "variant": "pure",
    "data": {"size": 4},
    "variants": {"pure": {"scale": 0.0}, "l2": {"scale": 0.5}},
}
# Each script notes that it ran (in $RAN, outside the run folders) and writes its outputs.
SCRIPTS = {
    "prepare": """
params = yaml.safe_load(open("params.yaml"))
Path("data/prepared").mkdir(parents=True, exist_ok=True)
Path("data/prepared/data.txt").write_text(str(params["data"]["size"]))
""",
    "train": """
params = yaml.safe_load(open("params.yaml"))
if params["seed"] == 13:
    sys.exit("unlucky seed")
scale = params["variants"][params["variant"]]["scale"]
size = int(Path("data/prepared/data.txt").read_text())
Path("models").mkdir(exist_ok=True)
Path("models/model.txt").write_text(str(size * params["seed"] + scale))
Path("metrics/finetune").mkdir(parents=True, exist_ok=True)
Path("metrics/finetune/metrics.json").write_text(json.dumps({"seconds": 2.5, "machine": "toy"}))
""",
    "evaluate": """
value = float(Path("models/model.txt").read_text())
Path("metrics/evaluate.json").write_text(json.dumps({"test": {"pooled": {"iou": value}}}))
Path("metrics/mall.json").write_text(json.dumps({"frames": 3}))
Path("metrics/per_image.tsv").write_text(f"name\\tiou\\nFudanPed00001\\t{value}\\n")
""",
    "render": "raise SystemExit('render is not needed for evaluate')",
}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "repo"
    (root / "stages").mkdir(parents=True)
    (root / "src").mkdir()
    for name, body in SCRIPTS.items():
        header = "import json, os, sys, yaml\nfrom pathlib import Path\n"
        header += f"with open(os.environ['RAN'], 'a') as ran: ran.write('{name}\\n')\n"
        (root / "stages" / f"{name}.py").write_text(header + body)
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    monkeypatch.setenv("RAN", str(tmp_path / "ran.txt"))
    # The stage commands say `python`: this interpreter, as a venv's bin on PATH gives it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return root


def ran(repo: Path) -> list[str]:
    path = repo.parent / "ran.txt"
    return path.read_text().split() if path.exists() else []


def test_the_target_runs_after_what_it_needs_and_shared_stages_run_once(repo: Path) -> None:
    store = LocalExperiments(repo, repo.parent / "runs", commit="abc123")
    store.queue({"seed": [1, 2], "variant": ["pure", "l2"]}, "evaluate")
    assert sorted(run.state for run in store.runs()) == ["queued"] * 4
    store.start(jobs=2)
    store.wait()
    runs = store.runs()
    assert [run.state for run in runs] == ["success"] * 4
    # prepare (no metrics) ran once for all four runs; render is not upstream of evaluate.
    assert sorted(ran(repo)) == ["evaluate"] * 4 + ["prepare"] + ["train"] * 4
    values = {
        (run.params["variant"], run.params["seed"]): run.metrics["metrics/evaluate.json"]
        for run in runs
    }
    assert values[("l2", 2)] == {"test": {"pooled": {"iou": 8.5}}}
    assert values[("pure", 1)] == {"test": {"pooled": {"iou": 4.0}}}
    run = runs[0]
    assert run.baseline == "abc123" and run.baseline_params == PARAMS
    assert set(run.metrics) == {
        "metrics/finetune/metrics.json",
        "metrics/evaluate.json",
        "metrics/mall.json",
    }
    assert store.read_text(run.rev, "metrics/per_image.tsv").startswith("name\tiou\n")


def test_a_shared_stage_runs_again_for_other_params_or_other_code(repo: Path) -> None:
    store = LocalExperiments(repo, repo.parent / "runs", commit="abc123")
    store.queue({"data.size": [4, 5]}, "train")
    store.start(jobs=1)
    store.wait()
    assert ran(repo).count("prepare") == 2
    with (repo / "stages" / "prepare.py").open("a") as script:
        script.write("# changed\n")
    store.queue({"data.size": [4], "seed": [3]}, "train")
    store.start(jobs=1)
    store.wait()
    assert ran(repo).count("prepare") == 3
    assert {run.state for run in store.runs()} == {"success"}


def test_a_failing_stage_fails_its_run_only_and_is_logged(repo: Path) -> None:
    store = LocalExperiments(repo, repo.parent / "runs", commit="abc123")
    store.queue({"seed": [1, 13]}, "evaluate")
    store.start(jobs=2)
    store.wait()
    states = {run.params["seed"]: run for run in store.runs()}
    assert states[1].state == "success" and states[13].state == "failed"
    log = Path(states[13].log).read_text()
    assert "unlucky seed" in log and "stage train failed" in log
    assert "evaluate.json" not in " ".join(states[13].metrics)
    store.remove_failed()
    assert [run.params["seed"] for run in store.runs()] == [1]


def test_a_run_that_cannot_start_a_stage_fails_rather_than_hangs(repo: Path) -> None:
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["stages"]["prepare"]["params"].append("data.missing")
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline))
    store = LocalExperiments(repo, repo.parent / "runs", commit="abc123")
    store.queue({"seed": [1]}, "evaluate")
    store.start(jobs=1)
    store.wait()
    (run,) = store.runs()
    assert run.state == "failed"
    assert "KeyError" in Path(run.log).read_text() and ran(repo) == []


def test_a_run_whose_process_is_gone_is_reaped(repo: Path) -> None:
    store = LocalExperiments(repo, repo.parent / "runs", commit="abc123")
    store.queue({"seed": [1]}, "evaluate")
    folder = store.dir / store.runs()[0].name
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**state, "state": "running", "pid": dead.pid}))
    assert store.reap_orphans() == [folder.name]
    assert store.runs()[0].state == "failed"


def test_an_unknown_target_and_a_missing_commit_are_named(repo: Path, monkeypatch) -> None:
    store = LocalExperiments(repo, repo.parent / "runs", commit="abc123")
    with pytest.raises(SfaeError, match="no stage 'score'"):
        store.queue({"seed": [1]}, "score")
    monkeypatch.delenv("SFAE_COMMIT", raising=False)
    with pytest.raises(SfaeError, match="SFAE_COMMIT"):
        LocalExperiments(repo, repo.parent / "runs")
    monkeypatch.setenv("SFAE_COMMIT", "def456")
    assert LocalExperiments(repo, repo.parent / "runs").base == "def456"


def test_the_runner_records_local_runs_like_dvc_runs(repo: Path) -> None:
    store = LocalExperiments(repo, repo.parent / "runs", commit="abc123")
    records_path = repo / "runs.jsonl"
    specs = [Spec.of(variant="l2", seed=seed) for seed in (1, 2, 13)]
    outcome = run_plan(
        store, specs, PARAMS, records_path, jobs=2, target="evaluate", sleep=lambda _: store.wait()
    )
    assert outcome.failed == ["seed=13 variant=l2"]
    records = {record.seed: record for record in read_records(records_path)}
    assert set(records) == {1, 2}
    record = records[2]
    assert record.commit == "abc123" and record.rev == record.name
    assert record.overrides == {"variant": "l2", "seed": 2}
    assert record.per_image_iou == {"FudanPed00001": 8.5}
    assert record.train_seconds == 2.5 and record.machine == "toy"
    # Again: everything recorded is skipped, the failed run is tried once more.
    before = ran(repo).count("train")
    run_plan(store, specs, PARAMS, records_path, target="evaluate", sleep=lambda _: store.wait())
    assert ran(repo).count("train") == before + 1


def test_stage_params_fill_in_templates() -> None:
    pipeline = Pipeline.__new__(Pipeline)
    pipeline.stages = DVC_YAML["stages"]
    assert pipeline.params("train", {**PARAMS, "variant": "l2"}) == {
        "seed": 1,
        "variants.l2": {"scale": 0.5},
    }
    assert pipeline.upstream("evaluate") == ["train"]
    assert pipeline.shared("prepare") and not pipeline.shared("train")


def test_the_machine_description_names_the_gpu_the_backend_computes_on(monkeypatch) -> None:
    from types import SimpleNamespace

    import keras

    from sfae.machine import machine_description

    gpu = SimpleNamespace(device_kind="NVIDIA H100 80GB HBM3")
    jax = SimpleNamespace(default_backend=lambda: "gpu", devices=lambda: [gpu])
    monkeypatch.setitem(sys.modules, "jax", jax)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert machine_description().endswith("CPUs, NVIDIA H100 80GB HBM3")
    # The GPU JAX sees is not named when Keras computes with TensorFlow (on the CPU here).
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    assert machine_description().endswith(f"{os.cpu_count()} CPUs")
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setitem(sys.modules, "jax", SimpleNamespace(default_backend=lambda: "cpu"))
    assert machine_description().endswith(f"{os.cpu_count()} CPUs")


def test_the_data_packed_for_a_gpu_box_unpacks_bit_for_bit(repo_root: Path, tmp_path: Path) -> None:
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("gpu_sweep", repo_root / "bench" / "gpu_sweep.py")
    gpu_sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_sweep)
    rng = np.random.default_rng(0)
    arrays = {
        "images": rng.integers(0, 256, (6, 8, 8, 3)).astype(np.float32) / np.float32(255),
        "resized": rng.random((4, 5), dtype=np.float32),  # not 8-bit values: kept as floats
        "masks": rng.integers(0, 2, (6, 8, 8)).astype(np.uint8),
        "names": np.array(["FudanPed00001", "PennPed00002"]),
    }
    np.savez(tmp_path / "source.npz", **arrays)
    gpu_sweep.pack_npz(tmp_path / "source.npz", tmp_path / "packed.npz")
    assert set(np.load(tmp_path / "packed.npz")) == {"images__u8", "resized", "masks", "names"}
    gpu_sweep.unpack_npz(tmp_path / "packed.npz", tmp_path / "unpacked.npz")
    unpacked = np.load(tmp_path / "unpacked.npz")
    assert set(unpacked) == set(arrays)
    for name, array in arrays.items():
        assert unpacked[name].dtype == array.dtype and np.array_equal(unpacked[name], array)
