"""The sweep reports on hand-made records whose right answers are known: selection on
validation IoU, verdicts in words that follow the Holm-corrected intervals, plateaus, machine
kinds, partial and named sweeps, byte-stable files."""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sfae.errors import SfaeError
from sfae.experiments.campaign import candidate_plan, final_plan, plateau_plan, selection_plan
from sfae.experiments.records import RunRecord
from sfae.experiments.runner import find_record, wanted_params
from sfae.experiments.sweep import Sweep, study_plan
from sfae.experiments.sweep_state import sweep_state
from sfae.nn.regularisers.registry import REGULARISERS
from sfae.plans import load_plans
from sfae.reports.build import main_block, networks_block, write_sweep_reports
from sfae.reports.sweep_findings import best_by_validation, findings
from sfae.reports.sweep_report import render

REPO = Path(__file__).resolve().parent.parent
IMAGES = [f"FudanPed{number:05d}" for number in range(1, 21)]
BASE = np.linspace(0.3, 0.8, len(IMAGES))
PLANS = load_plans(REPO / "params.yaml", REGULARISERS)
SWEEP_GRIDS, UNET_GRIDS = PLANS.sweep.grids, PLANS.sweep.unet.grids
CPU = "Linux-x, x86_64, 2 CPUs"
GPU = "Linux-y, x86_64, 16 CPUs, NVIDIA H100 80GB HBM3"


def record_for(sweep, spec, val, shift, seed_noise, image_noise, machine=CPU) -> RunRecord:
    """A complete run record fulfilling `spec`: per-image test IoU = BASE + shift, moved by
    the run's own training offset (sd seed_noise) and per-image noise (sd image_noise), both
    drawn from the spec's label."""
    params = wanted_params(sweep.params, spec)
    rng = np.random.default_rng(zlib.crc32(spec.label.encode()))
    offset = seed_noise * rng.standard_normal()
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
        machine=machine,
    )


def found(sweep, records, spec) -> RunRecord | None:
    return find_record(records, wanted_params(sweep.params, spec))


def campaign(
    sweep,
    val_of,
    shift_of,
    seed_noise=0.0,
    image_noise=0.0,
    candidate_of=None,
    val_spread=0.0,
    machine=CPU,
) -> list[RunRecord]:
    """Selection and plateau runs scored val_of(variant, strength) on validation,
    +-val_spread by seed (and the opposite on test), then every final and study run with
    per-image test IoU shifted by shift_of, then the candidates' runs scored
    candidate_of(overrides) -> (validation, test shift); by default below the variant as
    swept."""
    records = []

    def missing(plan):
        return [
            spec for spec in plan(sweep_state(sweep, records)) if not found(sweep, records, spec)
        ]

    # Round by round, as the grids extend; then the plateau seeds at every point.
    while new := missing(selection_plan) or missing(plateau_plan):
        for spec in new:
            settings = spec.as_dict()
            variant, key = settings["variant"], sweep.key(settings["variant"])
            val = val_of(variant, settings.get(key)) + val_spread * (-1) ** settings["seed"]
            records.append(record_for(sweep, spec, val, -val, seed_noise, image_noise, machine))
    for spec in final_plan(sweep_state(sweep, records)) + study_plan(sweep.config):
        if not found(sweep, records, spec):
            settings = spec.as_dict()
            variant, key = settings["variant"], sweep.key(settings["variant"])
            mark = sweep.post_mark(variant)
            strength = settings.get(key, mark[0]) if mark else None
            shift = shift_of(variant, strength)
            records.append(record_for(sweep, spec, 0.0, shift, seed_noise, image_noise, machine))
    candidate_of = candidate_of or (lambda overrides: (0.0, 0.0))
    while new := missing(candidate_plan):  # the candidates, then the best one's finals
        for spec in new:
            settings = spec.as_dict()
            overrides = {k: v for k, v in settings.items() if k in candidate_keys(sweep)}
            val, shift = candidate_of(overrides)
            val = val if settings["data.val_count"] else 0.0
            records.append(record_for(sweep, spec, val, shift, seed_noise, image_noise, machine))
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


