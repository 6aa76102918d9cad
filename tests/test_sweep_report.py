"""The sweep report on hand-made records whose right answers are known: selection on
validation IoU, verdicts in words that follow the intervals, partial sweeps, byte-stable files."""

from __future__ import annotations

import math
import random
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sfae.errors import SfaeError
from sfae.experiments.records import RunRecord
from sfae.experiments.runner import find_record, wanted_params
from sfae.experiments.study import study_plan
from sfae.nn.regularisers.registry import REGULARISERS
from sfae.plans import load_plans
from sfae.reports.sweep_report import (
    best_by_validation,
    networks_table,
    outcome,
    post_mark,
    render,
    write_sweep_reports,
)

REPO = Path(__file__).resolve().parent.parent
IMAGES = [f"FudanPed{number:05d}" for number in range(1, 21)]
BASE = np.linspace(0.3, 0.8, len(IMAGES))
SWEEP_GRIDS = load_plans(REPO / "params.yaml", REGULARISERS).sweep.grids
UNET_GRIDS = load_plans(REPO / "params.yaml", REGULARISERS).sweep.unet.grids


def record_for(sweep, spec, val, shift, seed_noise, image_noise) -> RunRecord:
    """A complete run record fulfilling `spec`: per-image test IoU = BASE + shift, moved
    by a per-seed offset and per-image noise (both fixed by the spec's label)."""
    params = wanted_params(sweep.params, spec)
    rng = np.random.default_rng(zlib.crc32(spec.label.encode()))
    offset = seed_noise * ((params["seed"] % 5) - 2) / 2
    iou = BASE + shift + offset + image_noise * rng.standard_normal(len(IMAGES))
    test = float(iou.mean())
    return RunRecord(
        variant=params["variant"],
        seed=params["seed"],
        name=spec.label,
        rev=spec.label,
        evaluate={
            "val": {"iou_pooled": val},
            "test": {"pooled": {"iou": test, "dice": test + 0.1, "boundary_f1": test - 0.1}},
            "gap": {"iou_pooled": 0.1},
        },
        mall={
            "head_hit_rate": 0.5,
            "false_foreground": 0.3,
            "count_correlation": 0.4,
            "foreground_share": 0.2,
        },
        train_seconds=600.0,
        per_image_iou=dict(zip(IMAGES, iou.tolist(), strict=True)),
        commit="c0ffee",
        params=params,
        machine="test box",
    )


def found(sweep, records, spec) -> RunRecord | None:
    return find_record(records, wanted_params(sweep.params, spec))


def campaign(
    sweep, val_of, shift_of, seed_noise=0.01, image_noise=0.0, candidate_of=None
) -> list[RunRecord]:
    """Selection runs scored val_of(variant, strength) on validation (and the opposite on
    test), then every final and study run with per-image test IoU shifted by shift_of, then
    the candidates' runs scored candidate_of(overrides) -> (validation, test shift); by
    default below the variant as swept."""
    records = []
    while new := [
        spec for spec in sweep.selection_plan(records) if not found(sweep, records, spec)
    ]:
        for spec in new:  # round by round, as the grids extend
            variant = spec.as_dict()["variant"]
            strength = spec.as_dict().get(sweep.key(variant))
            val = val_of(variant, strength)
            records.append(record_for(sweep, spec, val, -val, seed_noise, image_noise))
    for spec in sweep.final_plan(records) + study_plan(sweep.config):
        if not found(sweep, records, spec):
            settings = spec.as_dict()
            variant = settings["variant"]
            key = sweep.key(variant)
            strength = settings.get(key, post_mark(sweep, variant)[0]) if key else None
            shift = shift_of(variant, strength)
            records.append(record_for(sweep, spec, 0.0, shift, seed_noise, image_noise))
    candidate_of = candidate_of or (lambda overrides: (0.0, 0.0))
    while new := [
        spec for spec in sweep.candidate_plan(records) if not found(sweep, records, spec)
    ]:
        for spec in new:  # the candidates, then the best one's finals
            settings = spec.as_dict()
            overrides = {k: v for k, v in settings.items() if k in candidate_keys(sweep)}
            val, shift = candidate_of(overrides)
            val = val if settings["data.val_count"] else 0.0
            records.append(record_for(sweep, spec, val, shift, seed_noise, image_noise))
    return records


def candidate_keys(sweep) -> set[str]:
    return {key for candidate in sweep.settings.candidates for key in candidate}


