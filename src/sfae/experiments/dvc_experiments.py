"""DVC's experiments, through its command line: what the runner queues, waits for and reads."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from sfae.errors import SfaeError
from sfae.experiments.records import run_params

SHOW_TIMEOUT = 300.0  # seconds; `exp show` takes under a minute even with two workers busy
# DVC's TaskStatus of a run's info file while it prepares or runs (dvc.repo.experiments).
ACTIVE_STATUSES = (1, 2)
# How `exp show` fails on a run DVC calls running whose info file is gone.
_LOST_RUN = re.compile(r"No such file or directory: '[^']*exps/run/([0-9a-f]{40})/\1\.run'")


@dataclass
class Run:  # one row of `dvc exp show`: a baseline commit or an experiment
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
        return run_params(self.params)


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


class DvcExperiments:
    def __init__(self, root: Path, base: str = "HEAD", dvc: Path | None = None, commits: int = 100):
        self.root, self.commits, self.show_timeout = root, commits, SHOW_TIMEOUT
        venv_dvc = Path(sys.executable).with_name("dvc")
        self.dvc = str(dvc or (venv_dvc if venv_dvc.exists() else "dvc"))
        # Pinned: a commit made mid-campaign must not hide its queued runs (else queued again).
        self.base = self._git("rev-parse", base).strip()
        self.run_info = root / ".dvc" / "tmp" / "exps" / "run"  # DVC's own: <stash>/<stash>.run

    def _git(self, *args: str) -> str:
        return self._dvc(*args, tool="git")

    def _dvc(self, *args: str, timeout: float | None = None, tool: str = "dvc") -> str:
        # Output to files: the workers `queue start` leaves inherit it (a pipe would wait for the
        # whole queue). With a timeout, a process group of its own: killed with what it started.
        cmd = f"`{tool} {' '.join(args)}`"
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            process = subprocess.Popen(
                [self.dvc if tool == "dvc" else tool, *args],
                cwd=self.root,
                stdout=out,
                stderr=err,
                start_new_session=timeout is not None,
            )
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise SfaeError(f"{cmd} gave no answer in {timeout:g} s and was stopped") from None
            out.seek(0)
            err.seek(0)
            if process.returncode != 0:
                raise SfaeError(f"{cmd} failed: {err.read().strip()[-2000:]}")
            return out.read()

    def baselines(self) -> list[str]:
        """The base and the commits of finished, queued or running experiments (~8x faster to show
        than `exp show -n 100`)."""
        found = {self.base}
        for ref in self._git("for-each-ref", "--format=%(refname)", "refs/exps/").split():
            parts = ref.split("/")
            if len(parts) == 5 and len(parts[2]) == 2:
                found.add(parts[2] + parts[3])
        with contextlib.suppress(SfaeError):  # no queue stash yet
            stash = self._git("log", "-g", "--format=%gs", "refs/exps/celery/stash")
            found.update(line.split(":")[2] for line in stash.splitlines() if "dvc-exp:" in line)
        for info in self.run_info.glob("*/*.run"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                found.add(json.loads(info.read_text())["baseline_rev"])
        return sorted(found)

    def runs(self, tries: int = 3, pause: float = 5.0) -> list[Run]:
        # `exp show` fails while a worker sets up or hangs on a lock (12 min seen): ask again.
        revs = [arg for rev in self.baselines() for arg in ("--rev", rev)]
        command = ("exp", "show", "--json", *revs, "-n", "1")
        for _ in range(tries - 1):
            try:
                return parse_exp_show(json.loads(self._dvc(*command, timeout=self.show_timeout)))
            except SfaeError as error:
                # A run whose worker died leaves it "running" with no info file, failing every
                # `exp show`: `queue kill` ends it (DVC refuses while a live worker sets it up).
                if lost := _LOST_RUN.search(str(error)):
                    try:
                        self._dvc("queue", "kill", lost[1])
                    except SfaeError as refused:
                        if "is initializing" not in str(refused):
                            raise
                    else:
                        print(f"run {lost[1][:7]} had lost its worker (an ended session?); rerun")
            time.sleep(pause)
        return parse_exp_show(json.loads(self._dvc(*command, timeout=self.show_timeout)))

    def queue(self, grid: dict[str, list], target: str | None = None) -> None:
        said = {key: ",".join(map(_yaml_value, values)) for key, values in grid.items()}
        settings = [arg for key, values in said.items() for arg in ("-S", f"{key}={values}")]
        self._dvc("exp", "run", "--queue", *([target] if target else []), *settings)

    def start(self, jobs: int) -> None:
        self._dvc("queue", "start", "-j", str(jobs))

    def remove_failed(self) -> None:
        self._dvc("queue", "remove", "--failed")

    def activity(self) -> tuple:
        """What changes when a run starts, ends or fails, read fast: refs and run-info files."""
        files = []
        for path in sorted(self.run_info.glob("*/*")):
            with contextlib.suppress(OSError):  # a run's files go when it ends
                stat = path.stat()
                files.append((path.name, stat.st_size, stat.st_mtime_ns))
        return self._git("for-each-ref", "refs/exps"), tuple(files)

    def reap_orphans(self) -> list[str]:
        """Kill (and name) the runs DVC calls running whose process is gone (else waited for)."""
        orphans = []
        for info in sorted(self.run_info.glob("*/*.run")):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                run = json.loads(info.read_text())
                # dvc-task writes the pid alone in <stash>.pid (its .json holds it too).
                pid = int(info.with_suffix(".pid").read_text())
                if run["status"] in ACTIVE_STATUSES and not _alive(pid):
                    orphans.append(run["name"])
        killed = []
        for name in orphans:  # one at a time: one name DVC rejects fails the whole call
            try:
                self._dvc("queue", "kill", name)
                killed.append(name)
            except SfaeError as error:
                if "valid running experiment name" not in str(error):
                    raise  # else a leftover info file: DVC's queue already counts it ended
        return killed

    def read_text(self, rev: str, path: str) -> str:
        return self._git("show", f"{rev}:{path}")

    def log_text(self, run: Run) -> str | None:
        """What a queued run printed (`dvc queue logs`); None without a log here."""
        with contextlib.suppress(SfaeError):
            return self._dvc("queue", "logs", run.name, timeout=self.show_timeout)
        return None

    def push(self, remote: str) -> None:
        """Send this base's experiments (git refs, and outputs to the DVC remote)."""
        self._dvc("exp", "push", "--rev", self.base, "-n", str(self.commits), remote)

    def pull(self, remote: str) -> None:
        self._dvc("exp", "pull", "--rev", self.base, "-n", str(self.commits), remote)


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie, which psutil.pid_exists counts, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


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
