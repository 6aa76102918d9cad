"""The sweep reports, from the run records: reports/sweep.md and sweep_selection.png for the
paper net, sweep_unet.md and sweep_unet_selection.png for the U-Net, and the README's
results: the paper net's answer and one table of both networks.

Strengths are selected on validation IoU alone; test IoU is read only from the final runs
(all training images, the final seeds), compared with pure image by image. Every number
and every verdict in words is computed from the records, and a partial sweep still gives a
report, which then says what is missing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sfae.atomic import staged_outputs
from sfae.config import POST_VARIANTS
from sfae.errors import SfaeError
from sfae.experiments.records import RunRecord, flatten
from sfae.experiments.study import study_plan, study_records
from sfae.experiments.sweep import Selection, Sweep, val_iou
from sfae.reports.figures import StrengthPanel, write_selection_chart
from sfae.reports.markdown import duration, join, markdown_table, replace_block, tally
from sfae.reports.statistics import NOT_DISTINGUISHABLE, compare, summary_table
from sfae.reports.study_report import comparison_section, results_section

NETWORKS = {"paper": "paper net", "unet": "U-Net"}
REFERENCE = "pure"
PENALTIES, SPARSE = ("l1", "l2"), ("sparse_softabs", "sparse_elu")
GOAL_IOU = 0.70  # the test IoU the best U-Net setting is to reach (issue #13)
RELATION = {
    "better": "better than",
    "worse": "worse than",
    NOT_DISTINGUISHABLE: "not distinguishable from",
}


def post_mark(sweep: Sweep, variant: str) -> tuple[float, str]:
    """The post's own strength of a variant; one the post lacks (dropout) has its default."""
    value = float(flatten(sweep.params)[sweep.key(variant)])
    return value, "post" if variant in POST_VARIANTS else "default"


def best_by_validation(selections: list[Selection], variants) -> Selection | None:
    """Of `variants`, the selected one with the best mean validation IoU (never test IoU)."""
    done = [s for s in selections if s.variant in variants and s.selected is not None]
    return max(done, key=lambda s: s.curve[s.selected][0], default=None)


def across_seeds(comparison: dict) -> str:
    """The verdict of the interval that resamples the seeds as well as the images."""
    if comparison["seeds_low"] > 0:
        return "better"
    return "worse" if comparison["seeds_high"] < 0 else NOT_DISTINGUISHABLE


def report_names(sweep: Sweep) -> tuple[str, str]:
    """(markdown, chart) file names of a network's sweep report."""
    stem = "sweep" if sweep.arch == "paper" else f"sweep_{sweep.arch}"
    return f"{stem}.md", f"{stem}_selection.png"


def final_rows(sweep: Sweep, records: list[RunRecord], selections: list[Selection]) -> list:
    """(variant, label, runs, tuned) rows: each variant at its selected strength (references
    by name) and, where those are other runs, the study's runs at the post's settings (the
    study trained the paper net only)."""
    finals = sweep.final_records(records)
    study = study_records(records, study_plan(sweep.config), sweep.params, sweep.kind)
    selected = {s.variant: s.selected for s in selections}
    rows = []
    for variant in sweep.config.variants:
        runs, post = finals.get(variant, []), None
        in_study = sweep.arch == "paper" and variant in POST_VARIANTS
        if in_study := in_study and variant not in sweep.settings.references:
            post = post_mark(sweep, variant)[0] if sweep.key(variant) else None
            post_label = variant if post is None else f"{variant} @ {post:g} (post)"
        if variant in selected:
            x = selected[variant]
            if x is not None and post is not None and math.isclose(x, post):
                rows.append((variant, post_label, runs, True))  # the same runs: one row
                continue
            label = f"{variant} @ {x:g}" if x is not None else f"{variant} (not selected)"
            rows.append((variant, label, runs, True))
        elif variant in sweep.settings.references:
            rows.append((variant, variant, runs, True))
        if in_study:
            rows.append((variant, post_label, [r for r in study if r.variant == variant], False))
    return rows