def peak_at_middle(variant, strength, lift=None, grids=SWEEP_GRIDS):
    """Validation IoU that peaks inside each grid, at its middle point."""
    if strength is None:
        return 0.5
    grid = grids[variant]
    steps = round(abs(math.log(strength / grid[len(grid) // 2]) / math.log(grid[1] / grid[0])))
    return 0.6 + (lift or {}).get(variant, 0.0) - 0.01 * steps


def l2_tuned_better(variant, strength):
    return 0.1 if variant == "l2" and strength == SWEEP_GRIDS["l2"][2] else 0.0


def test_files_are_written_whole_and_the_same_bytes_for_records_in_any_order(sweep, tmp_path):
    records = campaign(sweep, peak_at_middle, l2_tuned_better)
    paths = write_sweep_reports([sweep], records, tmp_path / "a")
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    again = write_sweep_reports([sweep], shuffled, tmp_path / "b")
    assert [p.name for p in paths] == ["sweep.md", "sweep_selection.png"]
    for first, second in zip(paths, again, strict=True):
        assert first.read_bytes() == second.read_bytes()
    assert Image.open(paths[1]).size[0] > 1000
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]


def test_the_selected_strength_is_the_validation_best_and_the_report_says_so(sweep):
    # Selection runs score the opposite on test: the test-best strength is the grid's end.
    records = campaign(sweep, peak_at_middle, l2_tuned_better)
    text, panels, references, _ = render(sweep, records)
    chosen, test_best = SWEEP_GRIDS["l2"][2], SWEEP_GRIDS["l2"][0]
    assert {panel.variant: panel.selected for panel in panels}["l2"] == chosen
    assert f"l2 @ {chosen:g}" in text and f"l2 @ {test_best:g}" not in text
    assert f"| {chosen:g} | 0.600 ± 0.000 | 2 | **selected** |" in text
    assert "| 0.005 | 0.580 ± 0.000 | 2 | post |" in text  # the post's l2 value, marked
    assert references == {"pure": 0.5, "augment": 0.5}
    assert "never looked at" in text and "provisional" not in text


def test_a_clearly_better_tuned_l2_is_called_better_and_recommended(sweep):
    text, _, _, readme = render(sweep, campaign(sweep, peak_at_middle, l2_tuned_better))
    answer = text.split("\n\n")[1]
    assert f"l2 @ {SWEEP_GRIDS['l2'][2]:g} (+0.100," in answer
    assert "is better than pure" in answer
    assert f"So: use l2 @ {SWEEP_GRIDS['l2'][2]:g}." in answer
    assert "l2 @ 0.005 (post)" in text  # the post's setting stays beside it
    # The README's block is the same answer and final table.
    assert readme.startswith(answer) and "| `l2 @ 0.005 (post)` |" in readme


def test_the_readme_block_is_replaced_and_nothing_else(sweep, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\n<!-- sweep-results:start -->\nOLD BLOCK\n<!-- sweep-results:end -->\ntail\n"
        "<!-- networks:start -->\n<!-- networks:end -->\n"
    )
    records = campaign(sweep, peak_at_middle, l2_tuned_better)
    write_sweep_reports([sweep], records, tmp_path, readme)
    text = readme.read_text()
    assert text.startswith("# x\n\n<!-- sweep-results:start -->\nWith 85 training images")
    assert "OLD BLOCK" not in text and "<!-- sweep-results:end -->\ntail\n" in text
    assert "| variant | paper net |" in text.split("<!-- networks:start -->")[1]
    before = text
    write_sweep_reports([sweep], records, tmp_path, readme)
    assert readme.read_text() == before
    readme.write_text("no block here\n")
    with pytest.raises(SfaeError, match="sweep-results:start"):
        write_sweep_reports([sweep], records, tmp_path / "other", readme)
    assert readme.read_text() == "no block here\n"


def test_noise_alone_is_called_not_distinguishable(sweep):
    def small(variant, strength):
        return 0.01 if variant == "l2" else 0.0

    records = campaign(sweep, peak_at_middle, small, seed_noise=0.2, image_noise=0.05)
    answer = render(sweep, records)[0].split("\n\n")[1]
    assert "No tuned regulariser beats pure" in answer
    assert "no interval that resamples both seeds and test images excludes zero" in answer
    assert "better than" not in answer.replace("not distinguishable", "")
    assert "no regulariser is worth choosing over none" in answer


def test_best_sparse_and_best_penalty_are_picked_by_validation_not_test(sweep):
    # On validation sparse_elu beats sparse_softabs and l1 beats l2; on test it is reversed.
    lift = {"sparse_elu": 0.05, "l1": 0.05}

    def test_shift(variant, strength):
        return 0.05 if variant in ("sparse_softabs", "l2") else 0.0

    records = campaign(sweep, lambda v, x: peak_at_middle(v, x, lift), test_shift)
    selections = sweep.selections(records)
    assert best_by_validation(selections, ("sparse_softabs", "sparse_elu")).variant == "sparse_elu"
    assert best_by_validation(selections, ("l1", "l2")).variant == "l1"
    text = render(sweep, records)[0]
    elu, l1 = SWEEP_GRIDS["sparse_elu"][2], SWEEP_GRIDS["l1"][2]
    assert f"sparse_elu @ {elu:g} minus l1 @ {l1:g} per-image test IoU" in text
    assert f"sparse filtering (sparse_elu @ {elu:g}, the better sparse variant" in text


def test_a_partial_sweep_still_builds_and_says_provisional(sweep, tmp_path):
    records = campaign(sweep, peak_at_middle, l2_tuned_better)
    chosen = SWEEP_GRIDS["l2"][2]
    # l2's finals: 3 seeds missing; sparse_elu: one selection run missing, so no finals.
    n = len(sweep.final_seeds)
    l2_finals = sweep.final_records(records)["l2"]
    elu_point = sweep.selection_spec("sparse_elu", 1, SWEEP_GRIDS["sparse_elu"][0])
    dropped = [*l2_finals[:3], find_record(records, wanted_params(sweep.params, elu_point))]
    partial = [r for r in records if not any(r is d for d in dropped)]
    paths = write_sweep_reports([sweep], partial, tmp_path)
    text = paths[0].read_text()
    answer = text.split("\n\n")[1]
    assert "provisional" in answer
    assert f"3 of {n} final runs of l2 @ {chosen:g}" in answer
    assert "1 selection run of sparse_elu, then its finals" in answer
    assert f"l2 @ {chosen:g} ({n - 3} of {n} seeds)" in text and "sparse_elu (not selected)" in text
    # With selection runs alone there is no answer yet, but still a report.
    selection_only = [r for r in records if r.val_count > 0]
    text = render(sweep, selection_only)[0]
    assert "No final run is recorded yet" in text
    assert "gives no answer yet" in text.split("\n\n")[1]
    # Nor with the references' finals alone (pure has the study's runs): no claim about
    # regularisers that have not been tuned.
    references_only = [
        r for r in records if r.val_count > 0 or r.variant in sweep.settings.references
    ]
    answer = render(sweep, references_only)[0].split("\n\n")[1]
    assert "gives no answer yet" in answer and "beats" not in answer


def test_an_extended_grid_that_selects_the_posts_value_gives_one_row(sweep):
    # l2's validation IoU rises to the grid's end (the post's 0.005), then falls beyond it.
    def rising(variant, strength):
        if variant != "l2" or strength is None:
            return peak_at_middle(variant, strength)
        return 0.7 if strength == 0.005 else 0.6 if strength < 0.005 else 0.5

    records = campaign(sweep, rising, lambda variant, strength: 0.0)
    text = render(sweep, records)[0]
    grid = "5e-07, 5e-06, 5e-05, 0.0005, 0.005, 0.05"
    assert f"| `l2` | `variants.l2.regularizer_scale` | {grid} | 0.05 | yes | 0.005 |" in text
    assert "| 0.005 | 0.700 ± 0.000 | 2 | **selected**, post |" in text
    seeds = len(sweep.final_seeds)
    assert text.count(f"| `l2 @ 0.005 (post)` | {seeds} |") == 1 and "| `l2 @ 0.005` |" not in text


def unet_peak(variant, strength):
    return peak_at_middle(variant, strength, grids=UNET_GRIDS)


def test_the_unet_report_has_its_own_files_seeds_and_no_post_rows(sweep, unet_sweep, tmp_path):
    # Paper runs sit in the same records and must not count for the U-Net.
    paper = campaign(sweep, peak_at_middle, lambda v, x: 0.0)
    records = paper + campaign(unet_sweep, unet_peak, l2_tuned_better_unet)
    paths = write_sweep_reports([sweep, unet_sweep], records, tmp_path)
    assert [p.name for p in paths] == [
        "sweep.md",
        "sweep_selection.png",
        "sweep_unet.md",
        "sweep_unet_selection.png",
    ]
    text = paths[2].read_text()
    assert text.startswith("# Every regulariser at its best strength: the sweep (U-Net)")
    assert "1 selection seed (1;" in text and "the study's 5 seeds" in text
    assert "(post)" not in text.split("## Final runs")[1]  # the study trained the paper net
    chosen = UNET_GRIDS["l2"][1]
    assert f"| `l2 @ {chosen:g}` | 5 |" in text and "So: use l2" in text
    # The paper net's report is unchanged by the U-Net's runs.
    alone = write_sweep_reports([sweep], paper, tmp_path / "alone")
    assert paths[0].read_bytes() == alone[0].read_bytes()


def l2_tuned_better_unet(variant, strength):
    return 0.1 if variant == "l2" and strength == UNET_GRIDS["l2"][1] else 0.0


def test_the_networks_table_says_whether_the_answer_changed(sweep, unet_sweep):
    paper = campaign(sweep, peak_at_middle, l2_tuned_better)
    sweeps = [sweep, unet_sweep]
    same = paper + campaign(unet_sweep, unet_peak, l2_tuned_better_unet)
    table = networks_table(sweeps, [outcome(s, same) for s in sweeps], same)
    assert "| variant | paper net | U-Net |" in table
    l2_row = next(line for line in table.splitlines() if line.startswith("| `l2` |"))
    paper_cell, unet_cell = l2_row.strip(" |").split(" | ")[1:3]
    assert paper_cell.startswith("0.65") and paper_cell.endswith(
        f"(10 seeds) @ {SWEEP_GRIDS['l2'][2]:g}"
    )
    assert unet_cell.startswith("0.65") and unet_cell.endswith(
        f"(5 seeds) @ {UNET_GRIDS['l2'][1]:g}"
    )
    assert "for the paper net, l2 is better than pure" in table
    assert "the answer holds on both networks" in table
    other = paper + campaign(unet_sweep, unet_peak, lambda v, x: 0.0)
    table = networks_table(sweeps, [outcome(s, other) for s in sweeps], other)
    assert "for the U-Net, no tuned variant is better than pure" in table
    assert (
        "the answer changed with the network, and so did the recommendation "
        "(paper net: l2; U-Net: none)." in table
    )

    def l2_and_less_l1_better(variant, strength):
        less = 0.05 if variant == "l1" and strength == UNET_GRIDS["l1"][1] else 0.0
        return l2_tuned_better_unet(variant, strength) or less

    more = paper + campaign(unet_sweep, unet_peak, l2_and_less_l1_better)
    table = networks_table(sweeps, [outcome(s, more) for s in sweeps], more)
    assert "for the U-Net, l1 and l2 are better than pure" in table
    assert "the answer changed with the network, but both recommend l2." in table
    unfinished = [r for r in other if not (r.variant == "augment" and r.val_count == 0)]
    table = networks_table(sweeps, [outcome(s, unfinished) for s in sweeps], unfinished)
    assert "| `augment` | pending | pending |" in table
    assert "Whether the answer holds for both networks is open" in table
    one_seed = [
        r for r in other if not (r.variant == "augment" and r.val_count == 0 and r.seed > 1)
    ]
    augment_row = next(
        line
        for line in networks_table(
            sweeps, [outcome(s, one_seed) for s in sweeps], one_seed
        ).splitlines()
        if line.startswith("| `augment` |")
    )
    assert augment_row.endswith("(1 seed) |"), augment_row


def test_the_best_candidate_is_reported_against_the_goal(sweep, unet_sweep, tmp_path):
    first = unet_sweep.settings.candidates[0]

    def candidate_of(lift):
        return lambda overrides: (0.9, lift) if overrides == first else (0.0, 0.0)

    readme = tmp_path / "README.md"
    block = "<!-- {0}:start -->\nold\n<!-- {0}:end -->\n"
    paper = campaign(sweep, peak_at_middle, lambda v, x: 0.0)
    for lift, verdict in ((0.25, "reaches"), (0.05, "falls short of")):
        records = paper + campaign(
            unet_sweep, unet_peak, lambda v, x: 0.0, 0.0, 0.0, candidate_of(lift)
        )
        readme.write_text(block.format("sweep-results") + block.format("networks"))
        paths = write_sweep_reports([sweep, unet_sweep], records, tmp_path, readme)
        text = paths[2].read_text()
        leader, strength = unet_sweep.leader(records)
        at = "".join(f" @ {x:g}" for x in strength.values())
        label = ", ".join(f"{k.rsplit('.', 1)[-1]} {v}" for k, v in first.items())
        mean = float(np.mean(BASE)) + lift
        said = (
            f"The best setting on validation, {label}, gives {mean:.3f} ± 0.000 test IoU over "
            f"5 seeds: its mean {verdict} the goal of 0.70."
        )
        assert f"{leader}{at} has the best validation IoU" in text
        assert f"| {label} | 0.900 | 10.0 | **best** |" in text and said in text
        # Against the leader as swept (test shift 0), seeds and images: +lift, no noise.
        assert f"It is better than {leader} as swept: {lift:+.3f}" in text
        assert f"Other settings of {leader} for the U-Net" in readme.read_text()
        assert said in readme.read_text()
    # Until the best candidate's finals are in, the report says how many are.
    records = [
        r
        for r in records
        if not (r.val_count == 0 and r.seed == 1 and r.params.items() >= first.items())
    ]
    text = render(unet_sweep, records)[0]
    n = len(unet_sweep.final_seeds)
    said = f"The best setting on validation is {label}; {n - 1} of its {n} final runs are recorded."
    assert said in text
