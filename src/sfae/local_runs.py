"""Experiments without DVC or git: the runner's plans run in plain folders, e.g. on a GPU box.

`python -m sfae.sweep --local DIR` (or `sfae.study`) hands the same plans to this store
instead of DVC's queue. Each run gets a folder under DIR with its own params.yaml (the
repository's, with the run's overrides set, as `dvc exp run -S` sets them) and links to the
repository's code; the stages of dvc.yaml that lead to the target run there, in order, with
the commands dvc.yaml gives. Stages that write no metrics (downloads, preprocessing) are
shared by runs with the same command, params and code, as DVC's run cache shares them: they
run once, into DIR/.stages, and later runs link their outputs.

The records it gives are those of DVC runs: the same stages wrote the same files. Their
`rev` is the run's folder name, their `commit` the code's commit (git's HEAD, or
SFAE_COMMIT where there is no git).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from sfae.errors import SfaeError
from sfae.params import read_yaml
from sfae.runner import Run, process_alive

CODE = ("src", "stages", "dvc.yaml")  # what a run's folder links from the repository
STATE = "run.json"  # a run's overrides, target, state and process
LOG = "log.txt"


def _head_commit(root: Path) -> str:
    if "SFAE_COMMIT" in os.environ:
        return os.environ["SFAE_COMMIT"]
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SfaeError(f"{root}: no git commit to name the code by; set SFAE_COMMIT")
    return done.stdout.strip()


def set_dotted(params: dict, dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    node = params
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


def get_dotted(params: dict, dotted: str) -> Any:
    node = params
    for part in dotted.split("."):
        node = node[part]
    return node


def _paths(entries: list) -> list[str]:
    """dvc.yaml's deps/outs/metrics entries: a path, or {path: options}."""
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries or []]