def missing_runs(sweep: Sweep, selections: list[Selection], rows: list) -> list[str]:
    seeds, expected = len(sweep.settings.seeds), len(sweep.final_seeds)
    missing = []
    for s in selections:
        if s.selected is None:
            gap = sum(seeds - s.curve.get(p, (0, 0, 0))[2] for p in s.points)
            missing.append(f"{gap} selection run{'s' * (gap != 1)} of {s.variant}, then its finals")
    unselected = {s.variant for s in selections if s.selected is None}
    missing += [
        f"{expected - len(runs)} of {expected} final runs of {label}"
        for variant, label, runs, tuned in rows
        if tuned and variant not in unselected and len(runs) < expected
    ]
    return missing


def _difference(label: str, c: dict) -> str:
    return f"{label} ({c['mean']:+.3f}, {c['seeds_low']:+.3f} to {c['seeds_high']:+.3f})"


def answer(sweep, selections, rows, table, versus_pure, head, missing) -> str:
    """The one paragraph: which regulariser, how much, and how sure."""
    tuned = [label for _, label, _, is_tuned in rows if is_tuned and label in table]
    regularisers = [
        v for v, label, _, t in rows if t and label in table and v in sweep.settings.grids
    ]
    if not regularisers:  # references alone answer nothing about regularisers
        return (
            "No regulariser has final runs at a selected strength yet, so the sweep gives no "
            f"answer yet (missing: {'; '.join(missing)})."
        )
    best = max(tuned, key=lambda label: table[label]["test_iou"][0])
    mean, spread, seeds = table[best]["test_iou"]
    said = [
        f"With {sweep.config.data.train_count} training images and no pretrained weights, "
        f"{best} has the best mean test IoU of the tuned variants and references "
        f"({mean:.3f} ± {spread:.3f} over {seeds} seeds)."
    ]
    verdicts = {label: across_seeds(versus_pure[label]) for label in tuned if label in versus_pure}
    better = [label for label, verdict in verdicts.items() if verdict == "better"]
    if not versus_pure:
        said.append(f"{REFERENCE} has no final run yet, so no variant is compared with it.")
    elif not better and "worse" not in verdicts.values():
        said.append(
            f"No tuned regulariser beats {REFERENCE}: no interval that resamples both seeds and "
            f"test images excludes zero, so none is distinguishable from no regulariser."
        )
    else:
        level = next(iter(versus_pure.values()))["level"]
        parts = [
            f"{join(_difference(label, versus_pure[label]) for label in group)} "
            f"{'is' if len(group) == 1 else 'are'} {RELATION[verdict]} {REFERENCE}"
            for verdict in RELATION
            if (group := [label for label, v in verdicts.items() if v == verdict])
        ]
        said.append(
            f"Resampling both seeds and test images ({level:.0%} intervals of the mean per-image "
            f"test IoU difference), {'; '.join(parts)}."
        )
    chosen = [f"{s.variant} {s.selected:g}" for s in selections if s.selected is not None]
    posts = [f"{s.variant} {post_mark(sweep, s.variant)[0]:g}" for s in selections]
    if chosen:
        said.append(
            f"The strengths selected on validation IoU are {join(chosen)} "
            f"(the post's values, or defaults: {join(posts)})."
        )
    if head is not None:
        (sparse, penalty), c = head
        said.append(
            f"Once both are tuned, sparse filtering ({sparse}, the better sparse variant on "
            f"validation) is {RELATION[across_seeds(c)]} L1/L2 ({penalty}, likewise): "
            f"{c['mean']:+.3f} per-image test IoU (seeds and images: {c['seeds_low']:+.3f} to "
            f"{c['seeds_high']:+.3f})."
        )
    if better:
        said.append(f"So: use {max(better, key=lambda label: versus_pure[label]['mean'])}.")
    elif versus_pure:
        said.append("So on this evidence no regulariser is worth choosing over none.")
    if missing:
        said.append(f"This answer is provisional: still missing: {'; '.join(missing)}.")
    return " ".join(said)


def final_seeds_said(sweep: Sweep) -> str:
    seeds = sweep.final_seeds
    if seeds == sweep.config.study.seeds:
        return f"the study's {len(seeds)} seeds"
    return f"{len(seeds)} seeds ({join(map(str, seeds))})"


