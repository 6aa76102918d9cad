"""The study's bar chart and side-by-side Mall GIF; a sweep's validation IoU against strength."""

import math
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
from matplotlib.figure import Figure

from sfae.config import POST_VARIANTS
from sfae.errors import SfaeError
from sfae.experiments.sweep_state import SweepState
from sfae.inference.render import colormap_code, overlay
from sfae.reports.statistics import METRIC_LABELS, SUMMARY_METRICS, Summary

CHART_METRICS = tuple(m for m in SUMMARY_METRICS if m not in ("iou_gap", "foreground_share"))


def write_chart(table: Summary, path: Path) -> None:
    """Bars per metric, one per variant (a bare Figure: no pyplot backend or registry touched)."""
    figure = Figure(figsize=(12, 6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    variants = list(table)
    positions = np.arange(len(CHART_METRICS))
    bar_width = 0.8 / max(1, len(variants))
    for index, variant in enumerate(variants):
        means, spreads = zip(*(table[variant][metric][:2] for metric in CHART_METRICS), strict=True)
        offsets = positions + (index - (len(variants) - 1) / 2) * bar_width
        axes.bar(
            offsets, means, bar_width, yerr=spreads, capsize=3, label=variant, color=f"C{index}"
        )
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xticks(positions, [METRIC_LABELS[metric] for metric in CHART_METRICS], fontsize=11)
    axes.set_ylabel("mean over seeds (error bars: sample std)", fontsize=11)
    seeds = sorted({table[variant]["test_iou"][2] for variant in variants})
    axes.set_title(
        f"Variants compared ({'/'.join(str(count) for count in seeds)} seeds each); "
        "lower false foreground is better, higher is better elsewhere",
        fontsize=12,
    )
    axes.legend(ncols=len(variants), loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=11)
    axes.grid(axis="y", alpha=0.3)
    # The default "Software" text names the matplotlib version; nothing else varies.
    figure.savefig(path, format="png", metadata={"Software": None})


def write_selection_chart(state: SweepState, path: Path) -> None:
    """Per regulariser, validation IoU against strength: selected, plateau, post, references."""
    sweep, selections = state.sweep, state.selections
    references = {r.variant: r.runs.mean for r in state.references if r.runs.records}
    columns = min(3, max(1, len(selections)))
    rows = max(1, math.ceil(len(selections) / columns))
    figure = Figure(figsize=(4.6 * columns, 3.8 * rows), dpi=100, layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes, selection in zip(grid, selections, strict=False):
        curve = {x: runs for x, runs in selection.points.items() if runs.records}
        strengths = sorted(curve)
        means = [curve[x].mean for x in strengths]
        axes.errorbar(
            strengths, means, yerr=[curve[x].std for x in strengths], marker="o", capsize=3
        )
        for index, (name, value) in enumerate(sorted(references.items())):
            axes.axhline(value, color=f"C{index + 2}", linestyle=":", label=f"{name} (reference)")
        axes.axvline(selection.post[0], color="grey", linestyle="--", label=selection.post[1])
        hollow = {"markerfacecolor": "none", "linestyle": "none"}
        flat = selection.plateau
        if flat is not None and flat.se is not None:  # no plateau where the SE is not estimable
            means = [curve[x].mean for x in flat.plateau]
            axes.plot(
                flat.plateau, means, marker="s", markersize=9, markeredgecolor="C1", **hollow,
                label="plateau (within 1 SE)",
            )  # fmt: skip
        if selection.selected is not None:
            axes.plot(
                [selection.selected], [curve[selection.selected].mean], marker="o", markersize=14,
                markeredgecolor="black", **hollow, label="selected",
            )  # fmt: skip
        if not strengths:
            axes.text(0.5, 0.5, "no runs yet", ha="center", transform=axes.transAxes)
        # Limits before the log scale (an empty panel's would be singular): the grid as run.
        if selection.points:
            axes.set_xlim(min(selection.points) / 2, max(selection.points) * 2)
        axes.set_xscale("log")
        axes.set_title(f"{selection.variant} ({selection.key.rsplit('.', 1)[-1]})", fontsize=11)
        axes.set(xlabel="strength", ylabel="validation IoU (mean ± std)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    for axes in grid[len(selections) :]:
        axes.set_visible(False)
    prefix = "" if sweep.name == "paper" else f"{sweep.name} ({sweep.network_name}): "
    title = f"Selection on {sweep.settings.val_count} validation images; ring: selected"
    figure.suptitle(f"{prefix}{title}, squares: plateau", fontsize=12)
    figure.savefig(path, format="png", metadata={"Software": None})


def _panel(overlaid: np.ndarray, width: int, label: str) -> np.ndarray:
    """The overlay scaled to `width` (keeping its aspect), `label` top left."""
    height = max(1, round(overlaid.shape[0] * width / overlaid.shape[1]))
    # INTER_AREA avoids aliasing when shrinking; shrinking is the usual case here.
    panel = cv2.resize(overlaid, (width, height), interpolation=cv2.INTER_AREA)
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    scale = max(0.3, 0.55 * width / 240)
    text_width = cv2.getTextSize(label, font, scale, thickness)[0][0]
    if text_width > width - 8:
        scale *= (width - 8) / text_width
    (text_width, text_height), baseline = cv2.getTextSize(label, font, scale, thickness)
    # White on a black box stays legible on any colour, and survives the GIF's palette.
    cv2.rectangle(panel, (0, 0), (text_width + 6, text_height + baseline + 6), (0, 0, 0), -1)
    cv2.putText(
        panel, label, (3, text_height + 3), font, scale, (255, 255, 255), thickness, cv2.LINE_AA
    )
    return panel


def write_variants_gif(
    frames_rgb: list[np.ndarray],
    probabilities: dict[str, np.ndarray],
    path: Path,
    width_per_panel: int = 192,
    fps: float = 10,
    alpha: float = 0.45,
    colormap: str = "jet",
) -> None:
    """A looping GIF: the post's variants' overlays of each Mall frame side by side, labelled."""
    if missing := [variant for variant in POST_VARIANTS if variant not in probabilities]:
        raise SfaeError(f"{path}: no Mall probabilities of {', '.join(missing)}")
    code = colormap_code(colormap)
    gif_frames = []
    for index, frame in enumerate(frames_rgb):
        overlays = {v: overlay(frame, probabilities[v][index], alpha, code) for v in POST_VARIANTS}
        panels = [_panel(overlaid, width_per_panel, v) for v, overlaid in overlays.items()]
        gif_frames.append(np.concatenate(panels, axis=1))
    gif = np.stack(gif_frames)
    iio.imwrite(path, gif, plugin="pillow", extension=".gif", duration=1000.0 / fps, loop=0)