def report(sweep, records):
    """(markdown, findings) of a sweep's records."""
    found_ = findings(sweep_state(sweep, records))
    return render(found_), found_


def answer_of(text: str) -> str:
    return text.split("\n\n")[1]


def test_files_are_written_whole_and_the_same_bytes_for_records_in_any_order(sweep, tmp_path):
    records = campaign(sweep, peak_at_middle, l2_tuned_better, 0.01, 0.02, val_spread=0.01)
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
    text, found_ = report(sweep, records)
    chosen, test_best = SWEEP_GRIDS["l2"][2], SWEEP_GRIDS["l2"][0]
    assert found_.state.selection("l2").selected == chosen
    assert f"l2 @ {chosen:g}" in text and f"l2 @ {test_best:g}" not in text
    assert f"| {chosen:g} | 0.600 ± 0.000 | seed 1: 0.600, seed 2: 0.600 | **selected** |" in text
    assert "| 0.005 | 0.580 ± 0.000 | seed 1: 0.580, seed 2: 0.580 | post |" in text
    assert {r.variant: r.runs.mean for r in found_.state.references} == {
        "pure": 0.5,
        "augment": 0.5,
    }
    assert "never looked at" in text and "provisional" not in text


def test_a_clearly_better_tuned_l2_is_called_better_and_recommended(sweep):
    records = campaign(sweep, peak_at_middle, l2_tuned_better, seed_noise=0.01, image_noise=0.02)
    text, found_ = report(sweep, records)
    answer = answer_of(text)
    label = f"l2 @ {SWEEP_GRIDS['l2'][2]:g}"
    comparison = found_.families[0].comparisons[label]
    assert comparison.verdict == "better" and comparison.family_size == 6
    assert comparison.mean == pytest.approx(0.1, abs=0.02)
    assert "Against pure (unknown CPU" not in answer  # the kind is the records' own
    assert "Against pure (2-core x86_64 CPU; Holm-corrected intervals" in answer
    assert f"better: {label} (+0.1" in answer
    assert f"So: use {label}." in answer
    assert "l2 @ 0.005 (post)" in text  # the post's setting stays beside it
    # The README's block is the same answer and the final table.
    readme = main_block(found_)
    assert readme.startswith(answer) and "| `l2 @ 0.005 (post)` |" in readme
    assert "Runs trained on 2-core x86_64 CPU." in readme


def test_noise_alone_is_called_not_distinguishable_with_the_effect_it_still_allows(sweep):
    def small(variant, strength):
        return 0.01 if variant == "l2" else 0.0

    records = campaign(sweep, peak_at_middle, small, seed_noise=0.05, image_noise=0.05)
    text, found_ = report(sweep, records)
    family = found_.families[0]
    assert all(c.verdict == "not distinguishable" for c in family.comparisons.values())
    l2 = family.comparisons[f"l2 @ {SWEEP_GRIDS['l2'][2]:g}"]
    gain, loss = l2.largest_gain, l2.largest_loss
    assert loss < 0 < gain and gain == pytest.approx(l2.high)
    answer = answer_of(text)
    assert f"no more than {gain:+.3f} IoU better, no more than {-loss:.3f} worse" in answer
    assert "better: " not in answer and "worse: " not in answer
    assert "So on this evidence nothing here is worth choosing over pure." in answer


def test_holm_turns_a_borderline_single_verdict_into_a_null_in_the_family(sweep):
    """dropout's gain excludes zero alone (a family of one), not among six comparisons."""

    def borderline(variant, strength):
        return 0.012 if variant == "dropout" else 0.0

    records = campaign(sweep, peak_at_middle, borderline, seed_noise=0.01, image_noise=0.02)
    _, found_ = report(sweep, records)
    label = f"dropout @ {SWEEP_GRIDS['dropout'][2]:g}"
    alone = found_.families[0].comparisons[label].difference
    assert alone.low > 0  # uncorrected, a family of one: better
    in_family = found_.families[0].comparisons[label]
    assert in_family.family_size == 6 and in_family.verdict == "not distinguishable"


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
    assert "| variant | paper net (2-core x86_64 CPU) |" in text.split("<!-- networks:start")[1]
    before = text
    write_sweep_reports([sweep], records, tmp_path, readme)
    assert readme.read_text() == before
    readme.write_text("no block here\n")
    with pytest.raises(SfaeError, match="sweep-results:start"):
        write_sweep_reports([sweep], records, tmp_path / "other", readme)
    assert readme.read_text() == "no block here\n"


