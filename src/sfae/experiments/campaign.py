"""A campaign (the study, a sweep) on this machine or on N machines: which share of the
plan runs here, pulling and pushing the others' experiments through a git remote."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sfae.errors import SfaeError
from sfae.experiments.dvc_experiments import DvcExperiments
from sfae.experiments.runner import Spec, record_finished, run_plan, share, wanted_params


@dataclass(frozen=True)
class CampaignOptions:
    """How a campaign runs: --jobs, --report-only, --share K/N and --remote."""

    jobs: int = 1
    report_only: bool = False
    share: str = "1/1"
    remote: str | None = None


def parse_share(text: str) -> tuple[int, int]:
    try:
        part, parts = (int(value) for value in text.split("/"))
    except ValueError as error:
        raise SfaeError(f"--share {text}: expected K/N, e.g. 2/3") from error
    if parts < 1:
        raise SfaeError(f"--share {text}: N must be at least 1")
    return part, parts


def collect(
    options: CampaignOptions,
    specs: list[Spec],
    params: dict,
    records_path: Path,
    root: Path,
    desc: str,
    target: str | None = None,
    kind: str | None = None,
):
    """Pull others' runs (with a remote), run this machine's share of the plan (unless
    report-only), push ours (with a remote), recording every finished run."""
    experiments = DvcExperiments(root)
    if options.remote:
        experiments.pull(options.remote)
    if options.report_only:
        wanted = [wanted_params(params, spec) for spec in specs]
        record_finished(experiments, experiments.runs(), records_path, wanted)
        return None
    mine = share(specs, *parse_share(options.share))
    outcome = run_plan(
        experiments, mine, params, records_path, options.jobs, target, desc=desc, kind=kind
    )
    if options.remote:
        experiments.push(options.remote)
    return outcome
