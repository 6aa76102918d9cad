"""Verdicts: groups of runs compared with a reference group, image by image, one Holm family
at a time (sfae.reports.intervals does the statistics).

A family is the set of comparisons that share one reference and one question (a sweep's rows
against pure, the study's variants against pure, the tuned sparse variant against the tuned
L1/L2 one). Every run of a comparison trained on one machine kind: mixing kinds is refused.
Collapsed runs (test IoU below COLLAPSE_IOU) are not dropped: a seed that collapses is an
outcome of that variant, and the interval carries it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sfae.errors import SfaeError
from sfae.experiments.records import RunRecord
from sfae.reports.intervals import (
    BETTER,
    NOT_DISTINGUISHABLE,
    WORSE,
    Difference,
    HolmComparison,
    difference_interval,
    holm,
)
from sfae.reports.statistics import metric_value

ALPHA = 0.05  # the chance of any false verdict in a family
COLLAPSE_IOU = 0.1  # a final run whose pooled test IoU is below this has collapsed
VERDICTS = (BETTER, WORSE, NOT_DISTINGUISHABLE)


@dataclass(frozen=True)
class Comparison:
    """One group's mean per-image test IoU minus the reference's, Holm-corrected in its family."""

    name: str
    reference: str
    kind: str  # the machine kind every run of both sides trained on
    holm: HolmComparison

    @property
    def verdict(self) -> str:
        return self.holm.verdict

    @property
    def difference(self) -> Difference:
        return self.holm.uncorrected

    @property
    def mean(self) -> float:
        return self.difference.mean


@dataclass(frozen=True)
class Family:
    """Comparisons with one reference; `pending`: planned ones with too few runs yet (they
    count in the family's size, as not rejected)."""

    reference: str
    comparisons: dict[str, Comparison]
    pending: tuple[str, ...]
    collapsed: tuple[RunRecord, ...]  # collapsed runs of any group of the family
    alpha: float = ALPHA

    @property
    def size(self) -> int:
        return len(self.comparisons) + len(self.pending)

    @property
    def kind(self) -> str | None:
        return next((c.kind for c in self.comparisons.values()), None)

    def with_verdict(self, verdict: str) -> list[Comparison]:
        return [c for c in self.comparisons.values() if c.verdict == verdict]


def one_kind(groups: Mapping[str, Sequence[RunRecord]]) -> str:
    """The machine kind every run of the groups trained on; SfaeError, naming both kinds and
    a run of each, when they mix."""
    first: dict[str, tuple[str, RunRecord]] = {}
    for name, runs in groups.items():
        for run in runs:
            first.setdefault(run.machine_kind, (name, run))
    if len(first) > 1:
        (kind_a, (name_a, run_a)), (kind_b, (name_b, run_b)) = sorted(first.items())[:2]
        raise SfaeError(
            f"{' vs '.join(groups)}: runs of two machine kinds, {kind_a} ({name_a} run "
            f"{run_a.name}) and {kind_b} ({name_b} run {run_b.name}); a comparison reads one kind"
        )
    return next(iter(first), "unknown")


def difference(
    name: str, runs: Sequence[RunRecord], reference: str, theirs: Sequence[RunRecord]
) -> Difference:
    """The uncorrected interval of one group against the reference, on the images all their
    runs have, paired by seed where the seeds allow (sfae.reports.intervals)."""
    images = sorted(set.intersection(*(set(run.per_image_iou) for run in [*runs, *theirs])))
    if len(images) < 2:
        raise SfaeError(
            f"{name} and {reference} share {len(images)} per-image test IoU names: "
            "an image-by-image comparison needs two or more"
        )
    # Per-image test IoU, rows: the runs (seeds), columns: `images`.
    ours, reference_iou = (
        np.array([[run.per_image_iou[image] for image in images] for run in side])
        for side in (runs, theirs)
    )
    seeds = [run.seed for run in runs], [run.seed for run in theirs]
    return difference_interval(ours, reference_iou, *seeds)


def compare_family(
    groups: Mapping[str, Sequence[RunRecord]], reference: str, alpha: float = ALPHA
) -> Family:
    """Every group but `reference` against it, one Holm family: a group (or a reference)
    with fewer than two runs is pending. Groups in the given order."""
    if reference not in groups:
        raise SfaeError(f"no group {reference!r}: every other group is compared with it")
    theirs = groups[reference]
    differences, kinds, pending = {}, {}, []
    for name, runs in groups.items():
        if name == reference:
            continue
        if min(len(runs), len(theirs)) < 2:
            pending.append(name)
            continue
        kinds[name] = one_kind({name: runs, reference: theirs})
        differences[name] = difference(name, runs, reference, theirs)
    corrected = holm(differences, alpha, family_size=len(groups) - 1) if differences else {}
    comparisons = {
        name: Comparison(name, reference, kinds[name], result) for name, result in corrected.items()
    }
    fallen = [
        r for runs in groups.values() for r in runs if metric_value(r, "test_iou") < COLLAPSE_IOU
    ]
    return Family(reference, comparisons, tuple(pending), tuple(fallen), alpha)