def _selection_section(sweep: Sweep, selections: list[Selection]) -> list[str]:
    seeds = sweep.settings.seeds
    overview = [
        [
            f"`{s.variant}`",
            f"`{s.key}`",
            ", ".join(f"{p:g}" for p in s.points),
            ", ".join(f"{p:g}" for p in s.points if p not in sweep.settings.grids[s.variant])
            or "none",
            "yes" if s.bracketed else "no",
            "pending" if s.selected is None else f"{s.selected:g}",
        ]
        for s in selections
    ]
    lines = [
        "## How the sweep was run",
        "",
        f"Selection runs hold out {sweep.settings.val_count} of the "
        f"{sweep.config.data.train_count} training images as validation images and train with "
        f"{len(seeds)} selection seed{'s' * (len(seeds) != 1)} ({join(map(str, seeds))}; few, "
        "so that the sweep fits about 3 h on 2 cores). Each strength is selected by its mean "
        "validation IoU over those seeds; the test split is never looked at. Where the best "
        "lay at an end of the grid, the grid grew one step beyond it; bracketed: the best lies "
        "inside the grid. "
        f"The final runs train on all {sweep.config.data.train_count} training images with "
        f"{final_seeds_said(sweep)} and are scored on the test split.",
        "",
        *markdown_table(
            ["regulariser", "strength", "grid run", "added", "bracketed", "selected"], overview
        ),
    ]
    for s in selections:
        mark = post_mark(sweep, s.variant)
        rows = [
            [
                f"{p:g}",
                f"{s.curve[p][0]:.3f} ± {s.curve[p][1]:.3f}" if p in s.curve else "no run",
                s.curve[p][2] if p in s.curve else 0,
                ", ".join(
                    ["**selected**"] * (p == s.selected) + [mark[1]] * math.isclose(p, mark[0])
                ),
            ]
            for p in s.points
        ]
        lines += ["", f"### {s.variant}", "", f"{mark[1]}: {mark[0]:g}.", ""]
        lines += markdown_table(["strength", "validation IoU", "seeds", ""], rows)
    return lines


def _minutes(runs: list[RunRecord]) -> str:
    timed = [r.train_seconds for r in runs if r.train_seconds is not None]
    return f"{np.mean(timed) / 60:.1f}" if timed else "no run" if not runs else "not known"


def candidates_found(sweep: Sweep, records: list[RunRecord]):
    """(leader, candidates with their validation runs, best, best's final runs)."""
    leader, found = sweep.candidates(records)
    runs = {
        id(c): sweep.found(
            records,
            [sweep.candidate_spec(leader, c.overrides, s) for s in sweep.settings.seeds],
        )
        for c in found
    }
    return (
        leader,
        [(c, runs[id(c)]) for c in found],
        sweep.best_candidate(records),
        sweep.candidate_finals(records),
    )


def candidate_verdict(sweep: Sweep, records: list[RunRecord]) -> str:
    """The best setting's test IoU against the goal and against the leader as swept (the
    interval resampling seeds and images), or what is missing."""
    leader, _, best, finals = candidates_found(sweep, records)
    expected = len(sweep.final_seeds)
    if best is None:
        return "The best setting is not known yet: some candidates have no validation run."
    if len(finals) < expected:
        return (
            f"The best setting on validation is {best.label}; {len(finals)} of its {expected} "
            "final runs are recorded."
        )
    mean, spread, seeds = summary_table({best.label: finals})[best.label]["test_iou"]
    reached = "reaches" if mean >= GOAL_IOU else "falls short of"
    said = (
        f"The best setting on validation, {best.label}, gives {mean:.3f} ± {spread:.3f} test IoU "
        f"over {seeds} seeds: its mean {reached} the goal of {GOAL_IOU:.2f}."
    )
    swept = sweep.final_records(records).get(leader[0], [])
    if best.overrides and len(swept) == expected:
        c = compare({best.label: finals, "as swept": swept}, "as swept")[best.label]
        said += (
            f" It is {RELATION[across_seeds(c)]} {leader[0]} as swept: {c['mean']:+.3f} "
            f"per-image test IoU (seeds and images: {c['seeds_low']:+.3f} to "
            f"{c['seeds_high']:+.3f})."
        )
    return said


