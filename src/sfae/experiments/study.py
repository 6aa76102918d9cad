"""The study: the post's five variants x every study seed, as DVC experiments.

`make study` (`sfae study`) runs the plan through the resumable runner; runs that have a
record in reports/runs.jsonl are skipped (the committed baseline among them).
"""

from __future__ import annotations

from sfae.config import POST_VARIANTS, Config
from sfae.experiments.records import RunRecord
from sfae.experiments.runner import Spec, find_record, fulfils, wanted_params


def study_plan(config: Config) -> list[Spec]:
    return [Spec.of(variant=v, seed=s) for v in POST_VARIANTS for s in config.study.seeds]


def study_records(
    records: list[RunRecord], specs: list[Spec], params: dict, kind: str | None = None
) -> list[RunRecord]:
    """The record of every planned run that has one (of a machine of `kind`), in plan order."""
    found = [find_record(records, wanted_params(params, spec), kind) for spec in specs]
    return [record for record in found if record is not None]


def other_kinds(
    records: list[RunRecord], specs: list[Spec], params: dict, kind: str | None
) -> list[RunRecord]:
    """The records of planned runs that trained on another machine kind than `kind` (what a
    report of `kind` leaves out), in the records' order."""
    if kind is None:
        return []
    wanted = [wanted_params(params, spec) for spec in specs]
    return [
        r for r in records if r.machine_kind != kind and any(fulfils(r.params, w) for w in wanted)
    ]
