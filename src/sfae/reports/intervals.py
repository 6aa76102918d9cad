"""Intervals and verdicts for 5-10 training seeds: seed and image noise in one t interval."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from sfae.errors import SfaeError

VERDICTS = BETTER, WORSE, NOT_DISTINGUISHABLE = "better", "worse", "not distinguishable"


def _check_level(level: float, what: str = "level") -> None:
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0.0 < level < 1.0:
        raise SfaeError(f"{what} must lie strictly between 0 and 1, got {level!r}")


@dataclass(frozen=True)
class Difference:
    """Mean per-image IoU of ours minus the reference's, with its t interval at `level`."""

    mean: float
    low: float
    high: float
    se: float
    df: float
    level: float
    p_value: float  # two-sided, from the same t distribution as the interval
    n_images: int
    ours_seeds: tuple[int, ...]  # the seeds used, after pairing
    reference_seeds: tuple[int, ...]
    paired: bool  # paired by seed (True) or Welch over independent seeds (False)

    def at_level(self, level: float) -> "Difference":
        """The same estimate, its interval at another level."""
        _check_level(level)
        half = 0.0 if self.se == 0.0 else float(stats.t.ppf(0.5 + level / 2.0, self.df)) * self.se
        return replace(self, low=self.mean - half, high=self.mean + half, level=level)