def candidate_section(sweep: Sweep, records: list[RunRecord]) -> list[str]:
    """The report's section on the candidates: their validation IoU, time, the best's test IoU."""
    if not sweep.settings.candidates:
        return []
    lines = ["", "## Beyond the regularisers: other settings of the leading variant", ""]
    leader, found, best, _ = candidates_found(sweep, records)
    if leader is None:
        return lines + [
            "The candidates run once every strength is selected and the references are measured."
        ]
    variant, strength = leader
    at = "".join(f" @ {v:g}" for v in strength.values())
    rows = [
        [
            c.label,
            "no run" if c.validation is None else f"{c.validation[0]:.3f}",
            _minutes(runs),
            "**best**" if c == best else "",
        ]
        for c, runs in found
    ]
    seeds = len(sweep.settings.seeds)
    return lines + [
        f"{variant}{at} has the best validation IoU of all tuned variants and references. Each "
        f"setting below changes it and trains on the same split and {seeds} selection "
        f"seed{'s' * (seeds != 1)}; the best by validation IoU runs the final seeds "
        "(the variant as swept already has them). Training minutes are the records' own, "
        "on whichever machine ran them (see the runs below).",
        "",
        *markdown_table(["setting", "validation IoU", "training min", ""], rows),
        "",
        candidate_verdict(sweep, records),
    ]


@dataclass
class Outcome:
    """What one network's sweep found so far: the selections, the final rows and table,
    the comparisons with pure and of the tuned sparse variant with the tuned L1/L2 one."""

    selections: list[Selection]
    rows: list
    groups: dict
    table: dict
    versus_pure: dict
    head: tuple | None  # ((sparse label, penalty label), comparison)
    pair: tuple | None  # (sparse, penalty) Selection behind `head`
    missing: list[str]

    def verdict(self) -> tuple:
        """The answer in a comparable form: the tuned variants better than pure, and
        the sparse-versus-L1/L2 verdict (both across seeds and images)."""
        better = sorted(
            variant
            for variant, label, _, tuned in self.rows
            if tuned
            and label in self.versus_pure
            and across_seeds(self.versus_pure[label]) == "better"
        )
        return tuple(better), across_seeds(self.head[1]) if self.head else None

    def recommended(self) -> str | None:
        """The variant the answer says to use: of those better than pure across seeds and
        images, the one with the largest mean gain; None when none is better."""
        gains = [
            (self.versus_pure[label]["mean"], variant)
            for variant, label, _, tuned in self.rows
            if tuned
            and label in self.versus_pure
            and across_seeds(self.versus_pure[label]) == "better"
        ]
        return max(gains)[1] if gains else None


def outcome(sweep: Sweep, records: list[RunRecord]) -> Outcome:
    selections = sweep.selections(records)
    rows = final_rows(sweep, records, selections)
    groups = {label: runs for _, label, runs, _ in rows if runs}
    table = summary_table(groups)
    versus_pure = compare(groups, REFERENCE) if REFERENCE in groups and len(groups) > 1 else {}
    labels = {variant: label for variant, label, _, tuned in rows if tuned}
    sparse = best_by_validation(selections, SPARSE)
    penalty = best_by_validation(selections, PENALTIES)
    head = pair = None
    if sparse and penalty and {labels[sparse.variant], labels[penalty.variant]} <= set(groups):
        pair = sparse, penalty
        heads = (labels[sparse.variant], labels[penalty.variant])
        head = heads, compare({label: groups[label] for label in heads}, heads[1])[heads[0]]
    missing = missing_runs(sweep, selections, rows)
    return Outcome(selections, rows, groups, table, versus_pure, head, pair, missing)