class Pipeline:
    """dvc.yaml's stages: which stages a target needs, and what keys a shared stage."""

    def __init__(self, dvc_yaml: Path):
        self.stages = read_yaml(dvc_yaml.read_text())["stages"]
        self.metrics = [
            path for stage in self.stages.values() for path in _paths(stage.get("metrics"))
        ]

    def outs(self, name: str) -> list[str]:
        stage = self.stages[name]
        return _paths(stage.get("outs")) + _paths(stage.get("metrics"))

    def upstream(self, name: str) -> list[str]:
        deps = _paths(self.stages[name].get("deps"))
        return [
            other
            for other in self.stages
            if other != name
            and any(
                dep == out or dep.startswith(f"{out}/") for dep in deps for out in self.outs(other)
            )
        ]

    def shared(self, name: str) -> bool:
        return not self.stages[name].get("metrics")

    def params(self, name: str, params: dict) -> dict:
        """The stage's params' values in `params` (dvc.yaml's ${key} templates filled in)."""
        values = {}
        for entry in self.stages[name].get("params") or []:
            key = re.sub(r"\$\{([^}]+)\}", lambda m: str(get_dotted(params, m[1])), str(entry))
            values[key] = get_dotted(params, key)
        return values

    def key(self, name: str, params: dict, root: Path) -> str:
        """What a shared stage's outputs depend on: its command, params and code files."""
        code = {
            dep: hashlib.sha256((root / dep).read_bytes()).hexdigest()
            for dep in _paths(self.stages[name].get("deps"))
            if (root / dep).is_file()
        }
        text = json.dumps(
            [self.stages[name]["cmd"], self.params(name, params), code], sort_keys=True
        )
        return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class LocalExperiments:
    """The runner's experiment store, kept in folders under `runs_dir` (see the module)."""

    def __init__(self, root: Path, runs_dir: Path, commit: str | None = None):
        self.root, self.dir = root.resolve(), runs_dir.resolve()
        self.base = commit or _head_commit(self.root)
        self.pipeline = Pipeline(self.root / "dvc.yaml")
        self.params = read_yaml((self.root / "params.yaml").read_text())
        self.dir.mkdir(parents=True, exist_ok=True)
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stage_locks: dict[str, threading.Lock] = {}

    # The runner's side (sfae.runner.Experiments).

    def runs(self) -> list[Run]:
        runs = []
        for folder in sorted(self.dir.iterdir()):
            state_file = folder / STATE
            if not state_file.exists():
                continue
            state = json.loads(state_file.read_text())
            params = read_yaml((folder / "params.yaml").read_text())
            metrics = {
                path: json.loads((folder / path).read_text())
                for path in self.pipeline.metrics
                if (folder / path).is_file()
            }
            log = str(folder / LOG)
            runs.append(
                Run(
                    folder.name,
                    folder.name,
                    state["state"],
                    params,
                    metrics,
                    log,
                    self.base,
                    self.params,
                )
            )
        return runs

    def queue(self, grid: dict[str, list], target: str | None = None) -> None:
        target = target or list(self.pipeline.stages)[-1]
        if target not in self.pipeline.stages:
            raise SfaeError(f"{self.root / 'dvc.yaml'}: no stage {target!r}")
        keys = list(grid)
        for values in itertools.product(*(grid[key] for key in keys)):
            overrides = dict(zip(keys, values, strict=True))
            params = json.loads(json.dumps(self.params))  # a deep copy
            for key, value in overrides.items():
                set_dotted(params, key, value)
            label = json.dumps(overrides, sort_keys=True)
            folder = self.dir / hashlib.sha256(label.encode()).hexdigest()[:12]
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            self._write_state(folder, overrides=overrides, target=target, state="queued")

    def start(self, jobs: int) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, args=(jobs,), daemon=True)
                self._worker.start()

    def wait(self) -> None:
        if self._worker is not None:
            self._worker.join()

    def remove_failed(self) -> None:
        for run in self.runs():
            if run.state == "failed":
                shutil.rmtree(self.dir / run.name)

    def reap_orphans(self) -> list[str]:
        """Mark failed the runs left 'running' by a process that is gone."""
        orphans = []
        for run in self.runs():
            folder = self.dir / run.name
            state = json.loads((folder / STATE).read_text())
            if run.state == "running" and not process_alive(state.get("pid", 0)):
                self._write_state(folder, **{**state, "state": "failed"})
                orphans.append(run.name)
        return orphans

    def read_text(self, rev: str, path: str) -> str:
        return (self.dir / rev / path).read_text()

    # Running.

    def _write_state(self, folder: Path, **state) -> None:
        staged = folder / f".{STATE}.tmp"
        staged.write_text(json.dumps(state, sort_keys=True) + "\n")
        staged.replace(folder / STATE)

    def _work(self, jobs: int) -> None:
        # Runs queued while the pool works are picked up by the next round.
        while queued := [run.name for run in self.runs() if run.state == "queued"]:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(self._run, queued))

    def _run(self, name: str) -> None:
        folder = self.dir / name
        state = json.loads((folder / STATE).read_text())
        self._write_state(folder, **{**state, "state": "running", "pid": os.getpid()})
        params = read_yaml((folder / "params.yaml").read_text())
        for entry in CODE:
            link = folder / entry
            if not link.exists():
                link.symlink_to(self.root / entry)
        with (folder / LOG).open("w") as log:
            try:
                ok = self._make(state["target"], folder, params, log, set())
            except Exception as error:  # noqa: BLE001  (a run left "running" is waited for forever)
                log.write(f"{type(error).__name__}: {error}\n")
                ok = False
        self._write_state(folder, **{**state, "state": "success" if ok else "failed"})

    def _make(self, stage: str, folder: Path, params: dict, log, done: set[str]) -> bool:
        """Bring `stage`'s outputs into `folder`: linked from the shared stages, or made by
        running it after whatever it needs. False when a command failed (see the log)."""
        if stage in done:
            return True
        done.add(stage)
        if not self.pipeline.shared(stage):
            return self._execute(stage, folder, params, log, done)
        key = self.pipeline.key(stage, params, self.root)
        with self._lock:
            stage_lock = self._stage_locks.setdefault(key, threading.Lock())
        with stage_lock:  # runs that need the same shared stage wait for the first
            shared = self.dir / ".stages" / key
            if not shared.exists():
                if not self._execute(stage, folder, params, log, done):
                    return False
                self._share(stage, shared, folder)
            return self._link(stage, shared, folder)

    def _execute(self, stage: str, folder: Path, params: dict, log, done: set[str]) -> bool:
        """Run what `stage` needs, then its command, in `folder`."""
        if not all(
            self._make(up, folder, params, log, done) for up in self.pipeline.upstream(stage)
        ):
            return False
        command = self.pipeline.stages[stage]["cmd"]
        log.write(f"$ {command}\n")
        log.flush()
        result = subprocess.run(
            command, shell=True, cwd=folder, stdout=log, stderr=subprocess.STDOUT
        )
        if result.returncode != 0:
            log.write(f"stage {stage} failed with exit status {result.returncode}\n")
            return False
        return True

    def _share(self, stage: str, shared: Path, folder: Path) -> None:
        """Move a shared stage's outputs into the store (whole, or not at all)."""
        staging = shared.with_name(f"{shared.name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)  # left by a killed process
        for out in self.pipeline.outs(stage):
            (staging / out).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(folder / out, staging / out)
        staging.rename(shared)

    def _link(self, stage: str, shared: Path, folder: Path) -> bool:
        for out in self.pipeline.outs(stage):
            link = folder / out
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                continue
            link.symlink_to(shared / out)
        return True
