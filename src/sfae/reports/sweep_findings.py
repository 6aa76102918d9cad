"""What a sweep's state says, in numbers: the final table, one Holm family per variant it is
compared with, the tuned sparse variant against the tuned L1/L2 one, the best candidate against
the leader as swept. Read off the state (sfae.experiments.sweep_state) alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfae.experiments.sweep import PENALTIES, SPARSE
from sfae.experiments.sweep_state import FinalRow, Selection, SweepState
from sfae.reports.comparisons import Comparison, Family, compare_family, one_kind
from sfae.reports.intervals import BETTER
from sfae.reports.statistics import Summary, summary_table

GOAL_IOU = 0.70  # the test IoU the best U-Net setting is to reach (issue #13)


@dataclass(frozen=True)
class Findings:
    state: SweepState
    table: Summary  # row label -> metric -> (mean, std, seeds), rows with final runs
    families: tuple[Family, ...]  # one per variant of compare_with; the first: the answer's
    head_family: Family | None  # the tuned sparse variant against the tuned L1/L2 one
    head_pair: tuple[Selection, Selection] | None  # (sparse, penalty) behind `head`
    candidate: Comparison | None  # the best candidate minus the leader as swept
    candidate_table: Summary  # the best candidate's final runs

    @property
    def head(self) -> Comparison | None:
        """The tuned sparse variant minus the tuned L1/L2 one, once both have final runs."""
        family = self.head_family
        return next(iter(family.comparisons.values()), None) if family else None

    @property
    def kind(self) -> str:
        """The machine kind of every run it reads: the sweep's, else its runs' one kind."""
        runs = [*self.state.selection_runs, *self.state.final_runs]
        return self.state.sweep.kind or (one_kind({"runs": runs}) if runs else "no machine yet")

    @property
    def compared(self) -> tuple[FinalRow, ...]:
        """The sweep's own rows (tuned variants, references), the ones its families hold."""
        return tuple(row for row in self.state.rows if row.planned)

    def variant(self, label: str) -> str:
        return next(row.variant for row in self.state.rows if row.label == label)

    def better(self) -> tuple[str, ...]:
        """The variants better than the first family's reference, by name."""
        if not self.families:
            return ()
        return tuple(sorted(self.variant(c.name) for c in self.families[0].with_verdict(BETTER)))

    def recommended(self) -> str | None:
        """Of the rows better than the first family's reference, the largest mean gain."""
        found = self.families[0].with_verdict(BETTER) if self.families else []
        return max(found, key=lambda c: c.mean).name if found else None

    def recommended_variant(self) -> str | None:
        label = self.recommended()
        return None if label is None else self.variant(label)

    def verdict(self) -> tuple:
        """The answer in a comparable form: who beats the reference, and sparse vs L1/L2."""
        return self.better(), self.head.verdict if self.head else None


def best_by_validation(selections, variants) -> Selection | None:
    """Of `variants`, the selected one with the best mean validation IoU (never test IoU)."""
    done = [s for s in selections if s.variant in variants and s.selected is not None]
    return max(done, key=lambda s: s.best_mean, default=None)


def _head(state: SweepState, groups: dict) -> tuple:
    sparse = best_by_validation(state.selections, SPARSE)
    penalty = best_by_validation(state.selections, PENALTIES)
    if sparse is None or penalty is None:
        return None, None
    labels = [state.row(sparse.variant).label, state.row(penalty.variant).label]
    family = compare_family({label: groups[label] for label in labels}, labels[1])
    return family, (sparse, penalty)


def _candidate(state: SweepState) -> tuple:
    finals = state.best_finals
    if finals is None:
        return None, {}
    table = summary_table({finals.label: finals.runs.records}) if finals.runs.records else {}
    swept = state.row(state.leader.variant)
    if not finals.runs.complete or swept is None or not swept.runs.complete:
        return None, table
    swept_label = f"{state.leader.label} as swept"
    groups = {finals.label: finals.runs.records, swept_label: swept.runs.records}
    return compare_family(groups, swept_label).comparisons.get(finals.label), table


def findings(state: SweepState) -> Findings:
    groups = {row.label: row.runs.records for row in state.rows if row.planned}
    table = summary_table({row.label: row.runs.records for row in state.rows if row.runs.records})
    families = tuple(
        compare_family(groups, row.label)
        for variant in state.sweep.compare_with
        if (row := state.row(variant)) is not None
    )
    head, pair = _head(state, groups)
    candidate, candidate_table = _candidate(state)
    return Findings(state, table, families, head, pair, candidate, candidate_table)
