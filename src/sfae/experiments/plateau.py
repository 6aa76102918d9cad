"""How sure a sweep's selection is: the plateau of a selection curve, the strengths a seed's luck
could have made best, and where it collapses (the plan's statistics: it never imports a report)."""

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sfae.errors import SfaeError

_NUMBER = (int, float, np.integer, np.floating)


def _finite(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value):
        raise SfaeError(f"{where}: {value!r} is not a finite number")
    return float(value)


@dataclass(frozen=True)
class SeedPick:
    seed: int
    strength: float  # the strength this seed alone would pick (its highest validation IoU)


@dataclass(frozen=True)
class Plateau:  # where a selection curve (validation IoU by strength) is flat at the top
    best: float
    best_mean: float
    se: float | None  # None: not estimable (one seed per strength)
    plateau: tuple[float, ...]  # strengths whose mean is within one SE of the best's, sorted
    collapsed: tuple[float, ...]  # strengths whose mean is more than 3 SE below the best's
    seed_picks: tuple[SeedPick, ...]  # by seed


def plateau(curve: Mapping[float, Mapping[int, float]]) -> Plateau:
    """The best strength of {strength: {seed: validation IoU}} (ties: the smaller) and how sure; the
    SE pools the seed variance over strengths (why: sfae.reports.sweep_report.PLATEAUS)."""
    if not curve:
        raise SfaeError("the selection curve has no strength")
    values: dict[float, list[float]] = {}  # strength -> its seeds' values
    for strength, seeds in curve.items():
        where = f"strength {strength!r}"
        if not seeds:
            raise SfaeError(f"{where}: no seed")
        values[_finite(strength, where)] = [_finite(value, where) for value in seeds.values()]
    means = {strength: float(np.mean(values[strength])) for strength in sorted(values)}
    best = max(means, key=lambda strength: (means[strength], -strength))
    # sum((n_p - 1) s_p^2) and sum(n_p - 1) over the strengths with 2+ seeds
    within = sum((len(v) - 1) * float(np.var(v, ddof=1)) for v in values.values() if len(v) > 1)
    pooled_df = sum(len(v) - 1 for v in values.values())
    # Each seed's own pick: the strength of its highest value (a tie: the smaller strength).
    seeds = sorted({seed for by_seed in curve.values() for seed in by_seed})
    picks = [min((-v[seed], float(s)) for s, v in curve.items() if seed in v)[1] for seed in seeds]
    se, flat, collapsed = None, (best,), ()
    if pooled_df > 0:
        se = math.sqrt(within / pooled_df / len(values[best]))
        flat = tuple(strength for strength, mean in means.items() if mean >= means[best] - se)
        collapsed = tuple(s for s, mean in means.items() if mean < means[best] - 3.0 * se)
    return Plateau(
        best=best,
        best_mean=means[best],
        se=se,
        plateau=flat,
        collapsed=collapsed,
        seed_picks=tuple(
            SeedPick(int(seed), pick) for seed, pick in zip(seeds, picks, strict=True)
        ),
    )