def test_the_plateau_range_and_the_collapse_are_said_in_the_readme(sweep):
    l2 = SWEEP_GRIDS["l2"]  # 5e-07 ... 0.005, the post's value last

    def curve(variant, strength):
        if variant != "l2" or strength is None:
            return peak_at_middle(variant, strength)
        return dict(zip(l2, (0.58, 0.595, 0.6, 0.59, 0.3), strict=True))[strength]

    # Seeds 1 and 2 sit 0.015 either side: the pooled SE of a mean of two is 0.015.
    records = campaign(sweep, curve, lambda v, x: 0.0, val_spread=0.015)
    _, found_ = report(sweep, records)
    flat = found_.state.selection("l2").plateau
    assert flat.se == pytest.approx(0.015) and flat.plateau == l2[1:4]
    assert flat.collapsed == (0.005,)
    assert [pick.strength for pick in flat.seed_picks] == [l2[2], l2[2]]
    said = (
        f"l2: anything from {l2[1]:g} to {l2[3]:g} does as well as {l2[2]:g}; "
        "it collapses at the post's 0.005"
    )
    assert said in main_block(found_)
    assert f"| `l2` | {l2[2]:g} | {l2[1]:g}, {l2[2]:g}, {l2[3]:g} | 0.015 |" in render(found_)


def test_one_selection_seed_gives_the_selected_value_alone_until_the_plateau_seeds_ran(unet_sweep):
    records = campaign(unet_sweep, unet_peak, lambda v, x: 0.0, val_spread=0.01)
    plateau_seeds = set(unet_sweep.settings.plateau_seeds)
    before = [r for r in records if not (r.val_count and r.seed in plateau_seeds)]
    text, found_ = report(unet_sweep, before)
    assert found_.state.selection("l2").plateau.se is None
    said = f"l2: {UNET_GRIDS['l2'][1]:g} (one selection seed: the SE, and so a range, is not "
    assert said in answer_of(text)
    text, found_ = report(unet_sweep, records)
    assert found_.state.selection("l2").plateau.se > 0 and said not in answer_of(text)


def test_best_sparse_and_best_penalty_are_picked_by_validation_not_test(sweep):
    # On validation sparse_elu beats sparse_softabs and l1 beats l2; on test it is reversed.
    lift = {"sparse_elu": 0.05, "l1": 0.05}

    def test_shift(variant, strength):
        return 0.05 if variant in ("sparse_softabs", "l2") else 0.0

    records = campaign(sweep, lambda v, x: peak_at_middle(v, x, lift), test_shift, 0.01, 0.02)
    text, found_ = report(sweep, records)
    selections = found_.state.selections
    assert best_by_validation(selections, ("sparse_softabs", "sparse_elu")).variant == "sparse_elu"
    assert best_by_validation(selections, ("l1", "l2")).variant == "l1"
    elu, l1 = SWEEP_GRIDS["sparse_elu"][2], SWEEP_GRIDS["l1"][2]
    assert found_.head.name == f"sparse_elu @ {elu:g}" and found_.head.reference == f"l1 @ {l1:g}"
    assert found_.head.family_size == 1  # a family of its own
    assert (
        f"each tuned and each the better of its kind on validation: sparse_elu @ {elu:g} minus l1"
        in text
    )


