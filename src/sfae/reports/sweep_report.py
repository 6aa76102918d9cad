"""One sweep's report from its findings alone; a partial sweep's says what is missing."""

import math

import numpy as np

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
STUDY_ROWS = (
    "The rows at the post's settings are the study's runs; the study compares them with pure "
    "in [study.md](study.md)."
)


def _strengths(values) -> str:
    return ", ".join(f"{x:g}" for x in values) or "none"


def _selection_section(found: Findings) -> list[str]:
    sweep = found.state.sweep
    seeds, final, train = sweep.settings.seeds, sweep.final_seeds, sweep.config.data.train_count
    said = (
        f"Selection runs hold out {sweep.settings.val_count} of the {train} training images as "
        f"validation images and train with the selection seeds {join(map(str, seeds))} (selection "
        f"seeds: {len(seeds)}). Each strength is selected by its mean validation IoU over those "
        "seeds; the test split is never looked at. Where the best lay at an end of the grid, the "
        "grid grew one step beyond it; bracketed: the best lies inside the grid. The final runs "
        f"train on all {train} training images with the final seeds {join(map(str, final))} "
        f"(final seeds: {len(final)}) and are scored on the test split."
    )
    if extra := sweep.settings.plateau_seeds:
        said += (
            f" Once a grid's selection was fixed, the plateau seeds {join(map(str, extra))} ran at "
            "its every point: they measure how much seeds move the curve (the plateau below, over "
            "all seeds once all ran; the table's mean and spread stay the selection seeds') and "
            "never move the selection."
        )
    overview = [
        [f"`{s.variant}`", f"`{s.key}`", _strengths(s.points), _strengths(s.added)]
        + ["yes" if s.bracketed else "no", "pending" if s.selected is None else f"{s.selected:g}"]
        for s in found.state.selections
    ]
    header = ["regulariser", "strength", "grid run", "added", "bracketed", "selected"]
    lines = ["## How the sweep was run", "", said, "", *markdown_table(header, overview)]
    for s in found.state.selections:
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
        lines += ["", f"### {s.variant}", "", f"{s.post[1]}: {s.post[0]:g}.", ""]
        lines += markdown_table(["strength", "validation IoU", "per seed", ""], rows)
    return lines


def _plateau_section(found: Findings) -> list[str]:
    rows = []
    for s in found.state.selections:
        if (flat := s.plateau) is None:
            rows.append([f"`{s.variant}`", "pending", "", "", "", ""])
            continue
        picks = ", ".join(f"seed {pick.seed}: {pick.strength:g}" for pick in flat.seed_picks)
        row = [f"`{s.variant}`", f"{flat.best:g}", _strengths(flat.plateau)]
        if flat.se is None:
            rows.append([*row, "not estimable", picks, "not estimable"])
        else:
            rows.append([*row, f"{flat.se:.3f}", picks, _strengths(flat.collapsed)])
    header = ["regulariser", "selected", "plateau (within 1 SE)", "SE", "each seed's pick"]
    header.append("collapses at (over 3 SE below)")
    lines = ["## How much: the plateaus", "", PLATEAUS, "", *markdown_table(header, rows), ""]
    return lines + [f"- {range_said(s)}." for s in found.state.selections]


def _final_section(found: Findings) -> list[str]:
    sweep = found.state.sweep
    post = " beside the post's settings" if sweep.arch == "paper" else ""
    lines = [f"## Final runs: tuned strengths{post}", "", *results_table(found.table, found.kind)]
    if not found.table:
        return lines
    finals = [gap for gap in found.state.gaps if gap.step == "final"]
    frames = {
        row.variant: unlabeled
        for row in found.compared
        if (sparse := sweep.config.variants[row.variant].sparse)
        and (unlabeled := sparse.unlabeled_frames)
    }
    counts = ", ".join(f"{count} for {variant}" for variant, count in frames.items())
    mall = (
        f"The training of {join(frames)} also sees unlabeled Mall frames ({counts}): they come "
        f"from the camera of the scored ones (the first {sweep.config.mall.frames} frames), so the "
        "Mall scores above are no clean measure of how far a network generalises; the Penn-Fudan "
        "test IoU is."
    )
    return paragraphs(
        lines,
        f"Pending: {gaps_said(finals)}." if finals else None,
        mall if frames else None,
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
        lines += [*family_table(found.head_family), ""]
        lines.append(
            "The sparse variant and the L1/L2 one are each the better of their kind by mean "
            f"validation IoU at the selected strength ({sparse.variant} {sparse.best_mean:.3f}, "
            f"{penalty.variant} {penalty.best_mean:.3f}), never by test IoU."
        )
    return lines


def _candidate_section(found: Findings) -> list[str]:
    state = found.state
    if not state.sweep.settings.candidates:
        return []
    lines = ["## Beyond the regularisers: other settings of the leading variant", ""]
    if state.leader is None:
        return lines + [
            "The candidates run once every strength is selected and the references are measured."
        ]
    rows = []
    for c in state.candidates:
        timed = [r.train_seconds for r in c.runs.records if r.train_seconds is not None]
        minutes = "not known" if c.runs.records else "no run"
        minutes = f"{np.mean(timed) / 60:.1f}" if timed else minutes
        mean = "no run" if c.runs.mean is None else f"{c.runs.mean:.3f}"
        rows.append([c.label, mean, minutes, "**best**" if c is state.best else ""])
    lines.append(
        f"{state.leader.label} has the best validation IoU of all tuned variants and references. "
        "Each setting below changes it and trains on the same split and selection seeds "
        f"(selection seeds: {len(state.sweep.settings.seeds)}); the best by validation IoU runs "
        "the final seeds (the variant as swept already has them). Training minutes are the "
        "records' own."
    )
    lines += ["", *markdown_table(["setting", "validation IoU", "training min", ""], rows)]
    return [*lines, "", candidate_verdict(found)]


def _runs_section(found: Findings, chart: str) -> list[str]:
    state = found.state
    used = [*state.selection_runs, *state.final_runs]
    study = " (those at the post's settings are the study's)" if found.in_study else ""
    lines = [
        "## The runs",
        "",
        f"- Selection runs: {len(state.selection_runs)}; final runs: {len(state.final_runs)}"
        f"{study}; training: {duration(sum(r.train_seconds or 0.0 for r in used))} in all, on "
        f"{found.kind}.",
    ]
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
