"""The study report and its parts (statistics, comparisons, claims, markdown, figures): summary
statistics, the Holm families of verdicts, claim verdicts, and the written files, on hand-made
run records whose right answers are known."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from sfae.config import POST_VARIANTS as VARIANTS
from sfae.errors import SfaeError
from sfae.experiments.records import RunRecord
from sfae.reports.claims import claims
from sfae.reports.figures import write_variants_gif
from sfae.reports.intervals import Difference, holm
from sfae.reports.markdown import markdown_table, tally
from sfae.reports.statistics import Comparison, compare_family, group_by_variant, summary_table
from sfae.reports.study_report import render_markdown, write_report
from sfae.reports.wording import reading

SEEDS = (1, 2)
IMAGES = [f"FudanPed{number:05d}" for number in range(1, 11)]
# Per-image IoU of pure's first seed; the second seed is 0.02 higher everywhere.
PURE_IMAGE_IOU = dict(zip(IMAGES, np.linspace(0.3, 0.8, len(IMAGES)).tolist(), strict=True))
DEFAULT_SCORES = {
    "test_iou": 0.5,
    "test_dice": 0.6,
    "boundary_f1": 0.4,
    "iou_gap": 0.2,
    "head_hit_rate": 0.5,
    "false_foreground": 0.3,
    "count_correlation": 0.4,
    "foreground_share": 0.2,
}
# Scores per variant, one value per seed in SEEDS; unlisted scores take DEFAULT_SCORES.
STUDY_SCORES = {
    "pure": {
        "test_iou": (0.5, 0.7),
        "foreground_share": (0.8, 0.9),
        "false_foreground": (0.6, 0.7),
    },
    "l1": {"test_iou": (0.55, 0.57), "foreground_share": (0.5, 0.5)},
    "l2": {"test_iou": (0.58, 0.6), "boundary_f1": (0.5, 0.6)},
    "sparse_softabs": {"test_iou": (0.6, 0.62), "boundary_f1": (0.55, 0.55)},
    "sparse_elu": {"test_iou": (0.62, 0.66), "boundary_f1": (0.7, 0.8), "iou_gap": (0.1, 0.1)},
}
# Per-image IoU shift from pure, so the comparisons with pure are known in advance.
IMAGE_SHIFTS = {"l1": -0.1, "l2": 0.0, "sparse_softabs": 0.0, "sparse_elu": 0.1}


COMMIT = "0123456789abcdef0123456789abcdef01234567"
PARAMS = {"seed": 6278, "render": {"fps": 10, "alpha": 0.45, "colormap": "jet"}}


def run_record(
    variant, seed, per_image_iou, train_seconds=100.0, commit=COMMIT, **scores
) -> RunRecord:
    score = DEFAULT_SCORES | scores
    pooled = {
        "iou": score["test_iou"],
        "dice": score["test_dice"],
        "precision": 0.7,
        "recall": 0.7,
        "accuracy": 0.9,
        "boundary_precision": 0.5,
        "boundary_recall": 0.5,
        "boundary_f1": score["boundary_f1"],
    }
    train_iou = score["test_iou"] + score["iou_gap"]
    return RunRecord(
        variant=variant,
        seed=seed,
        name=f"{variant}-seed{seed}",
        rev=f"{VARIANTS.index(variant)}{seed}" * 20,
        evaluate={
            "test": {"pooled": pooled, "mean": dict(pooled)},
            "train": {"iou_pooled": train_iou, "iou_mean": train_iou},
            "gap": {"iou_pooled": score["iou_gap"], "iou_mean": score["iou_gap"]},
        },
        mall={
            "head_hit_rate": score["head_hit_rate"],
            "false_foreground": score["false_foreground"],
            "count_correlation": score["count_correlation"],
            "heads_in_roi": 120,
            "frames": 10,
            "foreground_share": score["foreground_share"],
        },
        train_seconds=train_seconds,
        per_image_iou=per_image_iou,
        commit=commit,
        machine="test machine, 4 CPUs",
        packages={"python": "3.12.0", "numpy": "2.0.0"},
    )


def image_iou(variant: str, seed_index: int) -> dict[str, float]:
    if variant == "pure":
        return {name: iou + 0.02 * seed_index for name, iou in PURE_IMAGE_IOU.items()}
    if variant in ("l2", "sparse_softabs"):
        # Alternating +-0.2 around pure: mean difference 0, wide spread.
        return {
            name: iou + (0.2 if number % 2 else -0.2) + 0.02 * seed_index
            for number, (name, iou) in enumerate(PURE_IMAGE_IOU.items())
        }
    # Small image-to-image noise around a clear shift.
    return {
        name: iou + IMAGE_SHIFTS[variant] + 0.01 * ((number % 3) - 1) + 0.02 * seed_index
        for number, (name, iou) in enumerate(PURE_IMAGE_IOU.items())
    }


def study_records(variants=VARIANTS) -> list[RunRecord]:
    records = []
    for variant in variants:
        for seed_index, seed in enumerate(SEEDS):
            scores = {
                metric: values[seed_index] for metric, values in STUDY_SCORES[variant].items()
            }
            seconds = 60.0 * (VARIANTS.index(variant) + 1) + seed
            records.append(
                run_record(variant, seed, image_iou(variant, seed_index), seconds, **scores)
            )
    return records


def summary(records) -> dict:
    return summary_table(group_by_variant(records))


def compare_to_pure(records) -> dict[str, Comparison]:
    return compare_family(group_by_variant(records), "pure").comparisons


def flat_table(**overrides: dict[str, float]) -> dict:
    """A summary table with every score at its default for every variant, 3 seeds, std 0;
    overrides: metric -> {variant: mean}."""
    table = {
        variant: {metric: (value, 0.0, 3) for metric, value in DEFAULT_SCORES.items()}
        for variant in VARIANTS
    }
    for metric, means in overrides.items():
        for variant, mean in means.items():
            table[variant][metric] = (mean, 0.0, 3)
    return table


def comparison(verdict: str = "not distinguishable", name: str = "l1") -> Comparison:
    """A Comparison with pure whose (family of one) verdict is `verdict`."""
    mean = {"better": 0.03, "worse": -0.03}.get(verdict, 0.0)
    seeds = (1, 2, 3)
    difference = Difference(mean, mean, mean, 0.01, 10.0, 0.95, 0.5, 10, seeds, seeds, True)
    p_value = 1e-4 if mean else 0.9
    difference = replace(difference, p_value=p_value).at_level(0.95)
    return Comparison(**vars(holm({name: difference})[name]), reference="pure", kind="unknown")


def comparisons(**verdicts: str) -> dict:
    return {variant: comparison(verdicts.get(variant, ""), variant) for variant in VARIANTS[1:]}


def verdict_of(claim_number: int, table: dict, compared: dict | None = None) -> str:
    return claims(table, compared or comparisons())[claim_number - 1].verdict


# summary_table


def test_summary_table_means_and_sample_std_as_computed_by_hand():
    table = summary(study_records())
    assert list(table) == list(VARIANTS)
    mean, spread, seeds = table["pure"]["test_iou"]
    assert mean == pytest.approx(0.6)
    assert spread == pytest.approx(math.sqrt(0.02))  # (0.1^2 + 0.1^2) / (2 - 1), rooted: 0.1414
    assert seeds == 2
    assert table["pure"]["foreground_share"][:2] == pytest.approx((0.85, math.sqrt(0.005)))
    assert table["sparse_elu"]["boundary_f1"][:2] == pytest.approx((0.75, math.sqrt(0.005)))
    assert table["l1"]["foreground_share"] == pytest.approx((0.5, 0.0, 2))
    assert table["sparse_elu"]["iou_gap"][0] == pytest.approx(0.1)
    assert set(table["l2"]) == {
        "test_iou",
        "test_dice",
        "boundary_f1",
        "iou_gap",
        "head_hit_rate",
        "false_foreground",
        "count_correlation",
        "foreground_share",
    }


def test_summary_table_single_seed_has_zero_std():
    table = summary([run_record("l2", 5, {}, test_iou=0.42)])
    assert list(table) == ["l2"]
    for metric, value in (DEFAULT_SCORES | {"test_iou": 0.42}).items():
        assert table["l2"][metric] == pytest.approx((value, 0.0, 1))


def test_summary_table_rejects_a_seed_counted_twice():
    twice = [run_record("l1", 3, {}), run_record("l1", 3, {})]
    with pytest.raises(SfaeError, match="second run of l1 with seed 3"):
        summary(twice)


def test_summary_table_names_the_run_missing_a_score():
    record = run_record("l1", 3, {})
    del record.mall["foreground_share"]
    with pytest.raises(SfaeError, match="l1-seed3.*mall.json has no foreground_share"):
        summary([record])


# compare_family: one Holm family of verdicts


def test_compare_to_pure_says_which_variants_differ():
    compared = compare_to_pure(study_records())
    assert list(compared) == list(VARIANTS[1:])
    elu, l1, l2 = compared["sparse_elu"], compared["l1"], compared["l2"]
    assert elu.mean == pytest.approx(0.1, abs=0.01) and elu.low > 0
    assert elu.verdict == "better" and elu.family_size == 4
    assert reading(elu).endswith(
        "(Holm, a family of 4; seeds: 2 paired; images: 10): better than pure."
    )
    assert l1.verdict == "worse" and reading(l1).endswith("worse than pure.")
    assert l2.mean == pytest.approx(0.0, abs=1e-12) and l2.low < 0 < l2.high
    assert l2.verdict == "not distinguishable"
    assert "not distinguishable from pure; it allows no more than +" in reading(l2)
    assert l2.difference.n_images == len(IMAGES) and l2.difference.ours_seeds == SEEDS


def test_holm_turns_a_borderline_verdict_into_a_null_in_a_larger_family():
    """A gain whose interval just excludes zero alone does not once three more are compared."""
    rng = np.random.default_rng(5)
    seeds = (1, 2, 3, 4, 5)
    base = {image: iou for image, iou in PURE_IMAGE_IOU.items()}

    def runs(variant, shift, spread):
        return [
            run_record(
                variant,
                seed,
                {i: v + shift + spread * rng.standard_normal() for i, v in base.items()},
            )
            for seed in seeds
        ]

    pure = runs("pure", 0.0, 0.01)
    borderline = runs("l1", 0.0, 0.01)
    # Shift l1 until its uncorrected p-value lies between 0.01 and 0.05.
    shifted = [
        replace(r, per_image_iou={i: v + 0.003 for i, v in r.per_image_iou.items()})
        for r in borderline
    ]
    alone = compare_family({"pure": pure, "l1": shifted}, "pure").comparisons["l1"]
    assert 0.01 < alone.difference.p_value < 0.05 and alone.verdict == "better"
    others = {name: runs(name, 0.0, 0.01) for name in ("l2", "sparse_softabs", "sparse_elu")}
    family = compare_family({"pure": pure, "l1": shifted, **others}, "pure")
    in_family = family.comparisons["l1"]
    assert in_family.difference == alone.difference  # the same estimate ...
    assert in_family.family_size == 4 and in_family.verdict == "not distinguishable"
    assert in_family.low < 0 < in_family.high  # ... at a stricter level


def test_a_comparison_refuses_to_mix_machine_kinds():
    cpu = "Linux-x, x86_64, 2 CPUs"
    gpu = "Linux-y, x86_64, 16 CPUs, NVIDIA H100 80GB HBM3"
    groups = group_by_variant(study_records(("pure", "l1")))
    groups["pure"] = [replace(r, machine=cpu) for r in groups["pure"]]
    groups["l1"] = [replace(groups["l1"][0], machine=cpu), replace(groups["l1"][1], machine=gpu)]
    with pytest.raises(SfaeError) as caught:
        compare_family(groups, "pure")
    message = str(caught.value)
    assert (
        "2-core x86_64 CPU (" in message
        and "NVIDIA H100 80GB HBM3 GPU (l1 run l1-seed2)" in message
    )
    assert "\n" not in message and "a comparison reads one kind" in message


def test_a_collapsed_run_stays_in_its_group_and_is_named():
    records = study_records(("pure", "l1"))
    zero = {image: 0.0 for image in IMAGES}
    collapsed = replace(run_record("l1", 3, zero, test_iou=0.0), name="fell-over")
    pure3 = run_record("pure", 3, PURE_IMAGE_IOU)
    family = compare_family(group_by_variant([*records, collapsed, pure3]), "pure")
    assert [r.name for r in family.collapsed] == ["fell-over"]
    assert family.comparisons["l1"].difference.ours_seeds == (1, 2, 3)  # not dropped
    text = render_markdown(study_records() + [collapsed, pure3], PARAMS)
    assert "l1 seed 3 (`fell-over`, 0.000)" in text and "the intervals carry them" in text


def test_a_group_with_one_run_is_pending_and_counts_in_the_family():
    groups = group_by_variant(study_records(("pure", "l1", "l2")))
    groups["l2"] = groups["l2"][:1]
    family = compare_family(groups, "pure")
    assert family.pending == ("l2",) and family.size == 2
    assert family.comparisons["l1"].family_size == 2


def test_a_reference_with_one_run_leaves_every_comparison_pending():
    groups = group_by_variant(study_records(("pure", "l1", "l2")))
    groups["pure"] = groups["pure"][:1]
    family = compare_family(groups, "pure")
    assert family.pending == ("l1", "l2") and family.comparisons == {}
    assert family.size == 2 and family.kind is None


def test_a_collapsed_run_of_the_reference_is_named_too():
    records = study_records(("pure", "l1"))
    zero = {image: 0.0 for image in IMAGES}
    collapsed = replace(run_record("pure", 3, zero, test_iou=0.0), name="pure-fell-over")
    l1_3 = run_record("l1", 3, image_iou("l1", 0))
    family = compare_family(group_by_variant([*records, collapsed, l1_3]), "pure")
    assert [r.name for r in family.collapsed] == ["pure-fell-over"]
    assert family.comparisons["l1"].difference.reference_seeds == (1, 2, 3)  # not dropped


def test_compare_pairs_only_the_shared_images():
    records = study_records(("pure",)) + [
        run_record("l1", 1, {"FudanPed00001": 0.5, "FudanPed00002": 0.2, "other": 0.9}),
        run_record("l1", 2, {"FudanPed00001": 0.7, "FudanPed00002": 0.1}),
    ]
    compared = compare_to_pure(records)["l1"]
    # Images 1 and 2 are in every run: (0.6 + 0.15) / 2 - (0.31 + 0.3656) / 2.
    assert compared.difference.n_images == 2
    pure_2 = PURE_IMAGE_IOU["FudanPed00002"] + 0.01
    assert compared.mean == pytest.approx((0.6 + 0.15) / 2 - (0.31 + pure_2) / 2)


def test_compare_fails_without_two_shared_images():
    records = study_records(("pure",)) + [
        run_record("l2", seed, {"elsewhere": 0.5}) for seed in SEEDS
    ]
    with pytest.raises(SfaeError, match="l2 and pure share 0 per-image test IoU names"):
        compare_to_pure(records)


def test_compare_needs_its_reference():
    with pytest.raises(SfaeError, match="no group 'pure'"):
        compare_to_pure(study_records(("l1", "l2")))


def test_compare_takes_any_groups_and_reference():
    # The sweep's use: the best sparse setting against the best L1/L2 one.
    by_variant = group_by_variant(study_records())
    groups = {"best L1/L2": by_variant["l1"], "best sparse": by_variant["sparse_elu"]}
    family = compare_family(groups, "best L1/L2")
    assert list(family.comparisons) == ["best sparse"] and family.size == 1
    sparse = family.comparisons["best sparse"]
    assert sparse.reference == "best L1/L2" and sparse.verdict == "better"
    assert sparse.mean == pytest.approx(0.2, abs=0.01)
    assert reading(sparse).startswith("best sparse minus best L1/L2: +0.200 per-image test IoU")


# claims


def test_claims_cover_the_six_blog_statements_with_numbers_as_evidence():
    table = summary(study_records())
    checked = claims(table, compare_to_pure(study_records()))
    assert len(checked) == 6
    assert all(item.verdict in ("agrees", "disagrees", "mixed") for item in checked)
    # The evidence quotes the computed numbers: pure's foreground share 0.85 ± 0.071.
    assert "pure 0.850 ± 0.071" in checked[0].evidence
    assert [item.verdict for item in checked] == [
        "agrees",  # pure: highest foreground share (0.85) and false foreground (0.65)
        "agrees",  # l1's share 0.5 is above l2's and the sparse variants' 0.2
        "agrees",  # l2's boundary F1 0.55 is above l1's 0.4
        "mixed",  # sparse_softabs's 0.55 beats pure and l1 but only ties l2
        "agrees",  # sparse_elu's 0.75 is the highest
        "agrees",  # sparse_elu: higher IoU, smaller gap, distinguishably better than pure
    ]


def test_claim_pure_marks_everything_flips_with_the_numbers():
    highest = {"foreground_share": {"pure": 0.95}, "false_foreground": {"pure": 0.9}}
    lowest = {"foreground_share": {"pure": 0.05}, "false_foreground": {"pure": 0.01}}
    one_of_two = {"foreground_share": {"pure": 0.95}, "false_foreground": {"pure": 0.01}}
    assert verdict_of(1, flat_table(**highest)) == "agrees"
    assert verdict_of(1, flat_table(**lowest)) == "disagrees"
    assert verdict_of(1, flat_table(**one_of_two)) == "mixed"
    assert "pure 0.950 ± 0.000" in claims(flat_table(**highest), comparisons())[0].evidence


def test_claim_l1_redder_compares_with_the_other_regularised_variants():
    assert verdict_of(2, flat_table(foreground_share={"l1": 0.6, "pure": 0.9})) == "agrees"
    assert verdict_of(2, flat_table(foreground_share={"l1": 0.1})) == "disagrees"
    assert verdict_of(2, flat_table(foreground_share={"l1": 0.3, "l2": 0.4})) == "mixed"


def test_claim_l2_sharper_than_l1_flips_with_the_numbers():
    assert verdict_of(3, flat_table(boundary_f1={"l2": 0.6, "l1": 0.5})) == "agrees"
    assert verdict_of(3, flat_table(boundary_f1={"l2": 0.5, "l1": 0.6})) == "disagrees"


def test_claim_softabs_clearest_boundary_flips_with_the_numbers():
    assert verdict_of(4, flat_table(boundary_f1={"sparse_softabs": 0.6})) == "agrees"
    assert verdict_of(4, flat_table(boundary_f1={"sparse_softabs": 0.1})) == "disagrees"
    assert verdict_of(4, flat_table(boundary_f1={"sparse_softabs": 0.5, "l2": 0.7})) == "mixed"


def test_claim_elu_sharpest_flips_with_the_numbers():
    assert verdict_of(5, flat_table(boundary_f1={"sparse_elu": 0.9})) == "agrees"
    runner_up = {"sparse_elu": 0.8, "sparse_softabs": 0.9}
    assert verdict_of(5, flat_table(boundary_f1=runner_up)) == "mixed"
    assert verdict_of(5, flat_table(boundary_f1={"sparse_elu": 0.1})) == "disagrees"


def test_claim_sparse_regularises_better_uses_means_and_the_intervals():
    sparse_ahead = flat_table(
        test_iou={"sparse_elu": 0.7, "l2": 0.6}, iou_gap={"sparse_elu": 0.1, "l2": 0.15}
    )
    assert verdict_of(6, sparse_ahead, comparisons(sparse_elu="better")) == "agrees"
    # Ahead on the means, but its gain over pure is within the noise.
    assert verdict_of(6, sparse_ahead, comparisons()) == "mixed"
    penalty_ahead = flat_table(
        test_iou={"sparse_elu": 0.6, "l2": 0.7}, iou_gap={"sparse_elu": 0.15, "l2": 0.1}
    )
    assert verdict_of(6, penalty_ahead, comparisons(sparse_elu="better")) == "disagrees"
    split = flat_table(test_iou={"sparse_elu": 0.7, "l2": 0.6}, iou_gap={"sparse_elu": 0.3})
    assert verdict_of(6, split, comparisons(sparse_elu="better")) == "mixed"
    evidence = claims(sparse_ahead, comparisons(sparse_elu="better"))[5].evidence
    assert "sparse_elu 0.700 ± 0.000" in evidence and "l2 0.600 ± 0.000" in evidence


def test_claims_need_every_variant():
    table = flat_table()
    del table["l2"]
    with pytest.raises(SfaeError, match="lacks l2"):
        claims(table, comparisons())


def test_claims_need_comparisons_with_pure():
    compared = comparisons()
    compared["l1"] = replace(compared["l1"], reference="l2")
    with pytest.raises(SfaeError, match="comparisons with pure, not of l1"):
        claims(flat_table(), compared)


def test_claims_with_one_seed_say_the_comparison_is_pending():
    """One seed per variant (a first trial, a share of a study): no comparison yet, so the
    sixth claim cannot be "agrees" and says what it waits for."""
    sparse_ahead = flat_table(
        test_iou={"sparse_elu": 0.7, "l2": 0.6}, iou_gap={"sparse_elu": 0.1, "l2": 0.2}
    )
    sixth = claims(sparse_ahead, {})[5]
    assert sixth.verdict == "mixed"
    assert "sparse_elu: pending (a comparison needs two or more seeds" in sixth.evidence


# render_markdown


def test_markdown_names_every_variant_and_formats_the_table():
    text = render_markdown(study_records(), PARAMS)
    for variant in VARIANTS:
        assert f"`{variant}`" in text
    assert "| `pure` | 2 | 0.600 ± 0.141 |" in text
    assert "sparse_elu has the best mean test IoU (0.640 ± 0.028, seeds: 2)." in text
    headline = text.split("\n\n")[1]
    assert "a family of 4): better: sparse_elu (+0.099; " in headline
    assert "; worse: l1 (-0.101; " in headline
    assert "; not distinguishable: l2 (+0.000; no more than +" in headline
    assert "![" in text and "(study.png)" in text and "(mall_variants.gif)" in text
    assert "**How the verdicts are made.**" in text and "interval_coverage.txt" in text
    assert "| `l2` | +0.000 |" in text and "No final run collapsed" in text
    assert f"- Runs per git commit (the one each experiment derives from): `{COMMIT}`." in text
    assert "- Runs per machine: test machine, 4 CPUs." in text and "| `numpy` | 2.0.0 |" in text
    assert "Runs trained on unknown." in text  # "test machine, 4 CPUs" names no kind
    assert "```yaml\nseed: 6278\n" in text
    assert "the 10 Penn-Fudan test images and the 10 CUHK Mall frames" in text
    assert "| `sparse_elu` | 5.0 min | 5.0 min | 10.1 min |" in text  # one unit per column set


def test_markdown_holds_only_what_the_records_hold():
    # No study wall time and no failed-run list: neither is in a record, so a fresh clone
    # could not rebuild them; the runner prints failures instead.
    text = render_markdown(study_records(), PARAMS).lower()
    assert "wall time of the whole study" not in text
    assert "failed" not in text
    # Nor does the order the records come in change a byte.
    assert render_markdown(study_records()[::-1], PARAMS).lower() == text


def test_markdown_lists_every_commit_machine_and_package_version():
    records = study_records()
    later = "fedcba9876543210fedcba9876543210fedcba98"
    records[-3:] = [
        replace(record, commit=later, machine="other machine", packages={"numpy": "2.1.0"})
        for record in records[-3:]
    ]
    text = render_markdown(records, PARAMS)
    assert f"derives from): `{COMMIT}` (runs: 7); `{later}` (runs: 3)." in text
    assert "- Runs per machine: other machine (runs: 3); test machine, 4 CPUs (runs: 7)." in text
    assert "| `numpy` | 2.0.0 (runs: 7); 2.1.0 (runs: 3) |" in text
    assert "| `python` | not recorded (runs: 3); 3.12.0 (runs: 7) |" in text


def test_markdown_table_and_tally():
    assert markdown_table(["a", "b"], [["x|y", 1]]) == [
        "| a | b |",
        "| --- | --- |",
        "| x\\|y | 1 |",
    ]
    assert tally(["b", "a", "b"], code=True) == "`a` (runs: 1); `b` (runs: 2)"
    assert tally(["a", "a"]) == "a"


# write_report and the GIF

FRAME_WIDTH, FRAME_HEIGHT, PANEL_WIDTH = 64, 48, 32


def tiny_frames(count: int = 3) -> list[np.ndarray]:
    # Distinct frames, because Pillow merges identical consecutive GIF frames into one.
    return [np.full((FRAME_HEIGHT, FRAME_WIDTH, 3), 60 + 50 * i, np.uint8) for i in range(count)]


def tiny_probabilities(count: int = 3, tinted: str | None = None) -> dict[str, np.ndarray]:
    maps = {variant: np.zeros((count, 8, 8), np.float32) for variant in VARIANTS}
    if tinted:
        maps[tinted][:] = 1.0
    return maps


def test_write_report_writes_markdown_chart_and_gif(tmp_path: Path):
    written = write_report(
        study_records(), PARAMS, tmp_path / "reports", tiny_frames(), tiny_probabilities()
    )
    assert [path.name for path in written] == ["study.md", "study.png", "mall_variants.gif"]
    assert all(path.is_file() for path in written)
    assert "(mall_variants.gif)" in written[0].read_text()
    with Image.open(written[1]) as chart:
        assert chart.format == "PNG" and chart.size == (1200, 600)
    gif = iio.imread(written[2], index=None)
    assert len(gif) == 3
    assert gif.shape[2] == len(VARIANTS) * 192  # the default panel width
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted(
        p.name for p in written
    )


def test_write_report_twice_gives_the_same_bytes(tmp_path: Path):
    first = [path.read_bytes() for path in write_report(study_records(), PARAMS, tmp_path / "a")]
    second = [path.read_bytes() for path in write_report(study_records(), PARAMS, tmp_path / "b")]
    assert first[0] == second[0]  # study.md
    assert first[1] == second[1]  # study.png


def test_write_report_without_mall_frames_keeps_the_gif(tmp_path: Path):
    (tmp_path / "mall_variants.gif").write_bytes(b"committed GIF")
    written = write_report(study_records(), PARAMS, tmp_path)
    assert [path.name for path in written] == ["study.md", "study.png"]
    assert "(mall_variants.gif)" in written[0].read_text()
    assert (tmp_path / "mall_variants.gif").read_bytes() == b"committed GIF"


def test_variants_gif_puts_the_panels_side_by_side_in_variant_order(tmp_path: Path):
    path = tmp_path / "variants.gif"
    write_variants_gif(
        tiny_frames(), tiny_probabilities(tinted="sparse_elu"), path, width_per_panel=PANEL_WIDTH
    )
    gif = iio.imread(path, index=None)[..., :3].astype(int)
    assert gif.shape == (3, FRAME_HEIGHT * PANEL_WIDTH // FRAME_WIDTH, 5 * PANEL_WIDTH, 3)
    # Below the label, only the last panel (sparse_elu, probability 1) is tinted red by jet.
    below_label = gif[:, -8:]
    redness = [
        np.mean(below_label[..., k * PANEL_WIDTH : (k + 1) * PANEL_WIDTH, 0])
        - np.mean(below_label[..., k * PANEL_WIDTH : (k + 1) * PANEL_WIDTH, 1])
        for k in range(len(VARIANTS))
    ]
    assert redness[-1] > 30 and all(abs(value) < 5 for value in redness[:-1])


def test_variants_gif_names_missing_probabilities(tmp_path: Path):
    maps = tiny_probabilities()
    del maps["l1"]
    with pytest.raises(SfaeError, match="no Mall probabilities of l1"):
        write_variants_gif(tiny_frames(), maps, tmp_path / "x.gif")


def test_write_report_names_the_missing_variants(tmp_path: Path):
    records = study_records(("pure", "l1", "sparse_elu"))
    with pytest.raises(SfaeError, match="no finished run of l2, sparse_softabs"):
        write_report(records, PARAMS, tmp_path)
    assert not list(tmp_path.iterdir())


def test_write_report_rejects_variants_outside_the_study(tmp_path: Path):
    records = [*study_records(), replace(study_records(("l1",))[0], variant="dropout")]
    with pytest.raises(SfaeError, match="unknown variant 'dropout'"):
        write_report(records, PARAMS, tmp_path)
    assert not list(tmp_path.iterdir())


def test_write_report_needs_records(tmp_path: Path):
    with pytest.raises(SfaeError, match="no run records"):
        write_report([], PARAMS, tmp_path)


def test_a_study_without_some_variant_on_its_machine_kind_says_what_is_missing(tmp_path):
    """Until every variant has a run of the study's machine kind, study.md shows what is
    recorded and names the missing runs and the ones left out, with no comparison."""
    from sfae.reports.study_report import write_pending_report

    recorded = study_records(("pure", "l1"))
    elsewhere = replace(recorded[0], variant="l2", name="gpu-run", machine="an H100 80GB GPU")
    missing = {"l2": [1, 2], "sparse_softabs": [1, 2], "sparse_elu": [1, 2]}
    written = write_pending_report(recorded, missing, 10, "2-core CPU", tmp_path, [elsewhere])
    assert [path.name for path in written] == ["study.md", "study.png"]
    text = (tmp_path / "study.md").read_text()
    assert "4 of its 10 planned runs trained on a 2-core CPU" in text
    assert "missing: l2 (seeds 1 and 2); sparse_softabs (seeds 1 and 2); sparse_elu" in text
    assert "l2 seed 1 final" in text  # the left-out run, named
    assert "| `pure` | 2 |" in text and "| `l1` | 2 |" in text
    assert "Compared with" not in text and "## The 2018 blog post's claims" not in text
    assert Image.open(tmp_path / "study.png").size[0] > 0
