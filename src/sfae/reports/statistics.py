"""Scores over seeds, and one Holm family per reference of groups compared image by image."""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sfae.config import POST_VARIANTS
from sfae.errors import SfaeError
from sfae.experiments.records import RunRecord
from sfae.reports.intervals import VERDICTS, HolmComparison, difference_interval, holm

# metric -> (label, which metrics file of a run, dotted keys leading to the value in it)
SUMMARY_METRICS = {
    "test_iou": ("test IoU", "evaluate", "test.pooled.iou"),
    "test_dice": ("test Dice", "evaluate", "test.pooled.dice"),
    "boundary_f1": ("boundary F1", "evaluate", "test.pooled.boundary_f1"),
    "iou_gap": ("IoU gap (train - test)", "evaluate", "gap.iou_pooled"),
    "head_hit_rate": ("Mall head hit rate", "mall", "head_hit_rate"),
    "false_foreground": ("Mall false foreground", "mall", "false_foreground"),
    "count_correlation": ("Mall count correlation", "mall", "count_correlation"),
    "foreground_share": ("Mall foreground share", "mall", "foreground_share"),
}
METRIC_LABELS = {metric: label for metric, (label, _, _) in SUMMARY_METRICS.items()}
Summary = dict[str, dict[str, tuple[float, float, int]]]
ALPHA = 0.05  # the chance of any false verdict in a family
COLLAPSE_IOU = 0.1  # a final run whose pooled test IoU is below this has collapsed


def group_by_variant(
    records: Iterable[RunRecord], variants: Sequence[str] = POST_VARIANTS
) -> dict[str, list[RunRecord]]:
    """Records by variant (`variants` order) and seed; another variant or a seed twice: an error."""
    grouped: dict[str, dict[int, RunRecord]] = {}
    for r in records:
        if r.variant not in variants:
            raise SfaeError(
                f"run {r.name}: unknown variant {r.variant!r}; "
                f"expected one of {', '.join(variants)}"
            )
        if r.seed in grouped.setdefault(r.variant, {}):
            raise SfaeError(f"run {r.name}: a second run of {r.variant} with seed {r.seed}")
        grouped[r.variant][r.seed] = r
    return {v: [grouped[v][seed] for seed in sorted(grouped[v])] for v in variants if v in grouped}


def metric_value(record: RunRecord, metric: str) -> float:
    _, source, keys = SUMMARY_METRICS[metric]
    value = getattr(record, source)
    where = f"run {record.name} ({record.variant}, seed {record.seed}): {source}.json"
    for key in keys.split("."):
        if not isinstance(value, dict) or key not in value:
            raise SfaeError(f"{where} has no {keys}")
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SfaeError(f"{where} {keys} must be a finite number, got {value!r}")
    return float(value)


def summary_table(groups: Mapping[str, Sequence[RunRecord]]) -> Summary:
    """group -> metric -> (mean over seeds, sample std (0.0 for one seed), number of seeds)."""
    table: Summary = {}
    for name, runs in groups.items():
        table[name] = {}
        for metric in SUMMARY_METRICS:
            values = np.array([metric_value(run, metric) for run in runs])
            spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            table[name][metric] = (float(values.mean()), spread, len(values))
    return table


@dataclass(frozen=True)
class Comparison(HolmComparison):
    """One group's mean per-image test IoU minus the reference's, Holm-corrected in its family."""

    reference: str
    kind: str  # the machine kind every run of both sides trained on

    @property
    def mean(self) -> float:
        return self.difference.mean


@dataclass(frozen=True)
class Family:
    """Comparisons with one reference; `pending`: too few runs yet (in `size`, as not rejected)."""

    reference: str
    comparisons: dict[str, Comparison]
    pending: tuple[str, ...]
    collapsed: tuple[RunRecord, ...]  # collapsed runs of any group of the family
    alpha: float
    size: int
    kind: str | None  # its comparisons' machine kind
    by_verdict: dict[str, list[Comparison]]  # verdict -> its comparisons, the empty left out


def one_kind(groups: Mapping[str, Sequence[RunRecord]]) -> str:
    """The machine kind every run of the groups trained on; an error naming two when they mix."""
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


def compare_family(
    groups: Mapping[str, Sequence[RunRecord]], reference: str, alpha: float = ALPHA
) -> Family:
    """Every group but `reference` against it, one Holm family; fewer than two runs: pending."""
    if reference not in groups:
        raise SfaeError(f"no group {reference!r}: every other group is compared with it")
    theirs = groups[reference]
    differences, kinds, pending = {}, {}, []
    for name, runs in ((name, runs) for name, runs in groups.items() if name != reference):
        if min(len(runs), len(theirs)) < 2:
            pending.append(name)
            continue
        kinds[name] = one_kind({name: runs, reference: theirs})
        images = sorted(set.intersection(*(set(run.per_image_iou) for run in [*runs, *theirs])))
        if len(images) < 2:
            raise SfaeError(
                f"{name} and {reference} share {len(images)} per-image test IoU names: "
                "an image-by-image comparison needs two or more"
            )
        # Each side's per-image test IoU, rows: its runs (seeds), columns: `images`.
        iou = [
            np.array([[run.per_image_iou[i] for i in images] for run in side])
            for side in (runs, theirs)
        ]
        seeds = [run.seed for run in runs], [run.seed for run in theirs]
        differences[name] = difference_interval(*iou, *seeds)
    corrected = holm(differences, alpha, family_size=len(groups) - 1) if differences else {}
    comparisons = {
        name: Comparison(**vars(result), reference=reference, kind=kinds[name])
        for name, result in corrected.items()
    }
    fallen = [
        r for runs in groups.values() for r in runs if metric_value(r, "test_iou") < COLLAPSE_IOU
    ]
    verdicts = [(v, [c for c in comparisons.values() if c.verdict == v]) for v in VERDICTS]
    kind = next((c.kind for c in comparisons.values()), None)
    return Family(
        reference=reference,
        comparisons=comparisons,
        pending=tuple(pending),
        collapsed=tuple(fallen),
        alpha=alpha,
        size=len(groups) - 1,
        kind=kind,
        by_verdict={verdict: those for verdict, those in verdicts if those},
    )
