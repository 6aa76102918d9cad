"""The study report: every variant's scores over seeds, paired comparisons with pure, the 2018
blog post's by-eye claims checked against the numbers, a bar chart, a side-by-side Mall GIF,
and reports/study.md tying them together with what the study took to run.

Every number in the report, the claims' verdicts included, is computed here from the runs'
metric files; none is typed by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import yaml
from matplotlib.figure import Figure

from sfae.atomic import staged_outputs
from sfae.errors import SfaeError
from sfae.params import VARIANTS
from sfae.render import colormap_code, overlay

# metric -> (which metrics file of a run, keys leading to the value in it)
SUMMARY_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "test_iou": ("evaluate", ("test", "pooled", "iou")),
    "test_dice": ("evaluate", ("test", "pooled", "dice")),
    "boundary_f1": ("evaluate", ("test", "pooled", "boundary_f1")),
    "iou_gap": ("evaluate", ("gap", "iou_pooled")),
    "head_hit_rate": ("mall", ("head_hit_rate",)),
    "false_foreground": ("mall", ("false_foreground",)),
    "count_correlation": ("mall", ("count_correlation",)),
    "foreground_share": ("mall", ("foreground_share",)),
}
METRIC_LABELS = {
    "test_iou": "test IoU",
    "test_dice": "test Dice",
    "boundary_f1": "boundary F1",
    "iou_gap": "IoU gap (train - test)",
    "head_hit_rate": "Mall head hit rate",
    "false_foreground": "Mall false foreground",
    "count_correlation": "Mall count correlation",
    "foreground_share": "Mall foreground share",
}
METRIC_DEFINITIONS = {
    "test_iou": "TP / (TP + FP + FN) over the pixels of all test images pooled "
    "(foreground = sigmoid output >= evaluate.threshold). Higher is better.",
    "test_dice": "2 TP / (2 TP + FP + FN), pooled like IoU. Higher is better.",
    "boundary_f1": "harmonic mean of boundary precision and recall; a boundary pixel counts "
    "as matched when the other mask's boundary lies within evaluate.boundary_tolerance "
    "pixels; pooled. Higher means outlines in the right place.",
    "iou_gap": "pooled train IoU minus pooled test IoU: how much the network overfits. "
    "Lower is better.",
    "head_hit_rate": "share of the annotated Mall heads inside the region of interest whose "
    "body box is at least half predicted foreground. Higher is better.",
    "false_foreground": "share of the predicted Mall foreground pixels (inside the region of "
    "interest) farther than one person height from every head. Lower is better.",
    "count_correlation": "Pearson r over Mall frames between the perspective-weighted "
    "predicted area and the true head count. Higher is better.",
    "foreground_share": "share of the region-of-interest pixels called foreground, all Mall "
    'frames pooled: how "red" the overlay looks. Neither direction is better by itself.',
}
CHART_METRICS = (
    "test_iou",
    "test_dice",
    "boundary_f1",
    "head_hit_rate",
    "false_foreground",
    "count_correlation",
)
PURE = "pure"
PENALTY_VARIANTS = ("l1", "l2")
SPARSE_VARIANTS = ("sparse_softabs", "sparse_elu")
NOT_DISTINGUISHABLE = "not distinguishable"
# Bootstrap resamples are drawn in blocks of at most this many indices to bound memory.
_BOOTSTRAP_BLOCK = 2_000_000


@dataclass(frozen=True)
class RunRecord:
    """One finished run of the study: a variant trained with one seed, and its results."""

    variant: str
    seed: int
    name: str  # experiment name, or "baseline"
    rev: str  # git commit of the run
    evaluate: dict  # metrics/evaluate.json
    mall: dict  # metrics/mall.json
    train_seconds: float  # pretrain + finetune wall seconds
    per_image_iou: dict[str, float]  # test image name -> IoU


@dataclass(frozen=True)
class StudyContext:
    """What the report says about how the study was run."""

    commit: str
    machine: str
    packages: dict[str, str]
    params: dict  # params.yaml as yaml loads it
    study_seconds: float | None
    failed: list[str]  # names of the runs that failed


def _records_by_variant(records: Iterable[RunRecord]) -> dict[str, list[RunRecord]]:
    """Records grouped by variant, in VARIANTS order; each group sorted by seed."""
    grouped: dict[str, list[RunRecord]] = {}
    seen: set[tuple[str, int]] = set()
    for record in records:
        if record.variant not in VARIANTS:
            raise SfaeError(
                f"run {record.name}: unknown variant {record.variant!r}; "
                f"expected one of {', '.join(VARIANTS)}"
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
        for variant in VARIANTS
        if variant in grouped
    }


def _metric_value(record: RunRecord, metric: str) -> float:
    source, keys = SUMMARY_METRICS[metric]
    value = getattr(record, source)
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise SfaeError(
                f"run {record.name} ({record.variant}, seed {record.seed}): "
                f"{source}.json has no {'.'.join(keys)}"
            )
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SfaeError(
            f"run {record.name} ({record.variant}, seed {record.seed}): "
            f"{source}.json {'.'.join(keys)} must be a finite number, got {value!r}"
        )
    return float(value)


def _mean_std_count(values: Sequence[float]) -> tuple[float, float, int]:
    array = np.asarray(values, dtype=np.float64)
    spread = float(np.std(array, ddof=1)) if len(array) > 1 else 0.0
    return float(np.mean(array)), spread, len(array)


def summary_table(records: Iterable[RunRecord]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """variant -> metric -> (mean over seeds, sample std (0.0 for one seed), number of seeds),
    for every metric of SUMMARY_METRICS; variants in VARIANTS order."""
    return {
        variant: {
            metric: _mean_std_count([_metric_value(run, metric) for run in runs])
            for metric in SUMMARY_METRICS
        }
        for variant, runs in _records_by_variant(records).items()
    }


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
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise SfaeError(f"resamples must be an integer >= 1, got {resamples!r}")
    if not 0.0 < level < 1.0:
        raise SfaeError(f"level must lie strictly between 0 and 1, got {level!r}")
    generator = np.random.default_rng(seed)
    count = differences.size
    block = max(1, _BOOTSTRAP_BLOCK // count)
    resampled_means = np.empty(resamples)
    for start in range(0, resamples, block):
        rows = min(block, resamples - start)
        picks = generator.integers(0, count, size=(rows, count))
        resampled_means[start : start + rows] = differences[picks].mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(resampled_means, [tail, 100.0 - tail])
    return float(differences.mean()), float(low), float(high)


def seed_and_image_bootstrap(
    variant_iou: np.ndarray,
    pure_iou: np.ndarray,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """(low, high): a percentile bootstrap interval of the mean per-image IoU difference that
    also resamples the training runs: each resample draws each side's seeds with replacement
    (rows: seeds, columns: the same images) and the images, paired, with replacement.

    The image-only interval treats the seed-averaged IoU as exact; this one also carries
    the seed-to-seed (training) noise, which with few seeds is often the larger part.
    """
    variant_iou, pure_iou = np.asarray(variant_iou, float), np.asarray(pure_iou, float)
    if variant_iou.ndim != 2 or pure_iou.ndim != 2 or variant_iou.shape[1] != pure_iou.shape[1]:
        raise SfaeError(
            f"need (seeds, images) arrays over the same images, got {variant_iou.shape} "
            f"and {pure_iou.shape}"
        )
    generator = np.random.default_rng(seed)
    images = variant_iou.shape[1]
    means = np.empty(resamples)
    for index in range(resamples):
        picked = generator.integers(0, images, images)
        ours = variant_iou[generator.integers(0, len(variant_iou), len(variant_iou))]
        theirs = pure_iou[generator.integers(0, len(pure_iou), len(pure_iou))]
        means[index] = ours[:, picked].mean() - theirs[:, picked].mean()
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def _iou_matrix(runs: list[RunRecord], images: list[str]) -> np.ndarray:
    return np.array([[run.per_image_iou[image] for image in images] for run in runs])


def _seed_averaged_iou(runs: list[RunRecord]) -> dict[str, float]:
    """Per-image IoU averaged over the runs, on the images every run has."""
    shared = set.intersection(*(set(run.per_image_iou) for run in runs))
    averaged = {}
    for image in sorted(shared):
        values = [run.per_image_iou[image] for run in runs]
        if not all(math.isfinite(value) for value in values):
            raise SfaeError(f"{runs[0].variant}: per-image IoU of {image} is not finite")
        averaged[image] = float(np.mean(values))
    return averaged


def _difference_sentence(variant: str, comparison: dict) -> str:
    interval = (
        f"{comparison['mean']:+.3f} ({comparison['level']:.0%} interval "
        f"{comparison['low']:+.3f} to {comparison['high']:+.3f}, "
        f"{comparison['n_images']} images)"
    )
    if comparison["verdict"] == NOT_DISTINGUISHABLE:
        return (
            f"{variant} minus pure per-image test IoU is {interval}: not distinguishable from zero."
        )
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
        f"{variant} minus pure per-image test IoU is {interval}: distinguishable from zero, "
        f"{variant} is {comparison['verdict']} than pure; {holds}."
    )


def compare_to_pure(
    records: Iterable[RunRecord], resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> dict[str, dict]:
    """For every variant but pure: its per-image test IoU averaged over its seeds minus pure's,
    on the images both have, with a paired bootstrap interval of the mean difference.

    Each value holds mean, low, high, level, n_images, n_seeds, verdict ("better", "worse" or
    "not distinguishable") and a plain sentence saying so; seeds_low and seeds_high are the
    interval that resamples the seeds too, holds_across_seeds whether it excludes zero.
    """
    by_variant = _records_by_variant(records)
    if PURE not in by_variant:
        raise SfaeError("no run of pure: every variant is compared with it")
    pure_iou = _seed_averaged_iou(by_variant[PURE])
    comparisons = {}
    for variant, runs in by_variant.items():
        if variant == PURE:
            continue
        variant_iou = _seed_averaged_iou(runs)
        images = sorted(set(variant_iou) & set(pure_iou))
        if not images:
            raise SfaeError(
                f"{variant} and pure have no per-image test IoU of a common image name, "
                "so they cannot be compared image by image"
            )
        differences = np.array([variant_iou[image] - pure_iou[image] for image in images])
        mean, low, high = paired_bootstrap(differences, resamples, seed, level)
        seeds_low, seeds_high = seed_and_image_bootstrap(
            _iou_matrix(runs, images), _iou_matrix(by_variant[PURE], images), resamples, seed, level
        )
        if low > 0:
            verdict = "better"
        elif high < 0:
            verdict = "worse"
        else:
            verdict = NOT_DISTINGUISHABLE
        comparison = {
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
        comparison["sentence"] = _difference_sentence(variant, comparison)
        comparisons[variant] = comparison
    return comparisons


def _mean(table: dict, variant: str, metric: str) -> float:
    return table[variant][metric][0]


def _value(table: dict, variant: str, metric: str) -> str:
    mean, spread, _ = table[variant][metric]
    return f"{variant} {mean:.3f} ± {spread:.3f}"


def _ranked(table: dict, metric: str) -> str:
    """'a 0.700 ± 0.010 > b 0.600 ± 0.020 > ...': every variant, highest mean first."""
    order = sorted(table, key=lambda variant: -_mean(table, variant, metric))
    text = _value(table, order[0], metric)
    for previous, variant in zip(order[:-1], order[1:], strict=True):
        tied = _mean(table, previous, metric) == _mean(table, variant, metric)
        text += f" {'=' if tied else '>'} {_value(table, variant, metric)}"
    return f"{METRIC_LABELS[metric]}, highest first: {text}"


def _above(table: dict, variant: str, others: Sequence[str], metric: str) -> list[str]:
    """The variants of `others` whose mean `variant` strictly exceeds."""
    return [
        other for other in others if _mean(table, variant, metric) > _mean(table, other, metric)
    ]


def _verdict(passed: int, total: int) -> str:
    if passed == total:
        return "agrees"
    return "disagrees" if passed == 0 else "mixed"


def _highest(table: dict, metric: str) -> str:
    return max(table, key=lambda variant: _mean(table, variant, metric))


def _claim_pure_marks_everything(table: dict) -> dict:
    tested = ("foreground_share", "false_foreground")
    highest = [metric for metric in tested if _highest(table, metric) == PURE]
    return {
        "claim": "pure AE marks nearly everything on Mall as pedestrian. Tested: pure has the "
        "highest Mall foreground share and the highest false-foreground share of all variants.",
        "verdict": _verdict(len(highest), len(tested)),
        "evidence": "; ".join(_ranked(table, metric) for metric in tested) + ".",
    }


def _claim_l1_redder(table: dict) -> dict:
    # Pure is the extreme of the claim above; "redder" is judged against the other
    # regularised networks, which the blog showed beside it.
    others = ("l2", *SPARSE_VARIANTS)
    beaten = _above(table, "l1", others, "foreground_share")
    return {
        "claim": "L1's Mall overlay is \"redder\" (too much foreground). Tested: l1's Mall "
        f"foreground share is above that of {_join(others)}, the other regularised variants.",
        "verdict": _verdict(len(beaten), len(others)),
        "evidence": f"l1 is above {len(beaten)} of {len(others)}. "
        + _ranked(table, "foreground_share")
        + ".",
    }


def _claim_l2_sharper_than_l1(table: dict) -> dict:
    difference = _mean(table, "l2", "boundary_f1") - _mean(table, "l1", "boundary_f1")
    return {
        "claim": "L2 is like L1 with sharper borders. Tested: l2's boundary F1 is above l1's.",
        "verdict": "agrees" if difference > 0 else "disagrees",
        "evidence": f"boundary F1: {_value(table, 'l2', 'boundary_f1')} vs "
        f"{_value(table, 'l1', 'boundary_f1')} (difference {difference:+.3f}).",
    }


def _claim_softabs_clearest(table: dict) -> dict:
    others = (PURE, *PENALTY_VARIANTS)
    beaten = _above(table, "sparse_softabs", others, "boundary_f1")
    return {
        "claim": "sparse + soft-absolute has the clearest decision boundary. Tested: "
        f"sparse_softabs's boundary F1 is above that of the non-sparse variants {_join(others)}.",
        "verdict": _verdict(len(beaten), len(others)),
        "evidence": f"sparse_softabs is above {len(beaten)} of {len(others)}. "
        + _ranked(table, "boundary_f1")
        + ".",
    }


def _claim_elu_sharpest(table: dict) -> dict:
    non_sparse = (PURE, *PENALTY_VARIANTS)
    highest = _highest(table, "boundary_f1") == "sparse_elu"
    above_non_sparse = len(_above(table, "sparse_elu", non_sparse, "boundary_f1")) == len(
        non_sparse
    )
    if highest:
        verdict, summary = "agrees", "sparse_elu has the highest boundary F1"
    elif above_non_sparse:
        verdict = "mixed"
        summary = "sparse_elu beats every non-sparse variant but not sparse_softabs"
    else:
        verdict, summary = "disagrees", "sparse_elu is below a non-sparse variant"
    return {
        "claim": "sparse + ELU has the sharpest, most confident outlines. Tested: sparse_elu has "
        "the highest boundary F1 of all variants (mixed if it beats only the non-sparse ones).",
        "verdict": verdict,
        "evidence": f"{summary}. " + _ranked(table, "boundary_f1") + ".",
    }


def _claim_sparse_regularises_better(table: dict, comparisons: dict) -> dict:
    best_sparse = max(SPARSE_VARIANTS, key=lambda variant: _mean(table, variant, "test_iou"))
    best_penalty = max(PENALTY_VARIANTS, key=lambda variant: _mean(table, variant, "test_iou"))
    higher_iou = _mean(table, best_sparse, "test_iou") > _mean(table, best_penalty, "test_iou")
    smaller_gap = _mean(table, best_sparse, "iou_gap") < _mean(table, best_penalty, "iou_gap")
    sparse_beats_pure = comparisons[best_sparse]["verdict"] == "better"
    favours_sparse = higher_iou + smaller_gap
    if favours_sparse == 2:
        verdict = "agrees" if sparse_beats_pure else "mixed"
    else:
        verdict = _verdict(favours_sparse, 2)
    evidence = (
        f"best sparse variant by mean test IoU: {_value(table, best_sparse, 'test_iou')} "
        f"(IoU gap {_mean(table, best_sparse, 'iou_gap'):.3f}); best of L1/L2: "
        f"{_value(table, best_penalty, 'test_iou')} "
        f"(IoU gap {_mean(table, best_penalty, 'iou_gap'):.3f}). "
        f"The sparse variant has {'the higher' if higher_iou else 'no higher'} test IoU and "
        f"{'the smaller' if smaller_gap else 'no smaller'} gap. Against pure: "
        f"{comparisons[best_sparse]['sentence']} {comparisons[best_penalty]['sentence']}"
    )
    return {
        "claim": "The question: sparse filtering regularises better than L1/L2. Tested: the best "
        "sparse variant has a higher mean test IoU and a smaller train-test IoU gap than the "
        "best of l1/l2, and its per-image IoU gain over pure is distinguishable from zero "
        "(mixed when the means favour it but that gain is not distinguishable).",
        "verdict": verdict,
        "evidence": evidence,
    }


def claims(table: dict, comparisons: dict) -> list[dict]:
    """The blog post's by-eye claims checked against the numbers, in this order: (1) pure marks
    nearly everything on Mall, (2) L1 is "redder", (3) L2 has sharper borders than L1,
    (4) sparse softabs has the clearest boundary, (5) sparse ELU the sharpest outlines,
    (6) sparse filtering regularises better than L1/L2. Each is {"claim", "verdict": "agrees" /
    "disagrees" / "mixed", "evidence"}; verdicts compare means over seeds."""
    missing = [variant for variant in VARIANTS if variant not in table]
    if missing:
        raise SfaeError(f"the claims need every variant; the table lacks {', '.join(missing)}")
    uncompared = [variant for variant in VARIANTS[1:] if variant not in comparisons]
    if uncompared:
        raise SfaeError(f"the claims need comparisons with pure of {', '.join(uncompared)}")
    return [
        _claim_pure_marks_everything(table),
        _claim_l1_redder(table),
        _claim_l2_sharper_than_l1(table),
        _claim_softabs_clearest(table),
        _claim_elu_sharpest(table),
        _claim_sparse_regularises_better(table, comparisons),
    ]


def write_chart(table: dict, path: Path) -> None:
    """Bar chart: one group per chart metric, one bar per variant (mean, std error bars);
    a 1200 x 600 PNG."""
    # A bare Figure needs no pyplot, so no global backend or figure registry is touched.
    figure = Figure(figsize=(12, 6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    variants = list(table)
    positions = np.arange(len(CHART_METRICS))
    bar_width = 0.8 / max(1, len(variants))
    for index, variant in enumerate(variants):
        means = [table[variant][metric][0] for metric in CHART_METRICS]
        spreads = [table[variant][metric][1] for metric in CHART_METRICS]
        offsets = positions + (index - (len(variants) - 1) / 2) * bar_width
        axes.bar(
            offsets, means, bar_width, yerr=spreads, capsize=3, label=variant, color=f"C{index}"
        )
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xticks(positions, [METRIC_LABELS[metric] for metric in CHART_METRICS], fontsize=11)
    axes.set_ylabel("mean over seeds (error bars: sample std)", fontsize=11)
    seeds = sorted({table[variant]["test_iou"][2] for variant in variants})
    axes.set_title(
        f"Variants compared ({'/'.join(str(count) for count in seeds)} seeds each); "
        "lower false foreground is better, higher is better elsewhere",
        fontsize=12,
    )
    axes.legend(ncols=len(variants), loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=11)
    axes.grid(axis="y", alpha=0.3)
    figure.savefig(path, format="png")


def _panel(overlaid: np.ndarray, width: int, label: str) -> np.ndarray:
    """The overlay scaled to `width` (keeping its aspect) with `label` written top left."""
    height = max(1, round(overlaid.shape[0] * width / overlaid.shape[1]))
    # INTER_AREA avoids aliasing when shrinking; shrinking is the usual case here.
    panel = cv2.resize(overlaid, (width, height), interpolation=cv2.INTER_AREA)
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    scale = max(0.3, 0.55 * width / 240)
    text_width = cv2.getTextSize(label, font, scale, thickness)[0][0]
    if text_width > width - 8:
        scale *= (width - 8) / text_width
    (text_width, text_height), baseline = cv2.getTextSize(label, font, scale, thickness)
    # White on a black box stays legible on any colour, and survives the GIF's palette.
    cv2.rectangle(panel, (0, 0), (text_width + 6, text_height + baseline + 6), (0, 0, 0), -1)
    cv2.putText(
        panel, label, (3, text_height + 3), font, scale, (255, 255, 255), thickness, cv2.LINE_AA
    )
    return panel


def write_variants_gif(
    frames_rgb: list[np.ndarray],
    probabilities: dict[str, np.ndarray],
    path: Path,
    width_per_panel: int = 192,
    fps: float = 10,
    alpha: float = 0.45,
    colormap: str = "jet",
) -> None:
    """A looping GIF: each frame shows the five variants' overlays of the same Mall frame side
    by side in VARIANTS order, each scaled to `width_per_panel` and labelled with its name."""
    if not frames_rgb:
        raise SfaeError(f"{path}: no frames to put in the GIF")
    missing = [variant for variant in VARIANTS if variant not in probabilities]
    if missing:
        raise SfaeError(f"{path}: no Mall probabilities of {', '.join(missing)}")
    for variant in VARIANTS:
        maps = probabilities[variant]
        if maps.ndim != 3 or len(maps) != len(frames_rgb):
            raise SfaeError(
                f"{path}: {variant}'s probabilities have shape {maps.shape}; expected "
                f"({len(frames_rgb)}, height, width), one map per frame"
            )
    if isinstance(width_per_panel, bool) or not isinstance(width_per_panel, int):
        raise SfaeError(f"width_per_panel must be an integer, got {width_per_panel!r}")
    if width_per_panel < 8:
        raise SfaeError(f"width_per_panel must be at least 8 pixels, got {width_per_panel}")
    if not fps > 0:
        raise SfaeError(f"fps must be > 0, got {fps!r}")
    if any(frame.shape != frames_rgb[0].shape for frame in frames_rgb):
        raise SfaeError(f"{path}: the frames differ in size; a GIF has one size")
    code = colormap_code(colormap)
    gif_frames = []
    for index, frame in enumerate(frames_rgb):
        panels = [
            _panel(
                overlay(frame, probabilities[variant][index], alpha, code), width_per_panel, variant
            )
            for variant in VARIANTS
        ]
        gif_frames.append(np.concatenate(panels, axis=1))
    iio.imwrite(
        path,
        np.stack(gif_frames),
        plugin="pillow",
        extension=".gif",
        duration=1000.0 / fps,
        loop=0,
    )


def _join(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _counted(counts: set, things: str) -> str:
    """'the 85 things' when every run saw the same number of them, else 'the things'."""
    if len(counts) == 1 and isinstance(count := next(iter(counts)), int):
        return f"the {count} {things}"
    return f"the {things}"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(str(cell)) for cell in row) + " |" for row in rows]
    return lines


def _time_unit(seconds: float) -> tuple[float, str, int]:
    """(seconds per unit, unit name, decimals) that reads best for a duration this long."""
    if seconds < 120:
        return 1.0, "s", 0
    if seconds < 7200:
        return 60.0, "min", 1
    return 3600.0, "h", 2


def _duration(seconds: float, unit: tuple[float, str, int] | None = None) -> str:
    size, name, decimals = unit or _time_unit(seconds)
    return f"{seconds / size:.{decimals}f} {name}"


def headline(table: dict, comparisons: dict) -> str:
    """One sentence: the best variant by mean test IoU, and which variants differ from pure."""
    best = max(table, key=lambda variant: _mean(table, variant, "test_iou"))
    mean, spread, seeds = table[best]["test_iou"]
    best_part = f"{best} has the best mean test IoU ({mean:.3f} ± {spread:.3f} over {seeds} seeds)"
    differing = {
        variant: comparison["verdict"]
        for variant, comparison in comparisons.items()
        if comparison["verdict"] != NOT_DISTINGUISHABLE
    }
    if not comparisons:
        return f"{best_part}."
    level = next(iter(comparisons.values()))["level"]
    if not differing:
        return (
            f"{best_part}, and no variant's per-image test IoU differs distinguishably from "
            f"pure's ({level:.0%} paired bootstrap intervals)."
        )
    named = _join(
        [
            f"{variant} ({verdict}"
            + ("" if comparisons[variant]["holds_across_seeds"] else "; not across seeds")
            + ")"
            for variant, verdict in differing.items()
        ]
    )
    verb = "differs" if len(differing) == 1 else "differ"
    return (
        f"{best_part}; {named} {verb} distinguishably from pure in per-image test IoU "
        f"({level:.0%} paired bootstrap intervals)."
    )


def _results_section(table: dict) -> list[str]:
    metrics = list(SUMMARY_METRICS)
    rows = []
    for variant, scores in table.items():
        cells = [f"{scores[metric][0]:.3f} ± {scores[metric][1]:.3f}" for metric in metrics]
        rows.append([f"`{variant}`", str(scores["test_iou"][2]), *cells])
    return [
        "## Results per variant",
        "",
        "Mean ± sample standard deviation over the seeds (± 0.000 when there is one seed).",
        "",
        *_markdown_table(["variant", "n seeds", *(METRIC_LABELS[m] for m in metrics)], rows),
    ]


def _comparison_section(comparisons: dict) -> list[str]:
    if not comparisons:
        return []
    level = next(iter(comparisons.values()))["level"]
    rows = [
        [
            f"`{variant}`",
            f"{comparison['mean']:+.3f}",
            f"{comparison['low']:+.3f} to {comparison['high']:+.3f}",
            f"{comparison['seeds_low']:+.3f} to {comparison['seeds_high']:+.3f}",
            str(comparison["n_images"]),
            comparison["sentence"],
        ]
        for variant, comparison in comparisons.items()
    ]
    return [
        "## Compared with pure, image by image",
        "",
        "Each variant's per-image test IoU, averaged over its seeds, minus pure's on the same "
        f"image; the interval is a {level:.0%} percentile bootstrap of the mean difference, "
        "resampling the test images with replacement. It takes the seed-averaged IoU as exact; "
        "the second interval resamples each variant's seeds too, so it also carries the "
        "run-to-run (training) noise. A difference that only the first excludes from zero "
        "may not survive other seeds.",
        "",
        *_markdown_table(
            [
                "variant",
                "mean difference",
                f"{level:.0%} interval (images)",
                f"{level:.0%} interval (seeds and images)",
                "images",
                "reading",
            ],
            rows,
        ),
    ]


def _claims_section(checked: list[dict]) -> list[str]:
    rows = [[item["claim"], f"**{item['verdict']}**", item["evidence"]] for item in checked]
    return [
        "## The 2018 blog post's claims, checked",
        "",
        "The original post judged the networks by eye only. Verdicts compare means over seeds;",
        "the ± values show how far the seeds move them.",
        "",
        *_markdown_table(["claim and test", "verdict", "evidence"], rows),
    ]


def _metrics_section() -> list[str]:
    return [
        "## Metrics",
        "",
        *(f"- **{METRIC_LABELS[metric]}**: {text}" for metric, text in METRIC_DEFINITIONS.items()),
        "",
        "Full definitions: [README, Metrics](../README.md#metrics).",
    ]


def _cost_section(records: list[RunRecord], context: StudyContext) -> list[str]:
    by_variant = _records_by_variant(records)
    seeds = sorted({record.seed for record in records})
    # One unit for every single-run cell, so the cells compare at a glance.
    unit = _time_unit(max(record.train_seconds for record in records))
    rows = []
    for variant, runs in by_variant.items():
        seconds_by_seed = {run.seed: run.train_seconds for run in runs}
        cells = [
            _duration(seconds_by_seed[seed], unit) if seed in seconds_by_seed else "no run"
            for seed in seeds
        ]
        rows.append([f"`{variant}`", *cells, _duration(sum(seconds_by_seed.values()))])
    total = sum(record.train_seconds for record in records)
    lines = [
        "## What it took",
        "",
        "Training wall time per run (sparse pretraining plus fine-tuning):",
        "",
        *_markdown_table(["variant", *(f"seed {seed}" for seed in seeds), "all seeds"], rows),
        "",
        f"- Training time of all {len(records)} runs: {_duration(total)}.",
    ]
    if context.study_seconds is not None:
        lines.append(f"- Wall time of the whole study: {_duration(context.study_seconds)}.")
    lines += [
        f"- Machine: {context.machine}.",
        f"- Experiments derive from git commit `{context.commit}`.",
    ]
    if context.failed:
        lines.append(f"- Failed runs ({len(context.failed)}), left out of every number above:")
        lines += [f"  - `{name}`" for name in context.failed]
    else:
        lines.append("- Failed runs: none.")
    run_rows = [
        [f"`{record.variant}`", str(record.seed), f"`{record.name}`", f"`{record.rev}`"]
        for variant_runs in by_variant.values()
        for record in variant_runs
    ]
    package_rows = [[f"`{name}`", version] for name, version in context.packages.items()]
    return [
        *lines,
        "",
        "Runs:",
        "",
        *_markdown_table(["variant", "seed", "experiment", "commit"], run_rows),
        "",
        "Package versions:",
        "",
        *_markdown_table(["package", "version"], package_rows),
        "",
        "Parameters (`params.yaml`; each run overrides `variant` and `seed`):",
        "",
        "```yaml",
        yaml.safe_dump(context.params, sort_keys=False).rstrip(),
        "```",
    ]


def render_markdown(
    records: Iterable[RunRecord],
    context: StudyContext,
    table: dict,
    comparisons: dict,
    claims: list[dict],
    chart_name: str = "study.png",
    gif_name: str | None = "mall_variants.gif",
) -> str:
    """reports/study.md. `gif_name` None leaves the Mall GIF out (and says so)."""
    records = list(records)
    seeds = sorted({record.seed for record in records})
    test_images = {len(record.per_image_iou) for record in records}
    mall_frames = {record.mall.get("frames") for record in records}
    gif_lines = (
        [
            f"![Mall frames, each variant's predicted foreground side by side ({_join(VARIANTS)})]"
            f"({gif_name})"
        ]
        if gif_name
        else ["No side-by-side Mall GIF: the Mall predictions of some variant were not available."]
    )
    lines = [
        "# Sparse filtering vs L1/L2 on a tiny segmentation auto-encoder: the study",
        "",
        headline(table, comparisons),
        "",
        f"{len(table)} variants ({_join(list(table))}), trained with the seeds "
        f"{_join([str(seed) for seed in seeds])}: {len(records)} runs, each scored on "
        f"{_counted(test_images, 'Penn-Fudan test images')} and "
        f"{_counted(mall_frames, 'CUHK Mall frames')}.",
        "",
        *_results_section(table),
        "",
        *_comparison_section(comparisons),
        "",
        f"![Per-variant scores, mean over seeds with std error bars]({chart_name})",
        "",
        *gif_lines,
        "",
        *_claims_section(claims),
        "",
        *_metrics_section(),
        "",
        *_cost_section(records, context),
    ]
    return "\n".join(lines) + "\n"


def _gif_settings(context: StudyContext) -> dict:
    """fps, alpha and colour map of params.yaml's render section, where it gives them, so the
    side-by-side GIF looks like each run's own overlay video."""
    render = context.params.get("render") if isinstance(context.params, dict) else None
    if not isinstance(render, dict):
        return {}
    return {key: render[key] for key in ("fps", "alpha", "colormap") if key in render}


