"""Every report from the run records (`sfae reports`): the study's (study.md, study.png, the
Mall GIF where this clone has the runs' Mall predictions), each sweep's, the README's blocks."""

from __future__ import annotations

from pathlib import Path

from sfae.config import read_yaml
from sfae.errors import SfaeError
from sfae.experiments.records import RunRecord, read_records
from sfae.experiments.sweep import other_kinds, records_kind, study_plan, study_records, sweeps
from sfae.nn.regularisers.registry import REGULARISERS
from sfae.paths import ProjectPaths
from sfae.plans import load_plans
from sfae.reports.networks import write_sweep_reports
from sfae.reports.study_report import mall_gif_inputs, write_pending_report, write_report


def write_study_report(paths: ProjectPaths) -> list[Path]:
    config, params = load_plans(paths.params, REGULARISERS), read_yaml(paths.params.read_text())
    specs = study_plan(config)
    every = read_records(paths.run_records)
    kind = records_kind(every, "paper")
    records = study_records(every, specs, params, kind)
    if len(records) < len(specs):
        print(f"study: {len(specs) - len(records)} of {len(specs)} runs have no record yet")
    if not records:
        raise SfaeError(f"{paths.run_records}: no study runs recorded; run `make study` first")
    left_out = other_kinds(every, specs, params, kind)
    missing = missing_runs(records, specs)
    absent = [v for v in missing if v not in {record.variant for record in records}]
    if absent:
        print(f"study: no {kind} run of {', '.join(absent)} yet; the report says what is missing")
        return write_pending_report(records, missing, len(specs), kind, paths.reports, left_out)
    gif = mall_gif_inputs(records, paths)
    if gif is None:
        print("study: Mall predictions of some variant are not here; the GIF stays as it was")
    return write_report(records, params, paths.reports, *(gif or (None, None)), left_out)


def missing_runs(records: list[RunRecord], specs: list) -> dict[str, list[int]]:
    """variant -> the seeds of its planned runs that have no record, in plan order."""
    have = {(record.variant, record.seed) for record in records}
    missing: dict[str, list[int]] = {}
    for variant, seed in ((spec.as_dict()["variant"], spec.as_dict()["seed"]) for spec in specs):
        if (variant, seed) not in have:
            missing.setdefault(variant, []).append(seed)
    return missing


def write_all_sweep_reports(paths: ProjectPaths) -> list[Path]:
    config, params = load_plans(paths.params, REGULARISERS), read_yaml(paths.params.read_text())
    records = read_records(paths.run_records)
    # Every sweep's report: the README's blocks put the networks side by side.
    return write_sweep_reports(
        sweeps(config, params, records), records, paths.reports, paths.root / "README.md"
    )


def write_all_reports(paths: ProjectPaths) -> list[Path]:
    return [*write_study_report(paths), *write_all_sweep_reports(paths)]