def render(sweep: Sweep, records: list[RunRecord], found: Outcome | None = None):
    """(the report's markdown, the chart's panels, the references' mean validation IoU,
    the answer and the final table for the README); `found`: the records' outcome."""
    found = found or outcome(sweep, records)
    selections, rows, table, versus_pure, head = (
        found.selections,
        found.rows,
        found.table,
        found.versus_pure,
        found.head,
    )
    markdown, chart = report_names(sweep)
    expected = len(sweep.final_seeds)
    references = {}
    for variant in sweep.settings.references:
        specs = [sweep.selection_spec(variant, seed) for seed in sweep.settings.seeds]
        if runs := sweep.found(records, specs):
            references[variant] = float(np.mean([val_iou(record) for record in runs]))
    pending = [
        f"{label} ({len(runs)} of {expected} seeds)"
        for _, label, runs, _ in rows
        if len(runs) < expected
    ]
    selection_runs = sweep.found(records, sweep.selection_plan(records))
    _, tried, _, best_finals = candidates_found(sweep, records)
    selection_runs += [r for _, runs in tried for r in runs]
    final_runs = [r for _, _, runs, _ in rows for r in runs] + best_finals
    selection_runs, final_runs = (
        list({id(r): r for r in rs}.values()) for rs in (selection_runs, final_runs)
    )
    used = selection_runs + final_runs
    said = answer(sweep, selections, rows, table, versus_pure, head, found.missing)
    final = results_section(table)[2:] if table else ["No final run is recorded yet."]
    readme = [said, "", *final, "", f"From [reports/{markdown}](reports/{markdown})."]
    network = "" if sweep.arch == "paper" else f" ({NETWORKS[sweep.arch]})"
    lines = [
        f"# Every regulariser at its best strength: the sweep{network}",
        "",
        said,
        "",
        *_selection_section(sweep, selections),
        "",
        f"![Validation IoU against strength, per regulariser]({chart})",
        "",
        "## Final runs: tuned strengths"
        + (" beside the post's settings" if sweep.arch == "paper" else ""),
        "",
        *final,
    ]
    if pending:
        lines += ["", f"Pending (fewer than {expected} seeds recorded): {join(pending)}."]
    if versus_pure:
        lines += ["", *comparison_section(versus_pure)]
    if head is not None:
        sparse, penalty = found.pair
        lines += [
            "",
            "## Sparse filtering against L1/L2, each tuned",
            *comparison_section({head[0][0]: head[1]})[1:],
            f"The sparse variant and the L1/L2 one are each the better of their kind by mean "
            f"validation IoU at the selected strength ({sparse.variant} "
            f"{sparse.curve[sparse.selected][0]:.3f}, {penalty.variant} "
            f"{penalty.curve[penalty.selected][0]:.3f}), never by test IoU.",
        ]
    lines += candidate_section(sweep, records)
    study = " (those at the post's settings are the study's)" if sweep.arch == "paper" else ""
    post = "; the study's post settings in detail: [study.md](study.md)" if study else ""
    lines += [
        "",
        "## The runs",
        "",
        f"- {len(selection_runs)} selection runs and {len(final_runs)} final runs{study}, "
        f"{duration(sum(r.train_seconds or 0.0 for r in used))} of training in all.",
        *(
            [
                f"- Commits: {tally((r.commit for r in used), code=True)}.",
                f"- Machines: {tally(r.machine for r in used)}.",
            ]
            if used
            else []
        ),
        "",
        f"Pictures: [{chart}]({chart}){post}.",
    ]
    panels = [
        StrengthPanel(
            s.variant, s.key, s.curve, s.selected, post_mark(sweep, s.variant), tuple(s.points)
        )
        for s in selections
    ]
    return "\n".join(lines) + "\n", panels, references, "\n".join(readme)