def write_report(
    records: Iterable[RunRecord],
    context: StudyContext,
    out_dir: Path,
    frames_rgb: list[np.ndarray] | None = None,
    probabilities: dict[str, np.ndarray] | None = None,
) -> list[Path]:
    """Write study.md, study.png and, given frames and probabilities, mall_variants.gif into
    out_dir; return their paths. Each file appears whole or not at all."""
    records = list(records)
    if not records:
        raise SfaeError("no run records: nothing to report on")
    present = {record.variant for record in records}
    missing = [variant for variant in VARIANTS if variant not in present]
    if missing:
        raise SfaeError(
            f"no finished run of {', '.join(missing)}: the report compares all "
            f"{len(VARIANTS)} variants"
        )
    if (frames_rgb is None) != (probabilities is None):
        raise SfaeError("the Mall GIF needs both frames_rgb and probabilities, or neither")
    table = summary_table(records)
    comparisons = compare_to_pure(records)
    checked = claims(table, comparisons)
    out_dir = Path(out_dir)
    markdown_path, chart_path = out_dir / "study.md", out_dir / "study.png"
    gif_path = out_dir / "mall_variants.gif" if frames_rgb is not None else None
    targets = [markdown_path, chart_path] + ([gif_path] if gif_path else [])
    with staged_outputs(*targets) as staged:
        markdown_text = render_markdown(
            records,
            context,
            table,
            comparisons,
            checked,
            chart_name=chart_path.name,
            gif_name=gif_path.name if gif_path else None,
        )
        staged[0].write_text(markdown_text)
        write_chart(table, staged[1])
        if gif_path:
            write_variants_gif(frames_rgb, probabilities, staged[2], **_gif_settings(context))
    return targets
