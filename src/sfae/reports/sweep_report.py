"""One sweep's report (reports/sweep.md, sweep_unet.md, sweep_<name>.md) from its findings
alone: the answer, the selection and how sure, the final runs, the verdicts, the candidates,
the runs. A partial sweep still gives a report, which says what is missing."""

from __future__ import annotations

import math

import numpy as np

from sfae.experiments.records import RunRecord
from sfae.experiments.sweep_state import Selection
from sfae.reports.markdown import duration, join, markdown_table, paragraphs, tally
from sfae.reports.sweep_findings import Findings, answer, candidate_verdict
from sfae.reports.wording import (
    METHODS,
    family_table,
    gaps_said,
    left_out_said,
    range_said,
    results_table,
)

SELECTION = (
    "Selection runs hold out {val} of the {train} training images as validation images and "
    "train with the selection seeds {seeds} (selection seeds: {n}). Each strength is selected "
    "by its mean validation IoU over those seeds; the test split is never looked at. Where the "
    "best lay at an end of the grid, the grid grew one step beyond it; bracketed: the best "
    "lies inside the grid. The final runs train on all {train} training images with the final "
    "seeds {final} (final seeds: {n_final}) and are scored on the test split."
)
PLATEAU_SEEDS = (
    " Once a grid's selection was fixed, the plateau seeds {seeds} ran at its every point: "
    "they measure how much seeds move the curve (the plateau below, over all seeds once all "
    "ran; the table's mean and spread stay the selection seeds') and never move the selection."
)
PLATEAUS = (
    "The SE of a strength's mean is the seed spread pooled over the strengths (each one's sample "
    "variance over its seeds, selection and plateau seeds alike, weighted by its degrees of "
    "freedom) over the seeds at the best strength, square-rooted: one strength has too few seeds "
    "to say how much seeds move a mean, and training noise is about the same along the curve. The "
    "plateau holds the strengths whose mean validation IoU lies within one SE of the best's (what "
    "a seed's luck could have made best); a strength collapses where its mean lies more than 3 SE "
    "below. With one selection seed and no plateau seeds the SE is not estimable, and the selected "
    "value stands alone."
)
CANDIDATES = (
    "{leader.label} has the best validation IoU of all tuned variants and references. Each setting "
    "below changes it and trains on the same split and selection seeds (selection seeds: {n}); "
    "the best by validation IoU runs the final seeds (the variant as swept already has them). "
    "Training minutes are the records' own."
)
HEAD = (
    "The sparse variant and the L1/L2 one are each the better of their kind by mean "
    "validation IoU at the selected strength ({sparse.variant} {sparse.best_mean:.3f}, "
    "{penalty.variant} {penalty.best_mean:.3f}), never by test IoU."
)
MALL_FRAMES = (
    "The training of {variants} also sees unlabeled Mall frames ({frames}): they come from the "
    "camera of the scored ones (the first {scored} frames), so the Mall scores above are no "
    "clean measure of how far a network generalises; the Penn-Fudan test IoU is."
)
STUDY_ROWS = (
    "The rows at the post's settings are the study's runs; the study compares them with pure "
    "in [study.md](study.md)."
)
RUNS = (
    "- Selection runs: {selection}; final runs: {final}{study}; training: {hours} in all, on "
    "{kind}."
)


def _strengths(values) -> str:
    return ", ".join(f"{x:g}" for x in values) or "none"


def _selection_section(found: Findings) -> list[str]:
    sweep = found.state.sweep
    seeds, final = sweep.settings.seeds, sweep.final_seeds
    slots = {"val": sweep.settings.val_count, "train": sweep.config.data.train_count}
    slots |= {"seeds": join(map(str, seeds)), "n": len(seeds)}
    slots |= {"final": join(map(str, final)), "n_final": len(final)}
    overview = [
        [
            f"`{s.variant}`",
            f"`{s.key}`",
            _strengths(s.points),
            _strengths(s.added),
            "yes" if s.bracketed else "no",
            "pending" if s.selected is None else f"{s.selected:g}",
        ]
        for s in found.state.selections
    ]
    header = ["regulariser", "strength", "grid run", "added", "bracketed", "selected"]
    said = SELECTION.format(**slots)
    if extra := sweep.settings.plateau_seeds:
        said += PLATEAU_SEEDS.format(seeds=join(map(str, extra)))
    lines = ["## How the sweep was run", "", said, "", *markdown_table(header, overview)]
    for s in found.state.selections:
        lines += ["", f"### {s.variant}", "", f"{s.post[1]}: {s.post[0]:g}.", ""]
        lines += markdown_table(["strength", "validation IoU", "per seed", ""], _curve_rows(s))
    return lines


def _curve_rows(s: Selection) -> list[list[str]]:
    rows = []
    for strength, runs in s.points.items():
        marks = ["**selected**"] * (strength == s.selected)
        marks += [s.post[1]] * math.isclose(strength, s.post[0])
        plateau_seeds = s.spread[strength].validation if strength in s.spread else {}
        per_seed = ", ".join(
            [f"seed {seed}: {v:.3f}" for seed, v in runs.validation.items()]
            + [f"seed {seed} (plateau): {v:.3f}" for seed, v in plateau_seeds.items()]
        )
        mean = "no run" if runs.mean is None else f"{runs.mean:.3f} ± {runs.std:.3f}"
        rows.append([f"{strength:g}", mean, per_seed or "no run", ", ".join(marks)])
    return rows