def test_a_partial_sweep_still_builds_and_says_provisional(sweep, tmp_path):
    records = campaign(sweep, peak_at_middle, l2_tuned_better)
    chosen = SWEEP_GRIDS["l2"][2]
    # l2's finals: 3 seeds missing; sparse_elu: one selection run missing, so no finals.
    n = len(sweep.final_seeds)
    l2_finals = sweep_state(sweep, records).row("l2").runs.records
    elu_point = sweep.spec("sparse_elu", 1, SWEEP_GRIDS["sparse_elu"][0])
    dropped = [*l2_finals[:3], found(sweep, records, elu_point)]
    partial = [r for r in records if not any(r is d for d in dropped)]
    paths = write_sweep_reports([sweep], partial, tmp_path)
    text = paths[0].read_text()
    answer = answer_of(text)
    assert "provisional" in answer
    assert f"l2 @ {chosen:g}: 3 of {n} final runs" in answer
    assert "sparse_elu: 1 of 10 selection runs, then its finals" in answer
    assert "sparse_elu (not selected)" in text and "sparse_elu: not selected yet" in text
    # With selection runs alone there is no answer yet, but still a report.
    selection_only = [r for r in records if r.val_count > 0]
    text = report(sweep, selection_only)[0]
    assert "No final run is recorded yet" in text
    assert "gives no answer yet" in answer_of(text)
    # Nor with the references' finals alone (pure has the study's runs): no claim about
    # regularisers that have not been tuned.
    references_only = [
        r for r in records if r.val_count > 0 or r.variant in sweep.settings.references
    ]
    answer = answer_of(report(sweep, references_only)[0])
    assert "gives no answer yet" in answer and "better:" not in answer


def test_an_extended_grid_that_selects_the_posts_value_gives_one_row(sweep):
    # l2's validation IoU rises to the grid's end (the post's 0.005), then falls beyond it.
    def rising(variant, strength):
        if variant != "l2" or strength is None:
            return peak_at_middle(variant, strength)
        return 0.7 if strength == 0.005 else 0.6 if strength < 0.005 else 0.5

    records = campaign(sweep, rising, lambda variant, strength: 0.0)
    text = report(sweep, records)[0]
    grid = "5e-07, 5e-06, 5e-05, 0.0005, 0.005, 0.05"
    assert f"| `l2` | `variants.l2.regularizer_scale` | {grid} | 0.05 | yes | 0.005 |" in text
    assert "| 0.005 | 0.700 ± 0.000 | seed 1: 0.700, seed 2: 0.700 | **selected**, post |" in text
    seeds = len(sweep.final_seeds)
    assert text.count(f"| `l2 @ 0.005 (post)` | {seeds} |") == 1 and "| `l2 @ 0.005` |" not in text


def test_runs_of_another_machine_kind_are_left_out_and_listed(sweep):
    records = campaign(sweep, peak_at_middle, l2_tuned_better, 0.01, 0.02)
    alone = report(sweep, records)[0]
    gpu = [replace(r, machine=GPU) for r in records if r.variant == "augment" and not r.val_count]
    mixed = Sweep(sweep.config, sweep.params, "paper", "2-core x86_64 CPU")
    text = report(mixed, records + gpu)[0]
    left = (
        "Records of planned runs that trained on another machine kind, left out (every "
        "comparison here reads runs of 2-core x86_64 CPU only): NVIDIA H100 80GB HBM3 GPU: 10 "
        "(augment seed 1 final, augment seed 2 final"
    )
    assert left in text and left not in alone
    assert text.replace(text[text.index("- Records of") :], "") in alone


def unet_peak(variant, strength):
    return peak_at_middle(variant, strength, grids=UNET_GRIDS)


def l2_tuned_better_unet(variant, strength):
    return 0.1 if variant == "l2" and strength == UNET_GRIDS["l2"][1] else 0.0


def test_the_unet_report_has_its_own_files_seeds_and_no_post_rows(sweep, unet_sweep, tmp_path):
    # Paper runs sit in the same records and must not count for the U-Net.
    paper = campaign(sweep, peak_at_middle, lambda v, x: 0.0)
    records = paper + campaign(unet_sweep, unet_peak, l2_tuned_better_unet, 0.01, 0.02)
    paths = write_sweep_reports([sweep, unet_sweep], records, tmp_path)
    assert [p.name for p in paths] == [
        "sweep.md",
        "sweep_selection.png",
        "sweep_unet.md",
        "sweep_unet_selection.png",
    ]
    text = paths[2].read_text()
    assert text.startswith("# Every regulariser at its best strength: the sweep (U-Net)")
    assert "selection seeds 1 (selection seeds: 1)" in text and "(final seeds: 5)" in text
    assert "(post)" not in text.split("## Final runs")[1]  # the study trained the paper net
    chosen = UNET_GRIDS["l2"][1]
    assert f"| `l2 @ {chosen:g}` | 5 |" in text and f"So: use l2 @ {chosen:g}." in text
    # The paper net's report is unchanged by the U-Net's runs.
    alone = write_sweep_reports([sweep], paper, tmp_path / "alone")
    assert paths[0].read_bytes() == alone[0].read_bytes()


