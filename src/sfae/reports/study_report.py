"""The study report (study.md, study.png, the Mall GIF): a pure function of records and params."""

import io
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import yaml

from sfae.atomic import staged_outputs
from sfae.config import POST_VARIANTS
from sfae.errors import SfaeError
from sfae.experiments.records import IN_REPO, RunRecord
from sfae.paths import ProjectPaths
from sfae.reports.claims import PURE, claims
from sfae.reports.figures import write_chart, write_variants_gif
from sfae.reports.markdown import counted, duration, join, markdown_table, paragraphs, tally
from sfae.reports.statistics import (
    METRIC_LABELS,
    compare_family,
    group_by_variant,
    one_kind,
    summary_table,
)
from sfae.reports.wording import METHODS, family_said, family_table, left_out_said, results_table

MALL_PROBABILITY = IN_REPO.mall_probability.as_posix()
MARKDOWN, CHART, GIF = "study.md", "study.png", "mall_variants.gif"
METRIC_DEFINITIONS = {
    "test_iou": "TP / (TP + FP + FN) over the pixels of all test images pooled "
    "(foreground = sigmoid output >= evaluate.threshold). Higher is better.",
    "test_dice": "2 TP / (2 TP + FP + FN), pooled like IoU. Higher is better.",
    "boundary_f1": "harmonic mean of boundary precision and recall; a boundary pixel counts "
    "as matched when the other mask's boundary lies within evaluate.boundary_tolerance "
    "pixels; pooled. Higher means outlines in the right place.",
    "iou_gap": "pooled train IoU minus pooled test IoU: how much the network overfits. "
    "Lower is better.",
    "head_hit_rate": "share of the annotated Mall heads inside the region of interest whose "
    "body box is at least half predicted foreground. Higher is better.",
    "false_foreground": "share of the predicted Mall foreground pixels (inside the region of "
    "interest) farther than one person height from every head. Lower is better.",
    "count_correlation": "Pearson r over Mall frames between the perspective-weighted "
    "predicted area and the true head count. Higher is better.",
    "foreground_share": "share of the region-of-interest pixels called foreground, all Mall "
    'frames pooled: how "red" the overlay looks. Neither direction is better by itself.',
}


def study_groups(records: Iterable[RunRecord]) -> dict[str, list[RunRecord]]:
    """The records by variant; every one of the post's five must have a run, no other may."""
    if not (groups := group_by_variant(records, POST_VARIANTS)):
        raise SfaeError("no run records: nothing to report on")
    if missing := [variant for variant in POST_VARIANTS if variant not in groups]:
        raise SfaeError(
            f"no finished run of {', '.join(missing)}: the report compares all "
            f"{len(POST_VARIANTS)} variants"
        )
    return groups


TITLE = "# Sparse filtering vs L1/L2 on a tiny segmentation auto-encoder: the study"
CHART_LINE = f"![Per-variant scores, mean over seeds with std error bars]({CHART})"


def _cost_section(groups: dict[str, list[RunRecord]], params: dict, left: str | None) -> list[str]:
    records = [record for runs in groups.values() for record in runs]
    seeds = sorted({record.seed for record in records})
    timed = [record.train_seconds for record in records if record.train_seconds is not None]
    longest = max(
        timed, default=0.0
    )  # one unit for every single-run cell: they compare at a glance
    rows = []
    for variant, runs in groups.items():
        seconds = {run.seed: run.train_seconds for run in runs if run.train_seconds is not None}
        cells = [duration(seconds[s], longest) if s in seconds else "no run" for s in seeds]
        rows.append([f"`{variant}`", *cells, duration(sum(seconds.values()))])
    packages = dict.fromkeys(name for record in records for name in record.packages)
    package_rows = [[f"`{n}`", tally(r.packages.get(n, "") for r in records)] for n in packages]
    run_rows = [[f"`{r.variant}`", r.seed, f"`{r.name}`", f"`{r.rev}`"] for r in records]
    return paragraphs(
        "## What it took",
        "Training wall time per run (sparse pretraining plus fine-tuning):",
        markdown_table(["variant", *(f"seed {seed}" for seed in seeds), "all seeds"], rows),
        [
            f"- Training time of all {len(records)} runs: {duration(sum(timed))}.",
            f"- Runs per machine: {tally(r.machine for r in records)}.",
            f"- Runs per git commit (the one each experiment derives from): "
            f"{tally((r.commit for r in records), code=True)}.",
            *([f"- {left}"] if left else []),
        ],
        "Runs:",
        markdown_table(["variant", "seed", "experiment", "commit"], run_rows),
        "Package versions:",
        markdown_table(["package", "version"], package_rows),
        "Parameters (`params.yaml`; each run overrides `variant` and `seed`):",
        ["```yaml", yaml.safe_dump(params, sort_keys=False).rstrip(), "```"],
    )


