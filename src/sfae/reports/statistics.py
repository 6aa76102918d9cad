"""Statistics over run records: scores summarised over seeds.

Groups are named lists of runs (one run per seed): the study's are its variants, but any
grouping works, e.g. the sweep's rows. How groups are compared (intervals and verdicts):
sfae.reports.comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from sfae.config import POST_VARIANTS
from sfae.errors import SfaeError
from sfae.experiments.records import RunRecord

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


def group_by_variant(
    records: Iterable[RunRecord], variants: Sequence[str] = POST_VARIANTS
) -> dict[str, list[RunRecord]]:
    """Records grouped by variant, in `variants` order, each group sorted by seed; a record
    of another variant, or a second record of a variant and seed, is an error."""
    grouped: dict[str, list[RunRecord]] = {}
    seen: set[tuple[str, int]] = set()
    for record in records:
        if record.variant not in variants:
            raise SfaeError(
                f"run {record.name}: unknown variant {record.variant!r}; "
                f"expected one of {', '.join(variants)}"
            )
        # Two records of one variant and seed would count that seed twice in every mean.
        if (record.variant, record.seed) in seen:
            raise SfaeError(
                f"run {record.name}: a second run of {record.variant} with seed {record.seed}"
            )
        seen.add((record.variant, record.seed))
        grouped.setdefault(record.variant, []).append(record)
    return {
        variant: sorted(grouped[variant], key=lambda record: record.seed)
        for variant in variants
        if variant in grouped
    }


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
    """group -> metric -> (mean over seeds, sample std (0.0 for one seed), number of seeds),
    for every metric of SUMMARY_METRICS; groups in the given order."""
    table: Summary = {}
    for name, runs in groups.items():
        table[name] = {}
        for metric in SUMMARY_METRICS:
            values = np.array([metric_value(run, metric) for run in runs])
            spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            table[name][metric] = (float(values.mean()), spread, len(values))
    return table