def test_the_networks_block_says_whether_the_answer_changed(sweep, unet_sweep):
    paper = campaign(sweep, peak_at_middle, l2_tuned_better, 0.01, 0.02)
    sweeps = [sweep, unet_sweep]

    def block(records):
        return networks_block([findings(sweep_state(s, records)) for s in sweeps])

    same = paper + campaign(unet_sweep, unet_peak, l2_tuned_better_unet, 0.01, 0.02)
    table = block(same)
    assert "| variant | paper net (2-core x86_64 CPU) | U-Net (2-core x86_64 CPU) |" in table
    l2_row = next(line for line in table.splitlines() if line.startswith("| `l2` |"))
    paper_cell, unet_cell = l2_row.strip(" |").split(" | ")[1:3]
    assert paper_cell.startswith("0.65") and paper_cell.endswith(
        f"(n = 10) @ {SWEEP_GRIDS['l2'][2]:g}"
    )
    assert unet_cell.startswith("0.65") and unet_cell.endswith(f"(n = 5) @ {UNET_GRIDS['l2'][1]:g}")
    assert "paper net: better: l2; not distinguishable: " in table
    assert "The answer holds on every network." in table
    other = paper + campaign(unet_sweep, unet_peak, lambda v, x: 0.0, 0.01, 0.02)
    table = block(other)
    assert (
        "U-Net: not distinguishable: augment, dropout, l1, l2, sparse_elu, sparse_softabs" in table
    )
    assert (
        "The answer changed with the network, and so did the recommendation "
        "(paper net: l2; U-Net: none)." in table
    )

    def l2_and_less_l1_better(variant, strength):
        less = 0.05 if variant == "l1" and strength == UNET_GRIDS["l1"][1] else 0.0
        return l2_tuned_better_unet(variant, strength) or less

    table = block(paper + campaign(unet_sweep, unet_peak, l2_and_less_l1_better, 0.01, 0.02))
    assert "U-Net: better: l1, l2; not distinguishable: " in table
    assert "The answer changed with the network, but every network recommends l2." in table
    unfinished = [r for r in other if not (r.variant == "augment" and r.val_count == 0)]
    table = block(unfinished)
    assert "| `augment` | pending | pending |" in table
    assert "Whether the answer holds for every network is open" in table
    one_seed = [
        r for r in other if not (r.variant == "augment" and r.val_count == 0 and r.seed > 1)
    ]
    augment_row = next(
        line for line in block(one_seed).splitlines() if line.startswith("| `augment` |")
    )
    assert augment_row.endswith("(n = 1) |"), augment_row


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
        leader = sweep_state(unet_sweep, records).leader
        label = ", ".join(f"{k.rsplit('.', 1)[-1]} {v}" for k, v in first.items())
        mean = float(np.mean(BASE)) + lift
        said = (
            f"The best setting on validation, {leader.label}, {label}, gives {mean:.3f} ± 0.000 "
            f"test IoU (final seeds: 5): its mean {verdict} the goal of 0.70."
        )
        assert f"{leader.label} has the best validation IoU" in text
        assert f"| {label} | 0.900 | 10.0 | **best** |" in text and said in text
        # Against the leader as swept (test shift 0), seeds and images: +lift, no noise.
        assert f"minus {leader.label} as swept: {lift:+.3f} per-image test IoU" in text
        assert f"better than {leader.label} as swept" in text
        assert f"Other settings of {leader.label} for the U-Net" in readme.read_text()
        assert said in readme.read_text()
    # Until the best candidate's finals are in, the report says how many are.
    records = [
        r
        for r in records
        if not (r.val_count == 0 and r.seed == 1 and r.params.items() >= first.items())
    ]
    text = report(unet_sweep, records)[0]
    n = len(unet_sweep.final_seeds)
    said = f"The best setting on validation is {leader.label}, {label}; {n - 1} of its {n} final "
    assert said in text


