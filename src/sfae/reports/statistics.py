"""Statistics over run records: scores summarised over seeds, and groups of runs compared
image by image with a reference group through bootstrap intervals of the mean difference.

Groups are named lists of runs (one run per seed): the study's are its variants, but any
grouping works, e.g. the sweep's best sparse setting against its best L1/L2 one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy.stats import bootstrap

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
NOT_DISTINGUISHABLE = "not distinguishable"
# Resamples are drawn in batches of at most this many indices to bound memory.
_BOOTSTRAP_BLOCK = 2_000_000

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


def _check_resampling(resamples: int, level: float) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise SfaeError(f"resamples must be an integer >= 1, got {resamples!r}")
    if not 0.0 < level < 1.0:
        raise SfaeError(f"level must lie strictly between 0 and 1, got {level!r}")


def paired_bootstrap(
    differences: np.ndarray, resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-image differences and its percentile bootstrap
    interval at `level`, resampling the images with replacement `resamples` times."""
    differences = np.asarray(differences, dtype=np.float64)
    if differences.ndim != 1 or differences.size == 0:
        raise SfaeError(f"differences must be a non-empty 1-D array, got shape {differences.shape}")
    if not np.isfinite(differences).all():
        raise SfaeError("differences must be finite")
    _check_resampling(resamples, level)
    mean = float(differences.mean())
    if differences.size == 1:  # scipy needs two; every resample of one image is that image
        return mean, mean, mean
    interval = bootstrap(
        (differences,),
        np.mean,
        n_resamples=resamples,
        batch=max(1, _BOOTSTRAP_BLOCK // differences.size),
        confidence_level=level,
        method="percentile",
        random_state=np.random.default_rng(seed),
    ).confidence_interval
    return mean, float(interval.low), float(interval.high)


def seed_and_image_bootstrap(
    variant_iou: np.ndarray,
    reference_iou: np.ndarray,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """(low, high): a percentile bootstrap interval of the mean per-image IoU difference that
    also resamples the training runs: each resample draws each side's seeds with replacement
    (rows: seeds, columns: the same images) and the images, paired, with replacement.

    The image-only interval treats the seed-averaged IoU as exact; this one also carries
    the seed-to-seed (training) noise, which with few seeds is often the larger part.
    scipy's bootstrap resamples one index per sample, not two nested ones, hence this.
    """
    ours, theirs = np.asarray(variant_iou, float), np.asarray(reference_iou, float)
    if ours.ndim != 2 or theirs.ndim != 2 or ours.shape[1] != theirs.shape[1]:
        raise SfaeError(
            f"need (seeds, images) arrays over the same images, got {ours.shape} and {theirs.shape}"
        )
    _check_resampling(resamples, level)
    generator = np.random.default_rng(seed)
    images = ours.shape[1]
    picked = generator.integers(0, images, (resamples, images))
    # The mean over drawn seeds and drawn images equals the mean over the drawn images of
    # the drawn seeds' mean, so each side is averaged over its seeds first.
    ours = ours[generator.integers(0, len(ours), (resamples, len(ours)))].mean(axis=1)
    theirs = theirs[generator.integers(0, len(theirs), (resamples, len(theirs)))].mean(axis=1)
    means = np.take_along_axis(ours - theirs, picked, axis=1).mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def _shared_images(runs: Sequence[RunRecord]) -> set[str]:
    return set.intersection(*(set(run.per_image_iou) for run in runs))


def _iou_matrix(name: str, runs: Sequence[RunRecord], images: list[str]) -> np.ndarray:
    """Per-image IoU, rows: the runs (seeds), columns: `images`."""
    matrix = np.array([[run.per_image_iou[image] for image in images] for run in runs])
    if not np.isfinite(matrix).all():
        raise SfaeError(f"{name}: a per-image test IoU is not finite")
    return matrix


def _sentence(name: str, comparison: dict) -> str:
    reference = comparison["reference"]
    interval = (
        f"{name} minus {reference} per-image test IoU is {comparison['mean']:+.3f} "
        f"({comparison['level']:.0%} interval {comparison['low']:+.3f} to "
        f"{comparison['high']:+.3f}, {comparison['n_images']} images)"
    )
    if comparison["verdict"] == NOT_DISTINGUISHABLE:
        return f"{interval}: not distinguishable from zero."
    seeds = (
        f"resampling the seeds as well, {comparison['seeds_low']:+.3f} to "
        f"{comparison['seeds_high']:+.3f}"
    )
    holds = (
        f"{seeds}, it holds across training runs"
        if comparison["holds_across_seeds"]
        else f"but {seeds}: with {comparison['n_seeds']} seeds, training noise alone could give it"
    )
    return (
        f"{interval}: distinguishable from zero, {name} is {comparison['verdict']} than "
        f"{reference}; {holds}."
    )


def compare(
    groups: Mapping[str, Sequence[RunRecord]],
    reference: str = "pure",
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict]:
    """For every group but `reference`: its per-image test IoU averaged over its seeds minus
    the reference's, on the images both have, with a paired bootstrap interval of the mean.

    Each value holds reference, mean, low, high, level, n_images, n_seeds, verdict ("better",
    "worse" or "not distinguishable") and a plain sentence saying so; seeds_low and seeds_high
    are the interval that resamples the seeds too, holds_across_seeds whether it excludes zero.
    """
    if reference not in groups:
        raise SfaeError(f"no run of {reference}: every other group is compared with it")
    reference_images = _shared_images(groups[reference])
    comparisons = {}
    for name, runs in groups.items():
        if name == reference:
            continue
        images = sorted(_shared_images(runs) & reference_images)
        if not images:
            raise SfaeError(
                f"{name} and {reference} have no per-image test IoU of a common image name, "
                "so they cannot be compared image by image"
            )
        ours = _iou_matrix(name, runs, images)
        theirs = _iou_matrix(reference, groups[reference], images)
        differences = ours.mean(axis=0) - theirs.mean(axis=0)  # of the seed-averaged IoU
        mean, low, high = paired_bootstrap(differences, resamples, seed, level)
        seeds_low, seeds_high = seed_and_image_bootstrap(ours, theirs, resamples, seed, level)
        verdict = "better" if low > 0 else "worse" if high < 0 else NOT_DISTINGUISHABLE
        comparison = {
            "reference": reference,
            "mean": mean,
            "low": low,
            "high": high,
            "level": level,
            "n_images": len(images),
            "n_seeds": len(runs),
            "verdict": verdict,
            "seeds_low": seeds_low,
            "seeds_high": seeds_high,
            "holds_across_seeds": seeds_low > 0 or seeds_high < 0,
        }
        comparison["sentence"] = _sentence(name, comparison)
        comparisons[name] = comparison
    return comparisons
