"""Coverage of nominal 95% intervals of a mean per-image IoU difference, new method and old.

    python bench/interval_coverage.py [--replicates 2000] [--resamples 2000]

Simulates runs of two variants with a known true difference (simulate_runs below,
with STUDY_NOISE; new images every replicate) at 3, 5 and 10 seeds and counts how often each
method's interval holds the truth: the new t interval (difference_interval) paired by seed and,
on runs with independent seeds, Welch; the old seed-and-image percentile bootstrap
(seed_and_image_bootstrap, kept here only: the reports no longer use it); and, for comparison,
the plain seed part + image part (the variance without taking out the residual counted twice).
It first re-derives the noise sizes from reports/runs.jsonl, as the comment above STUDY_NOISE
says. Writes what it prints to bench/results/interval_coverage.txt.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats

from sfae.errors import SfaeError
from sfae.reports.intervals import difference_interval

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "reports" / "runs.jsonl"
RESULT = ROOT / "bench" / "results" / "interval_coverage.txt"
TRUE_DIFFERENCE = 0.02
SEEDS = (3, 5, 10)


@dataclass(frozen=True)
class NoiseSizes:
    """Sizes (standard deviations) of the parts of a simulated per-image IoU."""

    base_iou: float
    image_sd: float  # image difficulty, shared by both variants
    image_by_variant_sd: float  # how much a variant suits an image, per variant
    seed_sd: float  # training noise: a (variant, seed) run's offset of its mean IoU
    seed_correlation: float  # of two variants' offsets with one seed (same init, shuffles)
    residual_sd: float  # per (variant, seed, image)


# From reports/runs.jsonl's final paper-net runs (val_count 0, arch paper, 85 images) less l1, l2
# (collapsed at every seed) and 2 collapsed runs (seed 8 of pure, augment): 34 runs, 5 variants.
# residual: pooled two-way (seed x image) residual SD; seed: pooled SD over seeds of run means
# (0.019) less the residual's share; correlation: pooled, of two variants' run means over shared
# seeds; image by variant: sqrt of the median over the 10 variant pairs of (variance over images
# of their seed-averaged difference - residual's share) / 2; image, base: SD, mean over images.
STUDY_NOISE = NoiseSizes(0.51, 0.14, 0.026, 0.017, 0.37, 0.084)  # in NoiseSizes field order


@dataclass(frozen=True, eq=False)
class SimulatedRuns:
    ours: np.ndarray  # (seeds, images) per-image IoU
    reference: np.ndarray
    ours_seeds: tuple[int, ...]
    reference_seeds: tuple[int, ...]
    true_difference: float  # the population difference, over all possible images and seeds


def simulate_runs(
    rng: np.random.Generator,
    n_seeds: int,
    true_difference: float = 0.0,
    n_images: int = 85,
    noise: NoiseSizes = STUDY_NOISE,
    shared_seeds: bool = True,
) -> SimulatedRuns:
    """Runs of two variants whose true mean IoU differs by `true_difference`.

    IoU[v, s, i] = base + difficulty_i + effect_v + fit_{v,i} + offset_{v,s} + residual_{v,s,i},
    normal, mean 0, sizes from `noise`; effect: true_difference for ours, 0 for the reference.
    Every call draws new images: test images are a sample too, the truth is the population's.
    shared_seeds: both run seeds 0..n-1, offsets correlated; else independent, other seeds.
    """
    if not (n_seeds >= 1 and n_images >= 2 and 0.0 <= noise.seed_correlation <= 1.0):
        raise SfaeError(f"need 1+ seeds, 2+ images, correlation in [0, 1]: {n_seeds}, {n_images}")
    difficulty = noise.base_iou + noise.image_sd * rng.standard_normal(n_images)
    fit = noise.image_by_variant_sd * rng.standard_normal((2, n_images))
    common = rng.standard_normal(n_seeds if shared_seeds else (2, n_seeds))
    own = rng.standard_normal((2, n_seeds))
    rho = noise.seed_correlation
    offset = noise.seed_sd * (math.sqrt(rho) * common + math.sqrt(1.0 - rho) * own)
    residual = noise.residual_sd * rng.standard_normal((2, n_seeds, n_images))
    effect = np.array([true_difference, 0.0])
    iou = difficulty + effect[:, None, None] + fit[:, None, :] + offset[:, :, None] + residual
    seeds, others = tuple(range(n_seeds)), tuple(range(n_seeds, 2 * n_seeds))
    return SimulatedRuns(iou[0], iou[1], seeds, seeds if shared_seeds else others, true_difference)


def estimate_noise(lines: list[str]) -> None:
    """Print the noise sizes of the final paper-net runs, derived as STUDY_NOISE's comment says."""
    records = [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]
    final = [
        r
        for r in records
        if r["params"].get("data.val_count") == 0 and r["params"].get("model.arch") == "paper"
    ]
    images = sorted(set.intersection(*(set(r["per_image_iou"]) for r in final)))
    runs: dict[str, dict[int, np.ndarray]] = {}
    for r in final:
        iou = np.array([r["per_image_iou"][image] for image in images])
        runs.setdefault(r["variant"], {})[r["seed"]] = iou
    healthy: dict[str, dict[int, np.ndarray]] = {}
    for variant, by_seed in sorted(runs.items()):
        median = float(np.median([iou.mean() for iou in by_seed.values()]))
        if median < 0.3:
            lines.append(f"  left out {variant}: collapsed at every seed (median {median:.2f})")
            continue
        healthy[variant] = {s: iou for s, iou in by_seed.items() if iou.mean() > median - 0.1}
        for seed in sorted(set(by_seed) - set(healthy[variant])):
            lines.append(f"  left out {variant} seed {seed}: mean {by_seed[seed].mean():.2f}")
    n_images = len(images)
    squares, dof = 0.0, 0
    seed_variance, seed_dof = 0.0, 0
    for by_seed in healthy.values():
        matrix = np.array(list(by_seed.values()))
        rest = matrix - matrix.mean(axis=1, keepdims=True) - matrix.mean(axis=0) + matrix.mean()
        squares += float((rest**2).sum())
        dof += (len(matrix) - 1) * (n_images - 1)
        seed_variance += float(matrix.mean(axis=1).var(ddof=1)) * (len(matrix) - 1)
        seed_dof += len(matrix) - 1
    residual = squares / dof
    run_mean_sd = math.sqrt(seed_variance / seed_dof)
    covariance, variance, fits = 0.0, 0.0, []
    for a, b in itertools.combinations(sorted(healthy), 2):
        shared = sorted(set(healthy[a]) & set(healthy[b]))
        mean_a = np.array([healthy[a][s].mean() for s in shared])
        mean_b = np.array([healthy[b][s].mean() for s in shared])
        covariance += float(np.cov(mean_a, mean_b)[0, 1]) * (len(shared) - 1)
        variance += (mean_a.var(ddof=1) + mean_b.var(ddof=1)) / 2 * (len(shared) - 1)
        averaged_a = np.mean(list(healthy[a].values()), axis=0)
        averaged_b = np.mean(list(healthy[b].values()), axis=0)
        share = residual * (1 / len(healthy[a]) + 1 / len(healthy[b]))
        fits.append(((averaged_a - averaged_b).var(ddof=1) - share) / 2)
    averaged = np.mean([iou for by_seed in healthy.values() for iou in by_seed.values()], axis=0)
    count = sum(len(by_seed) for by_seed in healthy.values())
    lines += [
        f"  {count} runs of {len(healthy)} variants, {n_images} test images:",
        f"  residual SD {math.sqrt(residual):.3f} (pooled two-way residual, df {dof})",
        f"  seed SD {math.sqrt(run_mean_sd**2 - residual / n_images):.3f} "
        f"(SD of run means over seeds {run_mean_sd:.3f}, less the residual's share)",
        f"  seed correlation {covariance / variance:.2f} (pooled over pairs of variants)",
        f"  image-by-variant SD {math.sqrt(max(float(np.median(fits)), 0.0)):.3f} "
        f"(median of {len(fits)} pairs)",
        f"  image SD {averaged.std(ddof=1):.3f}, base IoU {averaged.mean():.2f}",
    ]