def _runs(side: str, iou: np.ndarray, seeds: Sequence[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    matrix = np.asarray(iou, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != len(seeds) or matrix.shape[1] < 2:
        raise SfaeError(f"{side}: need ({len(seeds)} seeds, 2+ images), got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise SfaeError(f"{side}: a per-image IoU is not finite")
    if any(isinstance(seed, bool) or not isinstance(seed, int | np.integer) for seed in seeds):
        raise SfaeError(f"{side}: seeds must be integers, got {list(seeds)!r}")
    if len(set(seeds)) != len(seeds):
        raise SfaeError(f"{side}: a seed appears twice in {list(seeds)!r}")
    return matrix, tuple(int(seed) for seed in seeds)


def difference_interval(
    ours: np.ndarray,
    reference: np.ndarray,
    ours_seeds: Sequence[int],
    reference_seeds: Sequence[int],
    level: float = 0.95,
) -> Difference:
    """Interval of the mean per-image IoU difference D = ours - reference over seeds and images.

    Runs pair by seed where the smaller side's seeds all appear in the other (shared training
    noise cancels), else Welch. S = var_s(mean_i D)/n, G = var_i(mean_s D)/I, R = MS_resid(D)/(nI):
    SE^2 = max(S + G - R, S, G), df by Satterthwaite; the seed-by-image residual is in both S and
    G but once in the grand mean (S + G is 4-9% too wide here), and S, G each estimate a part."""
    ours_runs, ours_seeds = _runs("ours", ours, ours_seeds)
    reference_runs, reference_seeds = _runs("reference", reference, reference_seeds)
    images = ours_runs.shape[1]
    if reference_runs.shape[1] != images:
        raise SfaeError(f"ours has {images} images, the reference {reference_runs.shape[1]}")
    smaller, larger = sorted((ours_seeds, reference_seeds), key=len)
    paired = set(smaller) <= set(larger)
    if paired:
        ours_runs = ours_runs[[ours_seeds.index(seed) for seed in smaller]]
        reference_runs = reference_runs[[reference_seeds.index(seed) for seed in smaller]]
        ours_seeds = reference_seeds = smaller
    if min(len(ours_seeds), len(reference_seeds)) < 2:
        kind = "shared seeds" if paired else "seeds per side"
        raise SfaeError(f"need 2+ {kind} for a seed variance, got {ours_seeds}, {reference_seeds}")
    per_image = ours_runs.mean(axis=0) - reference_runs.mean(axis=0)
    mean = float(per_image.mean())
    image_part = (float(per_image.var(ddof=1)) / images, images - 1)
    seed_parts, residual_parts = [], []
    for runs in [ours_runs - reference_runs] if paired else [ours_runs, reference_runs]:
        n, dof = len(runs), (len(runs) - 1) * (images - 1)
        seed_parts.append((float(runs.mean(axis=1).var(ddof=1)) / n, n - 1))
        rest = runs - runs.mean(axis=1, keepdims=True) - runs.mean(axis=0) + runs.mean()
        residual_parts.append((-float((rest**2).sum()) / dof / (n * images), dof))  # MS / (nI)
    # (value, df) parts; SE^2 = max(S + G - R, S, G) keeping the chosen one's terms for its df
    candidates = [seed_parts + [image_part] + residual_parts, seed_parts, [image_part]]
    parts = max(candidates, key=lambda terms: sum(value for value, _ in terms))
    variance = sum(value for value, _ in parts)
    se = math.sqrt(max(variance, 0.0))
    df = variance**2 / sum(value**2 / dof for value, dof in parts) if se > 0.0 else math.inf
    p_value = float(2.0 * stats.t.sf(abs(mean) / se, df)) if se > 0.0 else float(mean == 0.0)
    point = Difference(
        mean, mean, mean, se, df, level, p_value, images, ours_seeds, reference_seeds, paired
    )
    return point.at_level(level)


@dataclass(frozen=True)
class HolmComparison:
    """One comparison of a family after Holm's step-down correction."""

    name: str
    difference: Difference  # uncorrected
    step: int  # 1 for the smallest p-value
    family_size: int
    alpha: float
    level: float  # the corrected interval's level
    low: float
    high: float
    adjusted_p: float  # Holm-adjusted p-value: rejected iff adjusted_p < alpha
    rejected: bool  # iff the corrected interval excludes zero
    verdict: str  # "better", "worse" or "not distinguishable"
    largest_gain: float | None  # for a null: the corrected interval's high end ...
    largest_loss: float | None  # ... and its low end, the most it still allows either way


def holm(
    comparisons: Mapping[str, Difference], alpha: float = 0.05, family_size: int | None = None
) -> dict[str, HolmComparison]:
    """Holm's correction (needs no independence) over name -> Difference, each interval at its
    step's level 1 - alpha/(m - j + 1), from the first not rejected on that one's, so it excludes
    zero iff Holm rejects. family_size: comparisons with no runs yet count as not rejected."""
    _check_level(alpha, "alpha")
    if not comparisons or not all(isinstance(d, Difference) for d in comparisons.values()):
        raise SfaeError("holm needs one or more comparisons, each a Difference")
    m = len(comparisons) if family_size is None else family_size
    if m < len(comparisons):
        raise SfaeError(f"a family of {m} cannot hold {len(comparisons)} comparisons")
    order = sorted(comparisons, key=lambda name: comparisons[name].p_value)
    corrected: dict[str, HolmComparison] = {}
    stopped_level, adjusted = None, 0.0  # step k's level, once one is not rejected; adjusted p
    for step, name in enumerate(order, start=1):
        difference = comparisons[name]
        level = 1.0 - alpha / (m - step + 1) if stopped_level is None else stopped_level
        bounded = difference.at_level(level)
        low, high = bounded.low, bounded.high  # better needs low > 0: a low of exactly 0 is not
        verdict = BETTER if low > 0.0 else WORSE if high < 0.0 else NOT_DISTINGUISHABLE
        if stopped_level is None and verdict == NOT_DISTINGUISHABLE:
            stopped_level = level
        adjusted = min(1.0, max(adjusted, (m - step + 1) * difference.p_value))
        null = verdict == NOT_DISTINGUISHABLE
        corrected[name] = HolmComparison(
            name, difference, step, m, alpha, level, low, high, adjusted, not null, verdict,
            high if null else None, low if null else None,
        )  # fmt: skip
    return {name: corrected[name] for name in comparisons}
