"""The reports' sentences (no count changes their grammar) and the tables both reports share."""

import math
from collections.abc import Iterable, Sequence

from sfae.experiments.records import RunRecord
from sfae.experiments.sweep_state import Gap, Selection
from sfae.reports.intervals import NOT_DISTINGUISHABLE
from sfae.reports.markdown import join, markdown_table, paragraphs
from sfae.reports.statistics import COLLAPSE_IOU, SUMMARY_METRICS, Comparison, Family, metric_value

METHODS = (
    "**How the verdicts are made.** A comparison is the mean over the test images of the per-image "
    "test IoU difference, each side averaged over its seeds. Its interval is a t interval that "
    "carries both kinds of noise: the training seeds (runs with one seed share their initial "
    "weights and shuffles, so the sides are paired by seed where both have it, else compared as "
    "independent seeds, Welch) and the test images, which are a sample too; the variance is the "
    "seed part plus the image part less the seed-by-image residual they both hold, with "
    "Satterthwaite's degrees of freedom (`sfae.reports.intervals`). The comparisons with one "
    "reference form a family: Holm's step-down correction holds the chance of any false verdict in "
    "it at {alpha:.0%}, and each interval is shown at its Holm level, so it excludes zero exactly "
    "when Holm rejects. A row is better or worse only then; otherwise its interval's ends are the "
    "largest gain and loss it still allows. This replaces the percentile bootstrap of earlier "
    "reports, which undercovers with few seeds; the coverage of both in a simulation with this "
    "study's noise sizes: see bench/results/interval_coverage.txt."
)
RUNS_OF = {"reference": "selection", "plateau": "plateau-seed"}  # a gap's step -> its runs


def seeds_said(comparison: Comparison) -> str:
    difference = comparison.difference
    if difference.paired:
        return f"{len(difference.ours_seeds)} paired"
    return f"{len(difference.ours_seeds)} vs {len(difference.reference_seeds)}, Welch"


def _bounds(c: Comparison) -> str:
    """Its corrected interval or, for a null, the largest gain and loss it still allows."""
    if c.verdict != NOT_DISTINGUISHABLE:
        return f"{c.low:+.3f} to {c.high:+.3f}"
    gain, loss = c.largest_gain, -c.largest_loss
    return f"no more than {gain:+.3f} IoU better, no more than {loss:.3f} worse"


def reading(c: Comparison) -> str:
    """One sentence: the difference, its corrected interval and its verdict."""
    null = c.verdict == NOT_DISTINGUISHABLE
    return (
        f"{c.name} minus {c.reference}: {c.mean:+.3f} per-image test IoU, {c.level:.1%} interval "
        f"{c.low:+.3f} to {c.high:+.3f} (Holm, a family of {c.family_size}; seeds: "
        f"{seeds_said(c)}; images: {c.difference.n_images}): {c.verdict} "
        f"{'from' if null else 'than'} {c.reference}{f'; it allows {_bounds(c)}' * null}."
    )


def family_said(family: Family) -> str:
    reference = family.reference
    if not family.comparisons:
        return f"Against {reference}: no row has two final runs beside two of {reference}'s yet."
    groups = [
        f"{v}: {', '.join(f'{c.name} ({c.mean:+.3f}; {_bounds(c)})' for c in found)}"
        for v, found in family.by_verdict.items()
    ]
    if family.pending:
        groups.append(f"pending (fewer than two final runs): {', '.join(family.pending)}")
    return (
        f"Against {reference} ({family.kind}; Holm-corrected intervals over seeds and images, "
        f"a family of {family.size}): {'; '.join(groups)}."
    )


def gaps_said(gaps: Iterable[Gap]) -> str:
    return "; ".join(
        f"{g.label}: {g.missing} of {g.planned} {RUNS_OF.get(g.step, g.step)} runs"
        + ", then its finals" * (g.step == "selection")
        for g in gaps
    )