def seed_and_image_bootstrap(
    variant_iou: np.ndarray,
    reference_iou: np.ndarray,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """(low, high): the old reports' interval, kept here for the comparison only: a percentile
    bootstrap of the mean per-image IoU difference that draws each side's seeds with
    replacement (rows: seeds, columns: the same images) and the images, paired, with
    replacement. The mean over drawn seeds and drawn images equals the mean over the drawn
    images of the drawn seeds' mean, so each side is averaged over its seeds first."""
    ours, theirs = np.asarray(variant_iou, float), np.asarray(reference_iou, float)
    if ours.ndim != 2 or theirs.ndim != 2 or ours.shape[1] != theirs.shape[1]:
        raise ValueError(f"need (seeds, images) arrays, got {ours.shape} and {theirs.shape}")
    generator = np.random.default_rng(seed)
    images = ours.shape[1]
    picked = generator.integers(0, images, (resamples, images))
    ours = ours[generator.integers(0, len(ours), (resamples, len(ours)))].mean(axis=1)
    theirs = theirs[generator.integers(0, len(theirs), (resamples, len(theirs)))].mean(axis=1)
    means = np.take_along_axis(ours - theirs, picked, axis=1).mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def plain_sum(ours: np.ndarray, reference: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The seed part + image part without the residual correction, paired, Satterthwaite df."""
    runs = ours - reference
    seeds, images = runs.shape
    seed_part = runs.mean(axis=1).var(ddof=1) / seeds
    image_part = runs.mean(axis=0).var(ddof=1) / images
    variance = seed_part + image_part
    df = variance**2 / (seed_part**2 / (seeds - 1) + image_part**2 / (images - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * math.sqrt(variance)
    return runs.mean() - half, runs.mean() + half


HEADER = "seeds  new paired  new welch  old bootstrap  plain S+G  | mean width: new  old  plain"


def coverage_row(
    n_seeds: int, noise: NoiseSizes, replicates: int, resamples: int, seed: int
) -> str:
    """One table row: each method's share of replicates whose interval holds the truth."""
    rng = np.random.default_rng([seed, n_seeds])
    hits = {"paired": 0, "welch": 0, "old": 0, "plain": 0}
    widths = {"paired": 0.0, "old": 0.0, "plain": 0.0}
    for replicate in range(replicates):
        runs = simulate_runs(rng, n_seeds, TRUE_DIFFERENCE, noise=noise)
        new = difference_interval(runs.ours, runs.reference, runs.ours_seeds, runs.reference_seeds)
        old = seed_and_image_bootstrap(runs.ours, runs.reference, resamples, replicate)
        plain = plain_sum(runs.ours, runs.reference)
        for name, (low, high) in (("paired", (new.low, new.high)), ("old", old), ("plain", plain)):
            hits[name] += low <= runs.true_difference <= high
            widths[name] += high - low
        apart = simulate_runs(rng, n_seeds, TRUE_DIFFERENCE, noise=noise, shared_seeds=False)
        welch = difference_interval(
            apart.ours, apart.reference, apart.ours_seeds, apart.reference_seeds
        )
        hits["welch"] += welch.low <= apart.true_difference <= welch.high
    share = {name: count / replicates for name, count in hits.items()}
    width = {name: total / replicates for name, total in widths.items()}
    return (
        f"{n_seeds:5d}  {share['paired']:10.3f}  {share['welch']:9.3f}  {share['old']:13.3f}"
        f"  {share['plain']:9.3f}  |  {width['paired']:.4f}  {width['old']:.4f}  "
        f"{width['plain']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=2000, help="of the old bootstrap")
    args = parser.parse_args()
    started = time.perf_counter()
    lines = [f"noise sizes re-derived from {RUNS.relative_to(ROOT)}:"]
    if RUNS.exists():
        estimate_noise(lines)
    else:
        lines.append("  (no records found)")
    lines += [
        f"noise sizes used (STUDY_NOISE): {STUDY_NOISE}",
        f"true difference {TRUE_DIFFERENCE}, 85 images drawn anew each replicate, "
        f"{args.replicates} replicates per row, old bootstrap with {args.resamples} resamples; "
        f"coverage +- {1.96 * math.sqrt(0.95 * 0.05 / args.replicates):.3f} (95% MC) at 0.95",
    ]
    print("\n".join(lines), flush=True)
    scenarios = (
        ("study noise (STUDY_NOISE)", STUDY_NOISE),
        ("same, but training noise independent across variants (seed_correlation 0)",
         replace(STUDY_NOISE, seed_correlation=0.0)),
        ("seed noise at the top of the 0.02-0.03 range (seed_sd 0.03, seed_correlation 0)",
         replace(STUDY_NOISE, seed_sd=0.03, seed_correlation=0.0)),
    )  # fmt: skip
    for scenario, (title, noise) in enumerate(scenarios):
        lines += ["", title, HEADER]
        print("\n".join(lines[-3:]), flush=True)
        for n_seeds in SEEDS:
            lines.append(coverage_row(n_seeds, noise, args.replicates, args.resamples, scenario))
            print(lines[-1], flush=True)
    lines.append(f"({time.perf_counter() - started:.0f} s)")
    print(lines[-1])
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("$ python bench/interval_coverage.py\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