# ---------------------------------------------------------------- named sweeps


@pytest.fixture(scope="module")
def stacked(sweep) -> Sweep:
    return Sweep(sweep.config, sweep.params, "unet_stacked")


@pytest.fixture(scope="module")
def unlabeled(sweep) -> Sweep:
    return Sweep(sweep.config, sweep.params, "unet_unlabeled")


def test_a_named_sweep_with_no_runs_says_what_is_missing(sweep, stacked, unlabeled, tmp_path):
    readme = tmp_path / "README.md"
    names = ["sweep-results", "networks", "sweep-unet_stacked", "sweep-unet_unlabeled"]
    readme.write_text("".join(f"<!-- {n}:start -->\n<!-- {n}:end -->\n" for n in names))
    paths = write_sweep_reports([sweep, stacked, unlabeled], [], tmp_path, readme)
    assert [p.name for p in paths[2:6]] == [
        "sweep_unet_stacked.md",
        "sweep_unet_stacked_selection.png",
        "sweep_unet_unlabeled.md",
        "sweep_unet_unlabeled_selection.png",
    ]
    text = paths[2].read_text()
    assert text.startswith(
        "# Every regulariser at its best strength: the sweep unet_stacked (U-Net)"
    )
    assert "augment_dropout: 3 of 3 selection runs, then its finals" in answer_of(text)
    block = readme.read_text().split("<!-- sweep-unet_stacked:start -->\n")[1]
    assert block.startswith(
        "**`sweep.unet_stacked`** (U-Net: augment_dropout, augment_l2 and augment_sparse, each "
        "at its strength selected on validation, compared with augment; "
        "[reports/sweep_unet_stacked.md](reports/sweep_unet_stacked.md)). No regulariser has"
    )


def test_a_stacked_sweep_compares_with_augment(stacked):
    def stacked_peak(variant, strength):
        return (
            0.5
            if strength is None
            else 0.6 - abs(math.log10(strength / stacked.settings.grids[variant][1])) / 10
        )

    def dropout_adds(variant, strength):
        return 0.1 if variant == "augment_dropout" else 0.0

    records = campaign(stacked, stacked_peak, dropout_adds, 0.01, 0.02)
    text, found_ = report(stacked, records)
    (family,) = found_.families
    assert family.reference == "augment" and family.size == 3
    assert [c.verdict for c in family.comparisons.values()] == [
        "better",
        "not distinguishable",
        "not distinguishable",
    ]
    peak = stacked.settings.grids["augment_dropout"][1]  # where stacked_peak puts the best
    assert f"So: use augment_dropout @ {peak:g}." in answer_of(text)
    assert found_.head is None  # no tuned L1/L2 or sparse_* variant of the post's kinds


def test_the_unlabeled_sweep_has_two_families_and_says_where_its_frames_come_from(unlabeled):
    def frames_help(variant, strength):
        return 0.08 if variant == "sparse_softabs_frames" else 0.0

    def peak(variant, strength):
        return 0.5 if strength is None else 0.6 - abs(math.log10(strength / 1.75)) / 10

    records = campaign(unlabeled, peak, frames_help, 0.01, 0.02)
    text, found_ = report(unlabeled, records)
    assert [f.reference for f in found_.families] == ["sparse_softabs", "pure"]
    against_sparse, against_pure = found_.families
    assert list(against_sparse.comparisons) == ["pure", "sparse_softabs_frames @ 1.75"]
    assert against_sparse.comparisons["sparse_softabs_frames @ 1.75"].verdict == "better"
    assert against_pure.comparisons["sparse_softabs_frames @ 1.75"].verdict == "better"
    assert "### Compared with sparse_softabs, image by image" in text
    assert "### Compared with pure, image by image" in text
    assert (
        "The training of sparse_softabs_frames also sees unlabeled Mall frames (1500 for "
        "sparse_softabs_frames): they come from the camera of the scored ones (the first 500 "
        "frames), so the Mall scores above are no clean measure of how far a network "
        "generalises; the Penn-Fudan test IoU is."
    ) in text
    assert "| Mall head hit rate |" in text