def render_markdown(
    records: Iterable[RunRecord], params: dict, left_out: Sequence[RunRecord] = ()
) -> str:
    """reports/study.md; `left_out`: study runs' records of another machine kind."""
    groups = study_groups(records)
    kind = one_kind(groups)
    records = [record for runs in groups.values() for record in runs]
    table = summary_table(groups)
    family = compare_family(groups, PURE)  # the reference the claims read
    best = max(table, key=lambda variant: table[variant]["test_iou"][0])
    mean, std, seeds = table[best]["test_iou"]
    test_images = counted({len(r.per_image_iou) for r in records}, "Penn-Fudan test images")
    mall_frames = counted({r.mall.get("frames") for r in records}, "CUHK Mall frames")
    checked = [[c.claim, f"**{c.verdict}**", c.evidence] for c in claims(table, family.comparisons)]
    lines = paragraphs(
        TITLE,
        f"{best} has the best mean test IoU ({mean:.3f} ± {std:.3f}, seeds: {seeds}). "
        + family_said(family),
        f"{len(table)} variants ({join(table)}), trained with the seeds "
        f"{join(str(seed) for seed in sorted({r.seed for r in records}))}: {len(records)} "
        f"runs, each scored on {test_images} and {mall_frames}.",
        "## Results per variant",
        results_table(table, kind),
        f"## Compared with {family.reference}, image by image",
        METHODS.format(alpha=family.alpha),
        family_table(family),
        CHART_LINE,
        f"![Mall frames, each variant's predicted foreground side by side "
        f"({join(POST_VARIANTS)})]({GIF})",
        "## The 2018 blog post's claims, checked",
        [
            "The original post judged the networks by eye only. Verdicts compare means over seeds;",
            "the ± values show how far the seeds move them.",
        ],
        markdown_table(["claim and test", "verdict", "evidence"], checked),
        "## Metrics",
        [f"- **{METRIC_LABELS[metric]}**: {text}" for metric, text in METRIC_DEFINITIONS.items()],
        "Full definitions: [README, Metrics](../README.md#metrics).",
        _cost_section(groups, params, left_out_said(left_out, kind)),
    )
    return "\n".join(lines) + "\n"


def write_pending_report(
    records: Sequence[RunRecord],
    missing: dict[str, list[int]],
    planned: int,
    kind: str,
    out_dir: Path,
    left_out: Sequence[RunRecord] = (),
) -> list[Path]:
    """study.md and study.png while some variant has no run of the study's machine kind."""
    table = summary_table(group_by_variant(records, POST_VARIANTS))
    absent = "; ".join(f"{v} (seeds {join(map(str, seeds))})" for v, seeds in missing.items())
    lines = paragraphs(
        TITLE,
        f"The study is not complete on one machine kind yet: {len(records)} of its {planned} "
        f"planned runs trained on a {kind} and are recorded; missing: {absent}. Run `make study` "
        f"on a {kind} to complete it (the runner runs only what is missing). Until then there are "
        "no comparisons and no claims checked here: a comparison reads runs of one machine kind.",
        left_out_said(left_out, kind),
        "## Results per variant recorded so far",
        results_table(table, kind),
        CHART_LINE,
    )
    return _write(out_dir, "\n".join(lines) + "\n", table)


def write_report(
    records: Iterable[RunRecord],
    params: dict,
    out_dir: Path,
    frames_rgb: list[np.ndarray] | None = None,
    probabilities: dict[str, np.ndarray] | None = None,
    left_out: Sequence[RunRecord] = (),
) -> list[Path]:
    """study.md, study.png and, given frames, the GIF (else the one there stays); their paths."""
    records = list(records)
    text, gif = render_markdown(records, params, left_out), None
    if frames_rgb is not None:
        # The GIF looks like each run's own overlay video: the same render settings.
        render = params.get("render") or {}
        settings = {key: render[key] for key in ("fps", "alpha", "colormap") if key in render}
        gif = partial(write_variants_gif, frames_rgb, probabilities, **settings)
    return _write(out_dir, text, summary_table(study_groups(records)), gif)


def _write(out_dir: Path, text: str, table: dict, gif: partial | None = None) -> list[Path]:
    """study.md, study.png and (given `gif`, its writer) the GIF, each whole or not at all."""
    targets = [Path(out_dir) / name for name in (MARKDOWN, CHART, GIF)[: 3 if gif else 2]]
    with staged_outputs(*targets) as staged:
        staged[0].write_text(text, encoding="utf-8")
        write_chart(table, staged[1])
        if gif is not None:
            gif(staged[2])
    return targets


def mall_gif_inputs(records: list[RunRecord], paths: ProjectPaths):
    """(frames, probabilities) for the GIF, or None when this clone lacks some of them."""
    import dvc.api

    from sfae.data.image_io import read_rgb
    from sfae.data.sources import MALL, mall_frame_path

    first_seed = min(record.seed for record in records)
    probabilities = {}
    for record in [record for record in records if record.seed == first_seed]:
        try:
            data = dvc.api.read(MALL_PROBABILITY, repo=str(paths.root), rev=record.rev, mode="rb")
        except Exception:  # noqa: BLE001  (any miss: no rev, no cache, no file)
            return None
        probabilities[record.variant] = np.load(io.BytesIO(data)).astype(np.float32)
    if len(probabilities) != len(POST_VARIANTS):
        return None
    count = min(len(p) for p in probabilities.values())
    picks = list(range(0, count, max(1, count // 40)))  # ~40 frames keep the GIF a few MB
    try:
        frames = [read_rgb(mall_frame_path(paths.raw / MALL.folder, i + 1)) for i in picks]
    except SfaeError:  # no Mall frames in this clone (`dvc repro download_mall` brings them)
        return None
    return frames, {variant: p[picks] for variant, p in probabilities.items()}
