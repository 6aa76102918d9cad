"""What a sweep's state says, in numbers (tables, Holm families) and in words (its answer)."""

from dataclasses import dataclass

from sfae.experiments.sweep import PENALTIES, SPARSE
from sfae.experiments.sweep_state import FinalRow, Selection, SweepState
from sfae.reports.intervals import BETTER
from sfae.reports.statistics import Comparison, Family, compare_family, one_kind, summary_table
from sfae.reports.wording import family_said, gaps_said, range_said, reading

GOAL_IOU = 0.70  # the test IoU the best U-Net setting is to reach (issue #13)


@dataclass(frozen=True)
class Findings:
    state: SweepState
    table: dict  # a Summary: row label -> metric -> (mean, std, seeds), rows with final runs
    compared: tuple[FinalRow, ...]  # the sweep's own rows (tuned variants, references)
    families: tuple[Family, ...]  # one per variant of compare_with; the first: the answer's
    head_family: Family | None  # the tuned sparse variant against the tuned L1/L2 one
    head_pair: tuple[Selection, Selection] | None  # (sparse, penalty) behind `head`
    head: Comparison | None  # head_family's comparison, once both have final runs
    candidate: Comparison | None  # the best candidate minus the leader as swept
    better: list[Comparison]  # the rows better than the first family's reference
    kind: str  # the machine kind of every run it reads: the sweep's, else its runs' one kind
    in_study: bool  # whether some rows are the study's runs (at the post's settings)

    def variant(self, label: str) -> str:
        return next(row.variant for row in self.state.rows if row.label == label)

    def recommended(self) -> str | None:
        """Of the rows better than the first family's reference, the largest mean gain."""
        return max(self.better, key=lambda c: c.mean).name if self.better else None

    def verdict(self) -> tuple:
        """The answer in a comparable form: who beats the reference, and sparse vs L1/L2."""
        better = tuple(sorted(self.variant(c.name) for c in self.better))
        return better, self.head.verdict if self.head else None


def best_by_validation(selections, variants) -> Selection | None:
    """Of `variants`, the selected one with the best mean validation IoU (never test IoU)."""
    done = [s for s in selections if s.variant in variants and s.selected is not None]
    return max(done, key=lambda s: s.best_mean, default=None)


def findings(state: SweepState) -> Findings:
    compared = tuple(row for row in state.rows if row.planned)
    groups = {row.label: row.runs.records for row in compared}
    table = summary_table({row.label: row.runs.records for row in state.rows if row.runs.records})
    families = tuple(
        compare_family(groups, row.label)
        for variant in state.sweep.compare_with
        if (row := state.row(variant)) is not None
    )
    pair = tuple(best_by_validation(state.selections, of) for of in (SPARSE, PENALTIES))
    labels = None if None in pair else [state.row(selection.variant).label for selection in pair]
    head_family = labels and compare_family({label: groups[label] for label in labels}, labels[1])
    head = next(iter(head_family.comparisons.values()), None) if head_family else None
    better = families[0].by_verdict.get(BETTER, []) if families else []
    finals, swept = state.best_finals, state.leader and state.row(state.leader.variant)
    candidate = None
    if finals is not None and finals.runs.complete and swept is not None and swept.runs.complete:
        label = f"{state.leader.label} as swept"
        sides = {finals.label: finals.runs.records, label: swept.runs.records}
        candidate = compare_family(sides, label).comparisons.get(finals.label)
    runs = [*state.selection_runs, *state.final_runs]
    kind = state.sweep.kind or (one_kind({"runs": runs}) if runs else "no machine yet")
    return Findings(
        state=state,
        table=table,
        compared=compared,
        families=families,
        head_family=head_family,
        head_pair=labels and pair,
        head=head,
        candidate=candidate,
        better=better,
        kind=kind,
        in_study=len(compared) < len(state.rows),
    )


def answer(found: Findings) -> str:
    """The one paragraph: which regulariser, how much, and how sure."""
    state = found.state
    gaps = gaps_said(state.gaps)
    tuned = [row for row in found.compared if row.label in found.table]
    if not any(row.variant in state.sweep.settings.grids for row in tuned):  # references alone
        return (
            "No regulariser has final runs at a selected strength yet, so the sweep gives no "
            f"answer yet (missing: {gaps})."
        )
    best = max(tuned, key=lambda row: found.table[row.label]["test_iou"][0])
    mean, std, seeds = found.table[best.label]["test_iou"]
    said = [
        f"With {state.sweep.config.data.train_count} training images and no pretrained weights, "
        f"{best.label} has the best mean test IoU of the tuned variants and references "
        f"({mean:.3f} ± {std:.3f}, final seeds: {seeds}).",
        *map(family_said, found.families),
        "How much, on validation IoU (the plateau: the strengths whose mean lies within one SE of "
        f"the best's): {'; '.join(range_said(s) for s in state.selections)}.",
    ]
    if found.head is not None:
        said.append(
            "Sparse filtering against L1/L2, each tuned and each the better of its kind on "
            f"validation: {reading(found.head)}"
        )
    if found.families and found.families[0].comparisons:
        use, reference = found.recommended(), found.families[0].reference
        nothing = f"So on this evidence nothing here is worth choosing over {reference}."
        said.append(f"So: use {use}." if use else nothing)
    if state.gaps:
        said.append(f"This answer is provisional: still missing: {gaps}.")
    return " ".join(said)


def candidate_verdict(found: Findings) -> str:
    """The best setting's test IoU against the goal and the leader as swept, or what is missing."""
    state = found.state
    if state.best is None:
        return "The best setting is not known yet: some candidates have no validation run."
    overrides = bool(state.best.overrides)
    finals = state.best_finals if overrides else state.row(state.leader.variant)
    label = finals.label if overrides else f"{state.leader.label} as swept"
    if not finals.runs.complete:
        return (
            f"The best setting on validation is {label}; {len(finals.runs.records)} of its "
            f"{len(finals.runs.specs)} final runs are recorded."
        )
    # The best candidate's finals are no row of the final table: summarised here.
    table = summary_table({finals.label: finals.runs.records}) if overrides else found.table
    mean, std, seeds = table[finals.label]["test_iou"]
    said = (
        f"The best setting on validation, {label}, gives {mean:.3f} ± {std:.3f} test IoU (final "
        f"seeds: {seeds}): its mean {'reaches' if mean >= GOAL_IOU else 'falls short of'} the "
        f"goal of {GOAL_IOU:.2f}."
    )
    return said + (f" {reading(found.candidate)}" if found.candidate is not None else "")
