"""Sections that the study's and the sweeps' reports share: the table of scores over seeds,
a family of comparisons with its methods paragraph, the collapsed runs."""

from __future__ import annotations

from sfae.reports.comparisons import Family
from sfae.reports.markdown import markdown_table
from sfae.reports.statistics import METRIC_LABELS, SUMMARY_METRICS, Summary
from sfae.reports.wording import (
    METHODS,
    collapsed_said,
    family_said,
    seeds_said,
    verdict_cell,
)

SPREAD = "Mean ± sample standard deviation over the seeds (± 0.000 when there is one seed)."


def results_table(table: Summary, kind: str | None) -> list[str]:
    """Every row's scores over its seeds, with the machine kind its runs trained on."""
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


def methods(alpha: float) -> list[str]:
    return [METHODS.format(alpha=alpha)]


def family_table(family: Family) -> list[str]:
    """A family's comparisons: the difference, its Holm-corrected and uncorrected intervals,
    the seeds it paired, its verdict; then the family in a sentence, and its collapsed runs."""
    rows = [
        [
            f"`{c.name}`",
            f"{c.mean:+.3f}",
            f"{c.holm.low:+.3f} to {c.holm.high:+.3f} ({c.holm.level:.1%})",
            f"{c.difference.low:+.3f} to {c.difference.high:+.3f}",
            f"{c.holm.adjusted_p:.3g}",
            c.difference.n_images,
            seeds_said(c),
            verdict_cell(c),
        ]
        for c in family.comparisons.values()
    ]
    header = [
        "variant",
        f"minus {family.reference}",
        "Holm-corrected interval (level)",
        f"uncorrected {1 - family.alpha:.0%} interval",
        "Holm p",
        "images",
        "seeds",
        "verdict",
    ]
    lines = [family_said(family), ""]
    if rows:
        lines += [*markdown_table(header, rows), ""]
    return [*lines, collapsed_said(family.collapsed)]