def _plateau_section(found: Findings) -> list[str]:
    rows = []
    for s in found.state.selections:
        flat = s.plateau
        if flat is None:
            rows.append([f"`{s.variant}`", "pending", "", "", "", ""])
            continue
        picks = ", ".join(f"seed {pick.seed}: {pick.strength:g}" for pick in flat.seed_picks)
        rows.append(
            [
                f"`{s.variant}`",
                f"{flat.best:g}",
                _strengths(flat.plateau),
                "not estimable" if flat.se is None else f"{flat.se:.3f}",
                picks,
                _strengths(flat.collapsed) if flat.se is not None else "not estimable",
            ]
        )
    header = ["regulariser", "selected", "plateau (within 1 SE)", "SE", "each seed's pick"]
    header.append("collapses at (over 3 SE below)")
    lines = ["## How much: the plateaus", "", PLATEAUS, "", *markdown_table(header, rows), ""]
    return lines + [f"- {range_said(s)}." for s in found.state.selections]


def _final_section(found: Findings) -> list[str]:
    state = found.state
    sweep = state.sweep
    post = " beside the post's settings" if sweep.arch == "paper" else ""
    lines = [f"## Final runs: tuned strengths{post}", "", *results_table(found.table, found.kind)]
    if not found.table:
        return lines
    finals = [gap for gap in state.gaps if gap.step == "final"]
    frames = {
        row.variant: unlabeled
        for row in found.compared
        if (sparse := sweep.config.variants[row.variant].sparse)
        and (unlabeled := sparse.unlabeled_frames)
    }
    counts = ", ".join(f"{count} for {variant}" for variant, count in frames.items())
    slots = {"variants": join(frames), "frames": counts, "scored": sweep.config.mall.frames}
    return paragraphs(
        lines,
        f"Pending: {gaps_said(finals)}." if finals else None,
        MALL_FRAMES.format(**slots) if frames else None,
        STUDY_ROWS if found.in_study else None,
    )


def _verdict_sections(found: Findings) -> list[str]:
    if not found.families:
        return []
    lines = ["## Verdicts", "", METHODS.format(alpha=found.families[0].alpha)]
    for family in found.families:
        lines += ["", f"### Compared with {family.reference}, image by image", ""]
        lines += family_table(family)
    if found.head is not None:
        sparse, penalty = found.head_pair
        lines += ["", "### Sparse filtering against L1/L2, each tuned", ""]
        lines += [*family_table(found.head_family), "", HEAD.format(sparse=sparse, penalty=penalty)]
    return lines


def _minutes(runs) -> str:
    timed = [r.train_seconds for r in runs if r.train_seconds is not None]
    return f"{np.mean(timed) / 60:.1f}" if timed else "no run" if not runs else "not known"


def _candidate_section(found: Findings) -> list[str]:
    state = found.state
    if not state.sweep.settings.candidates:
        return []
    lines = ["## Beyond the regularisers: other settings of the leading variant", ""]
    if state.leader is None:
        return lines + [
            "The candidates run once every strength is selected and the references are measured."
        ]
    rows = [
        [
            c.label,
            "no run" if c.runs.mean is None else f"{c.runs.mean:.3f}",
            _minutes(c.runs.records),
            "**best**" if c is state.best else "",
        ]
        for c in state.candidates
    ]
    lines += [CANDIDATES.format(leader=state.leader, n=len(state.sweep.settings.seeds)), ""]
    lines += markdown_table(["setting", "validation IoU", "training min", ""], rows)
    return [*lines, "", candidate_verdict(found)]


def _runs_section(found: Findings, chart: str) -> list[str]:
    state = found.state
    used: list[RunRecord] = [*state.selection_runs, *state.final_runs]
    slots = {
        "selection": len(state.selection_runs),
        "final": len(state.final_runs),
        "study": " (those at the post's settings are the study's)" if found.in_study else "",
        "hours": duration(sum(r.train_seconds or 0.0 for r in used)),
        "kind": found.kind,
    }
    lines = ["## The runs", "", RUNS.format(**slots)]
    if used:
        lines.append(f"- Runs per commit: {tally((r.commit for r in used), code=True)}.")
        lines.append(f"- Runs per machine: {tally(r.machine for r in used)}.")
    if left := left_out_said(state.left_out, found.kind):
        lines.append(f"- {left}")
    post = "; the study's post settings in detail: [study.md](study.md)" if found.in_study else ""
    return [*lines, "", f"Pictures: [{chart}]({chart}){post}."]


def render(found: Findings) -> str:
    """The report's markdown."""
    sweep = found.state.sweep
    chart = f"{sweep.stem}_selection.png"
    network = "" if sweep.name == "paper" else f" ({sweep.network_name})"
    if not sweep.is_network:
        network = f" {sweep.name} ({sweep.network_name})"
    lines = paragraphs(
        f"# Every regulariser at its best strength: the sweep{network}",
        answer(found),
        _selection_section(found),
        _plateau_section(found),
        f"![Validation IoU against strength, per regulariser]({chart})",
        _final_section(found),
        _verdict_sections(found),
        _candidate_section(found),
        _runs_section(found, chart),
    )
    return "\n".join(lines) + "\n"