def collapsed_said(runs: Sequence[RunRecord]) -> str:
    limit = f"pooled test IoU below {COLLAPSE_IOU:.2f}"
    if not runs:
        return f"No final run collapsed ({limit})."
    ordered = sorted({id(r): r for r in runs}.values(), key=lambda r: (r.variant, r.seed))
    named = "; ".join(
        f"{r.variant} seed {r.seed} (`{r.name}`, {metric_value(r, 'test_iou'):.3f})"
        for r in ordered
    )
    return (
        f"Collapsed runs ({limit}) are seed outcomes, not accidents to drop: they stay in their "
        f"groups, and the intervals carry them: {named}."
    )


def left_out_said(runs: Sequence[RunRecord], kind: str | None) -> str | None:
    by_kind: dict[str, list[str]] = {}
    for r in sorted(runs, key=lambda r: (r.machine_kind, r.variant, r.val_count > 0, r.seed)):
        step = "selection" if r.val_count else "final"
        by_kind.setdefault(r.machine_kind, []).append(f"{r.variant} seed {r.seed} {step}")
    groups = "; ".join(
        f"{other}: {len(them)} ({', '.join(them)})" for other, them in by_kind.items()
    )
    if not groups:
        return None
    return (
        "Records of planned runs that trained on another machine kind, left out (every "
        f"comparison here reads runs of {kind} only): {groups}."
    )


def range_said(selection: Selection) -> str:
    """The plateau beside the selected value, and where the curve collapses (the post's named)."""
    flat, variant = selection.plateau, selection.variant
    if flat is None:
        return f"{variant}: not selected yet"
    best = f"{flat.best:g}"
    if flat.se is None:
        return f"{variant}: {best} (one selection seed: the SE, and so a range, is not estimable)"
    points, plateau = list(selection.points), list(flat.plateau)
    first = points.index(plateau[0])
    if len(plateau) == 1:
        text = f"{variant}: {best} alone (every other strength lies more than one SE below it)"
    elif points[first : first + len(plateau)] == plateau:  # no strength between left out
        text = f"{variant}: anything from {plateau[0]:g} to {plateau[-1]:g} does as well as {best}"
    else:
        strengths = join(f"{x:g}" for x in plateau)
        between = "but not the strengths between them"
        text = f"{variant}: within one SE of the selected {best}: {strengths}, {between}"
    if flat.collapsed:
        value, mark = selection.post
        post = "the post's" if mark == "post" else "params.yaml's default"
        said = (f"{post} {x:g}" if math.isclose(x, value) else f"{x:g}" for x in flat.collapsed)
        text += f"; it collapses at {join(said)}"
    return text


def results_table(table: dict, kind: str | None) -> list[str]:
    """The final table (a Summary): every row's scores over its seeds."""
    if not table:
        return ["No final run is recorded yet."]
    rows = [
        [f"`{label}`", scores["test_iou"][2]]
        + [f"{scores[metric][0]:.3f} ± {scores[metric][1]:.3f}" for metric in SUMMARY_METRICS]
        for label, scores in table.items()
    ]
    header = ["variant", "n seeds", *(label for label, _, _ in SUMMARY_METRICS.values())]
    spread = "Mean ± sample standard deviation over the seeds (± 0.000 when there is one seed)."
    return [f"Runs trained on {kind}. {spread}", "", *markdown_table(header, rows)]


def family_table(family: Family) -> list[str]:
    """A family's comparisons in a table, then in a sentence, then its collapsed runs."""
    rows = [
        [
            f"`{c.name}`",
            f"{c.mean:+.3f}",
            f"{c.low:+.3f} to {c.high:+.3f} ({c.level:.1%})",
            f"{c.difference.low:+.3f} to {c.difference.high:+.3f}",
            f"{c.adjusted_p:.3g}",
            c.difference.n_images,
            seeds_said(c),
            c.verdict + f": {_bounds(c)}" * (c.verdict == NOT_DISTINGUISHABLE),
        ]
        for c in family.comparisons.values()
    ]
    header = [
        *("variant", f"minus {family.reference}", "Holm-corrected interval (level)"),
        *(f"uncorrected {1 - family.alpha:.0%} interval", "Holm p", "images", "seeds", "verdict"),
    ]
    table = markdown_table(header, rows) if rows else None
    return paragraphs(family_said(family), table, collapsed_said(family.collapsed))
