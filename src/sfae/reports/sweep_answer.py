"""A sweep's answer in one paragraph (its report's first, the README's), and the candidates'
verdict: templates with slots over the findings (sfae.reports.sweep_findings)."""

from __future__ import annotations

from sfae.reports.sweep_findings import GOAL_IOU, Findings
from sfae.reports.wording import family_said, gaps_said, range_said, reading

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
        runs = finals.runs
        recorded, planned = len(runs.records), len(runs.specs)
        return CANDIDATE_PENDING.format(label=label, recorded=recorded, planned=planned)
    table = found.candidate_table if best.overrides else found.table
    mean, std, seeds = table[finals.label]["test_iou"]
    slots = {"label": label, "mean": mean, "std": std, "n": seeds, "goal": GOAL_IOU}
    said = CANDIDATE_GOAL.format(**slots, reached=REACHED[mean >= GOAL_IOU])
    if found.candidate is not None:
        said += " " + reading(found.candidate)
    return said
