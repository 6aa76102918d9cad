"""What a sweep's state says, in numbers (the final table, one Holm family per reference, the
tuned sparse variant against the tuned L1/L2 one, the best candidate against the leader as
swept), then in words: the sweep's answer in one paragraph, and the candidates' verdict."""

from __future__ import annotations

from dataclasses import dataclass

from sfae.experiments.sweep import PENALTIES, SPARSE
from sfae.experiments.sweep_state import FinalRow, Selection, SweepState
from sfae.reports.intervals import BETTER
from sfae.reports.statistics import (
    Comparison,
    Family,
    Summary,
    compare_family,
    one_kind,
    summary_table,
)
from sfae.reports.wording import family_said, gaps_said, range_said, reading

GOAL_IOU = 0.70  # the test IoU the best U-Net setting is to reach (issue #13)


@dataclass(frozen=True)
class Findings:
    state: SweepState
    table: Summary  # row label -> metric -> (mean, std, seeds), rows with final runs
    families: tuple[Family, ...]  # one per variant of compare_with; the first: the answer's
    head_family: Family | None  # the tuned sparse variant against the tuned L1/L2 one
    head_pair: tuple[Selection, Selection] | None  # (sparse, penalty) behind `head`
    candidate: Comparison | None  # the best candidate minus the leader as swept

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
    def in_study(self) -> bool:
        """Whether some rows are the study's runs (at the post's settings)."""
        return any(not row.planned for row in self.state.rows)

    @property
    def compared(self) -> tuple[FinalRow, ...]:
        """The sweep's own rows (tuned variants, references), the ones its families hold."""
        return tuple(row for row in self.state.rows if row.planned)

    def variant(self, label: str) -> str:
        return next(row.variant for row in self.state.rows if row.label == label)

    def better(self) -> list[Comparison]:
        """The rows better than the first family's reference."""
        return self.families[0].by_verdict.get(BETTER, []) if self.families else []

    def recommended(self) -> str | None:
        """Of the rows better than the first family's reference, the largest mean gain."""
        return max(self.better(), key=lambda c: c.mean).name if self.better() else None

    def verdict(self) -> tuple:
        """The answer in a comparable form: who beats the reference, and sparse vs L1/L2."""
        better = tuple(sorted(self.variant(c.name) for c in self.better()))
        return better, self.head.verdict if self.head else None


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


def _candidate(state: SweepState) -> Comparison | None:
    finals = state.best_finals
    if finals is None:
        return None
    swept = state.row(state.leader.variant)
    if not finals.runs.complete or swept is None or not swept.runs.complete:
        return None
    swept_label = f"{state.leader.label} as swept"
    groups = {finals.label: finals.runs.records, swept_label: swept.runs.records}
    return compare_family(groups, swept_label).comparisons.get(finals.label)


def findings(state: SweepState) -> Findings:
    groups = {row.label: row.runs.records for row in state.rows if row.planned}
    table = summary_table({row.label: row.runs.records for row in state.rows if row.runs.records})
    families = tuple(
        compare_family(groups, row.label)
        for variant in state.sweep.compare_with
        if (row := state.row(variant)) is not None
    )
    head, pair = _head(state, groups)
    return Findings(state, table, families, head, pair, _candidate(state))


BEST = (
    "With {train} training images and no pretrained weights, {best} has the best mean test IoU "
    "of the tuned variants and references ({mean:.3f} ± {std:.3f}, final seeds: {n})."
)
NO_ANSWER = (
    "No regulariser has final runs at a selected strength yet, so the sweep gives no answer "
    "yet (missing: {gaps})."
)
HOW_MUCH = (
    "How much, on validation IoU (the plateau: the strengths whose mean lies within one SE of "
    "the best's): {ranges}."
)
HEAD = (
    "Sparse filtering against L1/L2, each tuned and each the better of its kind on validation: "
    "{reading}"
)
USE = "So: use {label}."
NONE_BETTER = "So on this evidence nothing here is worth choosing over {reference}."
PROVISIONAL = "This answer is provisional: still missing: {gaps}."
CANDIDATE_UNKNOWN = "The best setting is not known yet: some candidates have no validation run."
CANDIDATE_PENDING = (
    "The best setting on validation is {label}; {recorded} of its {planned} final runs are "
    "recorded."
)
CANDIDATE_GOAL = (
    "The best setting on validation, {label}, gives {mean:.3f} ± {std:.3f} test IoU (final "
    "seeds: {n}): its mean {reached} the goal of {goal:.2f}."
)
REACHED = {True: "reaches", False: "falls short of"}


def answer(found: Findings) -> str:
    """The one paragraph: which regulariser, how much, and how sure."""
    state = found.state
    gaps = gaps_said(state.gaps)
    grids = state.sweep.settings.grids
    tuned = [row for row in found.compared if row.label in found.table]
    if not any(row.variant in grids for row in tuned):  # references alone answer nothing
        return NO_ANSWER.format(gaps=gaps)
    best = max(tuned, key=lambda row: found.table[row.label]["test_iou"][0])
    mean, std, seeds = found.table[best.label]["test_iou"]
    slots = {"train": state.sweep.config.data.train_count, "best": best.label}
    said = [BEST.format(**slots, mean=mean, std=std, n=seeds)]
    said += [family_said(family) for family in found.families]
    said.append(HOW_MUCH.format(ranges="; ".join(range_said(s) for s in state.selections)))
    if found.head is not None:
        said.append(HEAD.format(reading=reading(found.head)))
    if found.families and found.families[0].comparisons:
        use = found.recommended()
        reference = found.families[0].reference
        said.append(USE.format(label=use) if use else NONE_BETTER.format(reference=reference))
    if state.gaps:
        said.append(PROVISIONAL.format(gaps=gaps))
    return " ".join(said)


def candidate_verdict(found: Findings) -> str:
    """The best setting's test IoU against the goal and against the leader as swept (a
    family of one), or what is missing."""
    state = found.state
    best = state.best
    if best is None:
        return CANDIDATE_UNKNOWN
    finals = state.best_finals if best.overrides else state.row(state.leader.variant)
    label = finals.label if best.overrides else f"{state.leader.label} as swept"
    if not finals.runs.complete:
        recorded, planned = len(finals.runs.records), len(finals.runs.specs)
        return CANDIDATE_PENDING.format(label=label, recorded=recorded, planned=planned)
    # The best candidate's finals are no row of the final table: summarised here.
    table = summary_table({finals.label: finals.runs.records}) if best.overrides else found.table
    mean, std, seeds = table[finals.label]["test_iou"]
    slots = {"label": label, "mean": mean, "std": std, "n": seeds, "goal": GOAL_IOU}
    said = CANDIDATE_GOAL.format(**slots, reached=REACHED[mean >= GOAL_IOU])
    if found.candidate is not None:
        said += " " + reading(found.candidate)
    return said
