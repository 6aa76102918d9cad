"""The study: the post's five variants x every study seed, as DVC experiments, then the report.

`make study` calls `python -m sfae.study`. Runs that have a record in reports/runs.jsonl are
skipped (the committed baseline among them); each finished run's record is written as it
finishes; a run that fails is reported and the others still run. `--report-only` rebuilds
reports/study.md from the records alone.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from sfae.errors import SfaeError, run_stage
from sfae.local_runs import LocalExperiments
from sfae.params import POST_VARIANTS, Config, load_config, read_yaml
from sfae.paths import ProjectPaths
from sfae.records import IN_REPO, RunRecord, read_records
from sfae.report import write_report
from sfae.runner import (
    DvcExperiments,
    Spec,
    find_record,
    record_finished,
    run_plan,
    share,
    wanted_params,
)

MALL_PROBABILITY = IN_REPO.mall_probability.as_posix()


def study_plan(config: Config) -> list[Spec]:
    return [Spec.of(variant=v, seed=s) for v in POST_VARIANTS for s in config.study.seeds]


def study_records(records: list[RunRecord], specs: list[Spec], params: dict) -> list[RunRecord]:
    """The record of every planned run that has one, in plan order."""
    found = [find_record(records, wanted_params(params, spec)) for spec in specs]
    return [record for record in found if record is not None]


def campaign_setup(description: str, more_options=None):
    """(arguments, paths, config, params) of a study or sweep command line; more_options
    (a function of the parser) adds a command's own options."""
    parser = argparse.ArgumentParser(description=description)
    add_share_arguments(parser)
    if more_options:
        more_options(parser)
    paths = ProjectPaths.here()
    params_path = paths.params
    return parser.parse_args(), paths, load_config(params_path), read_yaml(params_path.read_text())


def add_share_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=2, help="experiments run at once (default 2)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report only")
    parser.add_argument(
        "--share",
        default="1/1",
        metavar="K/N",
        help="run only the K-th of N deterministic shares of the runs (for N machines)",
    )
    parser.add_argument(
        "--local",
        metavar="DIR",
        help="run without DVC or git, each run in a folder under DIR (a GPU box, say)",
    )
    parser.add_argument(
        "--remote",
        metavar="GIT_REMOTE",
        help="pull experiments from this git remote (and its DVC remote) first, push ours after",
    )


def parse_share(text: str) -> tuple[int, int]:
    try:
        part, parts = (int(value) for value in text.split("/"))
    except ValueError as error:
        raise SfaeError(f"--share {text}: expected K/N, e.g. 2/3") from error
    if parts < 1:
        raise SfaeError(f"--share {text}: N must be at least 1")
    return part, parts


def collect(arguments, specs: list[Spec], params: dict, records_path, paths, desc, target=None):
    """Pull others' runs (with --remote), run this machine's share of the plan (unless
    --report-only), push ours (with --remote), recording every finished run."""
    if arguments.local and arguments.remote:
        raise SfaeError("--local runs keep no experiments to push or pull: drop --remote")
    if arguments.local:
        experiments = LocalExperiments(paths.root, Path(arguments.local))
    else:
        experiments = DvcExperiments(paths.root)
    if arguments.remote:
        experiments.pull(arguments.remote)
    if arguments.report_only:
        wanted = [wanted_params(params, spec) for spec in specs]
        record_finished(experiments, experiments.runs(), records_path, wanted)
        return
    mine = share(specs, *parse_share(arguments.share))
    outcome = run_plan(
        experiments, mine, params, records_path, jobs=arguments.jobs, target=target, desc=desc
    )
    if arguments.remote:
        experiments.push(arguments.remote)
    return outcome


def mall_gif_inputs(records: list[RunRecord], paths: ProjectPaths):
    """(frames, probabilities) for the side-by-side GIF, or None when some variant's Mall
    predictions or the Mall frames are not in this clone (then the committed GIF stays)."""
    import dvc.api

    from sfae.datasets import MALL, mall_frame_path
    from sfae.image_io import read_rgb

    first_seed = min(record.seed for record in records)
    probabilities = {}
    for record in records:
        if record.seed != first_seed:
            continue
        try:
            data = dvc.api.read(MALL_PROBABILITY, repo=str(paths.root), rev=record.rev, mode="rb")
        except Exception:  # noqa: BLE001  (any miss: no rev, no cache, no file)
            return None
        probabilities[record.variant] = np.load(io.BytesIO(data)).astype(np.float32)
    if len(probabilities) != len(POST_VARIANTS):
        return None
    count = min(len(p) for p in probabilities.values())
    picks = list(range(0, count, max(1, count // 40)))  # ~40 frames keep the GIF a few MB
    try:
        frames = [read_rgb(mall_frame_path(paths.raw / MALL.folder, i + 1)) for i in picks]
    except SfaeError:  # no Mall frames in this clone (`dvc repro download_mall` brings them)
        return None
    return frames, {variant: p[picks] for variant, p in probabilities.items()}


def main() -> None:
    arguments, paths, config, params = campaign_setup(__doc__)
    specs = study_plan(config)
    records_path = paths.run_records
    if arguments.remote or not arguments.report_only:
        collect(arguments, specs, params, records_path, paths, "study")
    records = study_records(read_records(records_path), specs, params)
    if len(records) < len(specs):
        print(f"study: {len(specs) - len(records)} of {len(specs)} runs have no record yet")
    if not records:
        raise SfaeError(f"{records_path}: no study runs recorded; run `make study` first")
    missing = sorted(set(POST_VARIANTS) - {record.variant for record in records})
    if missing and arguments.share != "1/1":
        # Another machine's share holds them: the report waits for `--report-only --remote`.
        print(f"study: no report yet, no run of {', '.join(missing)} is recorded here")
        return
    gif = mall_gif_inputs(records, paths)
    if gif is None:
        print("study: Mall predictions of some variant are not here; the GIF stays as it was")
    for path in write_report(records, params, paths.reports, *(gif or (None, None))):
        print(f"wrote {path}")


if __name__ == "__main__":
    run_stage(main)
