"""The reports' sentences: templates with slots, filled from typed results (a Comparison, a
Family, a Selection's plateau, a Gap), phrased so that no count changes their grammar ("final
seeds: 5"); and the two tables both reports share: the scores over seeds, a family."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from sfae.experiments.records import RunRecord
from sfae.experiments.sweep_state import Gap, Selection
from sfae.reports.intervals import BETTER, NOT_DISTINGUISHABLE, WORSE
from sfae.reports.markdown import join, markdown_table, paragraphs
from sfae.reports.statistics import (
    COLLAPSE_IOU,
    METRIC_LABELS,
    SUMMARY_METRICS,
    Comparison,
    Family,
    Summary,
    metric_value,
)

RELATION = {
    BETTER: "better than",
    WORSE: "worse than",
    NOT_DISTINGUISHABLE: "not distinguishable from",
}
INTERVAL = "{low:+.3f} to {high:+.3f}"
# A null says how large an effect it still allows: the corrected interval's ends.
ALLOWS = "no more than {largest_gain:+.3f} IoU better, no more than {loss:.3f} worse"
READING = (
    "{name} minus {reference}: {mean:+.3f} per-image test IoU, {level:.1%} interval "
    + INTERVAL
    + " (Holm, a family of {family_size}; seeds: {seeds}; images: {images}): {relation} {reference}"
    + "{allows}."
)
SHORT = "{name} ({mean:+.3f}; {bounds})"
FAMILY = (
    "Against {reference} ({kind}; Holm-corrected intervals over seeds and images, "
    "a family of {size}): {groups}."
)
NOTHING_COMPARED = "Against {reference}: no row has two final runs beside two of {reference}'s yet."
PENDING = "pending (fewer than two final runs): {names}"
GAP = {
    "selection": "{label}: {missing} of {planned} selection runs, then its finals",
    "reference": "{label}: {missing} of {planned} selection runs",
    "final": "{label}: {missing} of {planned} final runs",
    "candidate": "{label}: {missing} of {planned} candidate runs",
    "plateau": "{label}: {missing} of {planned} plateau-seed runs",
}
COLLAPSED = (
    "Collapsed runs (pooled test IoU below {limit:.2f}) are seed outcomes, not accidents to "
    "drop: they stay in their groups, and the intervals carry them: {runs}."
)
NONE_COLLAPSED = "No final run collapsed (pooled test IoU below {limit:.2f})."
COLLAPSED_RUN = "{variant} seed {seed} (`{name}`, {iou:.3f})"
LEFT_OUT = (
    "Records of planned runs that trained on another machine kind, left out (every "
    "comparison here reads runs of {kind} only): {groups}."
)
LEFT_OUT_KIND = "{kind}: {count} ({runs})"
LEFT_OUT_RUN = "{variant} seed {seed} {step}"
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
ONE_SEED = "{variant}: {selected:g} (one selection seed: the SE, and so a range, is not estimable)"
RANGE = "{variant}: anything from {low:g} to {high:g} does as well as {selected:g}"
ALONE = "{variant}: {selected:g} alone (every other strength lies more than one SE below it)"
SCATTERED = (
    "{variant}: within one SE of the selected {selected:g}: {strengths}, but not the strengths "
    "between them"
)
COLLAPSES = "; it collapses at {strengths}"
POST_VALUE = {"post": "the post's {x:g}", "default": "params.yaml's default {x:g}"}
NOT_SELECTED = "{variant}: not selected yet"
NO_FINAL = "No final run is recorded yet."
SPREAD = "Mean ± sample standard deviation over the seeds (± 0.000 when there is one seed)."


def seeds_said(comparison: Comparison) -> str:
    difference = comparison.difference
    if difference.paired:
        return f"{len(difference.ours_seeds)} paired"
    return f"{len(difference.ours_seeds)} vs {len(difference.reference_seeds)}, Welch"


def _slots(c: Comparison) -> dict:
    """The comparison's fields (name, reference, level, low, ...) and what the templates add;
    `bounds`: its corrected interval or, for a null, the largest gain and loss it allows (which
    a null's reading and verdict cell name too)."""
    loss = c.largest_loss
    slots = vars(c) | {
        "mean": c.mean,
        "seeds": seeds_said(c),
        "images": c.difference.n_images,
        "relation": RELATION[c.verdict],
        "loss": None if loss is None else -loss,
    }
    null = c.verdict == NOT_DISTINGUISHABLE
    bounds = (ALLOWS if null else INTERVAL).format(**slots)
    cell = f"{c.verdict}: {bounds}" if null else c.verdict
    return slots | {"bounds": bounds, "allows": f"; it allows {bounds}" * null, "cell": cell}


def reading(comparison: Comparison) -> str:
    """One sentence: the difference, its corrected interval and its verdict (for a null, the
    largest gain and loss it still allows)."""
    return READING.format(**_slots(comparison))


def family_said(family: Family) -> str:
    """'Against pure (kind; ...): better: a, b; worse: c; not distinguishable: d.'"""
    if not family.comparisons:
        return NOTHING_COMPARED.format(reference=family.reference)
    groups = [
        f"{v}: {', '.join(SHORT.format(**_slots(c)) for c in found)}"
        for v, found in family.by_verdict.items()
    ]
    if family.pending:
        groups.append(PENDING.format(names=", ".join(family.pending)))
    slots = {"reference": family.reference, "kind": family.kind, "size": family.size}
    return FAMILY.format(**slots, groups="; ".join(groups))


def gaps_said(gaps: Iterable[Gap]) -> str:
    return "; ".join(GAP[gap.step].format(**vars(gap)) for gap in gaps)


def collapsed_said(runs: Sequence[RunRecord]) -> str:
    if not runs:
        return NONE_COLLAPSED.format(limit=COLLAPSE_IOU)
    ordered = sorted({id(r): r for r in runs}.values(), key=lambda r: (r.variant, r.seed))
    named = "; ".join(
        COLLAPSED_RUN.format(**vars(r), iou=metric_value(r, "test_iou")) for r in ordered
    )
    return COLLAPSED.format(limit=COLLAPSE_IOU, runs=named)


def left_out_said(runs: Sequence[RunRecord], kind: str | None) -> str | None:
    """Which records of other machine kinds a report left out (None: none)."""
    by_kind: dict[str, list[str]] = {}
    for r in sorted(runs, key=lambda r: (r.machine_kind, r.variant, r.val_count > 0, r.seed)):
        run = LEFT_OUT_RUN.format(**vars(r), step="selection" if r.val_count else "final")
        by_kind.setdefault(r.machine_kind, []).append(run)
    groups = [
        LEFT_OUT_KIND.format(kind=other, count=len(found), runs=", ".join(found))
        for other, found in by_kind.items()
    ]
    return LEFT_OUT.format(kind=kind, groups="; ".join(groups)) if groups else None


def range_said(selection: Selection) -> str:
    """How much: the plateau of the selection curve beside the selected value, and where the
    curve collapses (the post's value named)."""
    flat, variant = selection.plateau, selection.variant
    if flat is None:
        return NOT_SELECTED.format(variant=variant)
    slots = {"variant": variant, "selected": flat.best}
    if flat.se is None:
        return ONE_SEED.format(**slots)
    points, plateau = list(selection.points), list(flat.plateau)
    first = points.index(plateau[0])
    if len(plateau) == 1:
        text = ALONE.format(**slots)
    elif points[first : first + len(plateau)] == plateau:  # no strength between left out
        text = RANGE.format(**slots, low=flat.plateau_low, high=flat.plateau_high)
    else:
        text = SCATTERED.format(**slots, strengths=join(f"{x:g}" for x in flat.plateau))
    if flat.collapsed:
        value, mark = selection.post

        def said(x: float) -> str:
            return POST_VALUE[mark].format(x=x) if math.isclose(x, value) else f"{x:g}"

        text += COLLAPSES.format(strengths=join(said(x) for x in flat.collapsed))
    return text


def results_table(table: Summary, kind: str | None) -> list[str]:
    """Every row's scores over its seeds, with the machine kind its runs trained on."""
    if not table:
        return [NO_FINAL]
    rows = [
        [
            f"`{label}`",
            scores["test_iou"][2],
            *(f"{scores[metric][0]:.3f} ± {scores[metric][1]:.3f}" for metric in SUMMARY_METRICS),
        ]
        for label, scores in table.items()
    ]
    header = ["variant", "n seeds", *map(METRIC_LABELS.get, SUMMARY_METRICS)]
    return [f"Runs trained on {kind}. {SPREAD}", "", *markdown_table(header, rows)]


def family_table(family: Family) -> list[str]:
    """A family's comparisons: the difference, its Holm-corrected and uncorrected intervals,
    the seeds it paired, its verdict; then the family in a sentence, and its collapsed runs."""
    rows = [
        [
            f"`{c.name}`",
            f"{c.mean:+.3f}",
            f"{c.low:+.3f} to {c.high:+.3f} ({c.level:.1%})",
            f"{c.difference.low:+.3f} to {c.difference.high:+.3f}",
            f"{c.adjusted_p:.3g}",
            c.difference.n_images,
            seeds_said(c),
            _slots(c)["cell"],
        ]
        for c in family.comparisons.values()
    ]
    header = [
        *("variant", f"minus {family.reference}", "Holm-corrected interval (level)"),
        *(f"uncorrected {1 - family.alpha:.0%} interval", "Holm p", "images", "seeds", "verdict"),
    ]
    table = markdown_table(header, rows) if rows else None
    return paragraphs(family_said(family), table, collapsed_said(family.collapsed))