def networks_table(sweeps: list[Sweep], outcomes: list[Outcome], records: list[RunRecord]) -> str:
    """The README's table of both networks: each variant's test IoU at its tuned strength,
    and whether the answer changed from one network to the other."""
    names = [NETWORKS[sweep.arch] for sweep in sweeps]
    rows = []
    for variant in sweeps[0].config.variants:
        cells = []
        for found in outcomes:
            tuned = [(label, runs) for v, label, runs, t in found.rows if t and v == variant]
            if not tuned or tuned[0][0] not in found.table:
                cells.append("pending")
                continue
            mean, spread, seeds = found.table[tuned[0][0]]["test_iou"]
            strength = {s.variant: s.selected for s in found.selections}.get(variant)
            at = "" if strength is None else f" @ {strength:g}"
            cells.append(f"{mean:.3f} ± {spread:.3f} ({seeds} seed{'s' * (seeds != 1)}){at}")
        rows.append([f"`{variant}`", *cells])
    lines = [
        "Test IoU (mean ± std over the final seeds) of each variant at the strength selected "
        "on validation images, per network:",
        "",
        *markdown_table(["variant", *names], rows),
        "",
    ]
    incomplete = [
        f"the {name}'s sweep is not complete ([reports/{report_names(sweep)[0]}]"
        f"(reports/{report_names(sweep)[0]}) says what is missing)"
        for name, sweep, found in zip(names, sweeps, outcomes, strict=True)
        if found.missing
    ]
    if incomplete:
        lines.append(f"Whether the answer holds for both networks is open: {join(incomplete)}.")
    else:
        verdicts = [found.verdict() for found in outcomes]
        said = [
            f"for the {name}, {join(better) if better else 'no tuned variant'} "
            f"{'is' if len(better) == 1 else 'are' if better else 'is'} better than {REFERENCE}"
            + (f" and sparse filtering is {RELATION[head]} L1/L2" if head else "")
            for name, (better, head) in zip(names, verdicts, strict=True)
        ]
        recommended = [found.recommended() for found in outcomes]
        if len(set(verdicts)) == 1:
            said_last = "the answer holds on both networks."
        elif len(set(recommended)) == 1:
            use = recommended[0]
            said_last = "the answer changed with the network, but " + (
                f"both recommend {use}." if use else "neither recommends a regulariser."
            )
        else:
            picks = [
                f"{name}: {use or 'none'}" for name, use in zip(names, recommended, strict=True)
            ]
            said_last = (
                "the answer changed with the network, and so did the recommendation "
                f"({'; '.join(picks)})."
            )
        lines.append(f"Resampling seeds and test images, {'; '.join(said)}: {said_last}")
    for name, sweep in zip(names, sweeps, strict=True):
        if sweep.settings.candidates and (leader := sweep.leader(records)) is not None:
            verdict = candidate_verdict(sweep, records)
            report = report_names(sweep)[0]
            lines += [
                "",
                f"Other settings of {leader[0]} for the {name} "
                f"([reports/{report}](reports/{report})). {verdict}",
            ]
    return "\n".join(lines)


def write_sweep_reports(
    sweeps: list[Sweep], records: list[RunRecord], out_dir: Path, readme: Path | None = None
) -> list[Path]:
    """Write each network's sweep report into out_dir (and into readme's `sweep-results`
    block the paper net's answer, into its `networks` block the table of both), each file
    whole or not at all; records in any order give the same bytes."""
    # find_record takes the first match: a fixed order makes the reports order-free.
    records = sorted(
        records, key=lambda r: (r.variant, json.dumps(r.params, sort_keys=True), r.rev, r.name)
    )
    outcomes = [outcome(sweep, records) for sweep in sweeps]
    rendered = [render(s, records, found) for s, found in zip(sweeps, outcomes, strict=True)]
    targets = [Path(out_dir) / name for sweep in sweeps for name in report_names(sweep)]
    readme_text = None
    if readme is not None:
        table = networks_table(sweeps, outcomes, records)
        paper = next(
            r[3] for r, sweep in zip(rendered, sweeps, strict=True) if sweep.arch == "paper"
        )
        try:
            readme_text = replace_block(readme.read_text(), "sweep-results", paper)
            readme_text = replace_block(readme_text, "networks", table)
        except (OSError, ValueError) as error:
            raise SfaeError(f"{readme}: cannot update its results ({error})") from error
    with staged_outputs(*targets, *([readme] if readme else [])) as staged:
        files = list(staged)[: len(targets)]
        for (text, panels, references, _), sweep, markdown, chart in zip(
            rendered, sweeps, files[0::2], files[1::2], strict=True
        ):
            markdown.write_text(text, encoding="utf-8")
            title = f"Selection on {sweep.settings.val_count} validation images; ring: selected"
            if sweep.arch != "paper":
                title = f"{NETWORKS[sweep.arch]}: {title}"
            write_selection_chart(panels, references, chart, title)
        if readme:
            list(staged)[-1].write_text(readme_text, encoding="utf-8")
    return [*targets, *([readme] if readme else [])]
