"""Where a queued run's wall time goes besides training, and which concurrency gives the
most runs per hour.

    python bench/run_overhead.py [--before REV] [--trials 3] [--jobs 1 2]

1. Overhead: a selection-style run (a 12-epoch U-Net, validation images held out, up to
   `evaluate`) as `dvc exp run --temp`, in a fresh clone of this repository at HEAD, one at
   HEAD with the data copied rather than linked into the experiment's workspace (DVC's
   default `cache.type`) and one at REV (the pipeline before the cuts), all sharing this
   repository's DVC cache so the data stages are restored, not re-run. Trials alternate
   between the clones so that whatever else the machine does weighs on all alike. Overhead =
   wall time minus the training seconds the run itself reports; each stage's share is read
   off the timestamps of DVC's own lines. Medians over the trials.
2. Concurrency: the same short runs queued and run with `dvc queue start -j N`, for each N
   of --jobs: runs per hour of wall time.
Writes the printed text to bench/results/run_overhead.txt.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))
SHORT_RUN = [
    "model.arch=unet",
    "model.unet.epochs=12",
    "model.unet.pretrain_epochs=3",
    "data.val_count=17",
]
# A stage DVC runs, or one it skips (unchanged, or restored from its run cache).
STAGE = re.compile(r"^Running stage '(\w+)'|^Stage '(\w+)' (?:didn't change|is cached)")
TRAINED = re.compile(r"sfae train: ([0-9.]+) s pretraining, ([0-9.]+) s training")


def clone(rev: str, folder: Path, link: str | None = None) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(folder)], check=True)
    subprocess.run(["git", "checkout", "-q", rev], cwd=folder, check=True)
    cache = ROOT / ".dvc" / "cache"
    subprocess.run([DVC, "cache", "dir", "--local", str(cache)], cwd=folder, check=True)
    if link:  # the experiments' workspaces take the local config too
        subprocess.run([DVC, "config", "--local", "cache.type", link], cwd=folder, check=True)
    return folder


def trained_seconds(repo: Path, log: str, name: str) -> float:
    if found := TRAINED.findall(log):  # the pipeline that logs its training time
        return sum(map(float, found[-1]))
    shown = subprocess.run(  # the earlier one kept it in its metrics
        [DVC, "exp", "show", "--json", "-n", "1"], cwd=repo, capture_output=True, text=True
    )
    for row in json.loads(shown.stdout):
        for group in row.get("experiments") or []:
            for rev in group.get("revs") or []:
                if rev.get("name") == name:
                    metrics = rev["data"]["metrics"]
                    return sum(
                        float(
                            metrics.get(f"metrics/{phase}/metrics.json", {})
                            .get("data", {})
                            .get("seconds", 0.0)
                        )
                        for phase in ("pretrain", "finetune")
                    )
    raise RuntimeError(f"{repo}: no training seconds for {name}")


def one_run(repo: Path, seed: int) -> dict:
    """Wall seconds, training seconds and each stage's seconds of one --temp run."""
    settings = [arg for s in [*SHORT_RUN, f"seed={seed}"] for arg in ("-S", s)]
    command = [DVC, "exp", "run", "--temp", "evaluate", *settings]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    marks, lines = [], []
    for line in process.stdout:
        lines.append(line)
        if match := STAGE.match(line):
            marks.append((time.perf_counter() - started, match.group(1) or "(skipped)"))
    wall = time.perf_counter() - started
    if process.wait() != 0:
        raise RuntimeError("".join(lines[-30:]))
    name = re.search(r"Ran experiment\(s\): (\S+)", "".join(lines)).group(1)
    # Each stage's share runs from its own line to the next one: DVC's start, before the first.
    stages = {"dvc start": marks[0][0] if marks else wall}
    for (at, stage), (until, _) in zip(marks, [*marks[1:], (wall, "end")], strict=True):
        key = "dvc checks" if stage == "(skipped)" else stage
        stages[key] = stages.get(key, 0.0) + until - at
    training = trained_seconds(repo, "".join(lines), name)
    return {"wall": wall, "training": training, "overhead": wall - training, "stages": stages}


def throughput(repo: Path, jobs: int, runs: int, first_seed: int) -> float:
    """Runs per hour: `runs` short runs queued, then the queue run with `jobs` workers."""
    for seed in range(first_seed, first_seed + runs):
        settings = [arg for s in [*SHORT_RUN, f"seed={seed}"] for arg in ("-S", s)]
        subprocess.run(
            [DVC, "exp", "run", "--queue", "evaluate", *settings],
            cwd=repo,
            check=True,
            capture_output=True,
        )
    started = time.perf_counter()
    subprocess.run(
        [DVC, "queue", "start", "-j", str(jobs)], cwd=repo, check=True, capture_output=True
    )
    while True:
        status = subprocess.run(
            [DVC, "queue", "status"], cwd=repo, capture_output=True, text=True
        ).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(2)
    return runs * 3600.0 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="d211624", help="the pipeline before the cuts")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--jobs", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--runs", type=int, default=4, help="queued runs per concurrency")
    args = parser.parse_args()
    out = []

    def say(text=""):
        print(text, flush=True)
        out.append(text)

    with tempfile.TemporaryDirectory() as folder:
        repos = {
            "before": clone(args.before, Path(folder) / "before"),
            # Now, but with the data copied into each experiment's workspace, as before.
            "copied": clone("HEAD", Path(folder) / "copied", link="copy"),
            "after": clone("HEAD", Path(folder) / "after"),
        }
        # Seeds no earlier invocation and no other clone used: the clones share this
        # repository's DVC cache, and a deterministic run of a seed already run (by a clone of
        # the same code, say) would find its `evaluate` in DVC's run cache.
        base = int(time.time()) % 100_000 * 100
        for number, repo in enumerate(repos.values()):  # a clone's first run: not timed
            one_run(repo, base + number)
        trials = {label: [] for label in repos}
        for trial in range(args.trials):
            for number, (label, repo) in enumerate(repos.items()):
                trials[label].append(one_run(repo, base + 10 + trial * len(repos) + number))
        say(f"Overhead of one short queued-style run (median of {args.trials}):")
        for label, runs in trials.items():
            median = {
                k: statistics.median(r[k] for r in runs) for k in ("wall", "training", "overhead")
            }
            names = dict.fromkeys(s for r in runs for s in r["stages"])  # every trial's
            stages = {s: statistics.median(r["stages"].get(s, 0.0) for r in runs) for s in names}
            say(
                f"  {label:6} wall {median['wall']:.1f} s, training {median['training']:.1f} s, "
                f"overhead {median['overhead']:.1f} s"
            )
            say("         " + ", ".join(f"{s} {v:.1f} s" for s, v in stages.items()))
        say()
        say(f"Runs per hour, {args.runs} short runs queued (pipeline after):")
        for n, jobs in enumerate(args.jobs):
            per_hour = throughput(repos["after"], jobs, args.runs, base + 50 + 10 * n)
            say(f"  -j {jobs}: {per_hour:.0f} runs/h")
    (ROOT / "bench" / "results" / "run_overhead.txt").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
