"""Edges where a plausible slip changes results silently: ties, equalities, exact zeros.

Each test pins one boundary that a hand-made mutation of the code once crossed while every
other fast test still passed: a median for a mean, `>=` for `>`, a reversed tie-break, a
check on one side only, another random stream.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import REPO_ROOT

from sfae.data.prepare import hold_out, split_names
from sfae.errors import SfaeError
from sfae.experiments.records import RunRecord
from sfae.experiments.runner import wanted_params
from sfae.experiments.sweep import extended_grid
from sfae.experiments.sweep_state import sweep_state
from sfae.inference.predict import to_mask
from sfae.nn.regularisers.registry import load_config
from sfae.reports.intervals import NOT_DISTINGUISHABLE
from sfae.reports.statistics import compare_family
from sfae.scoring.mall_metrics import mall_scores, pearson_or_zero
from sfae.scoring.metrics import SCORE_KEYS, per_image_scores, summarize

# ---------------------------------------------------------------- scores


def test_the_mean_summary_is_the_arithmetic_mean_of_the_per_image_scores():
    truth = np.ones((3, 4, 4), bool)
    predicted = np.zeros((3, 4, 4), bool)
    predicted[0] = True  # one image found whole, two missed: IoU 1, 0, 0 (median 0)
    table = per_image_scores(truth, predicted)
    mean = summarize(table)["mean"]
    assert mean["iou"] == pytest.approx(1 / 3)
    for key in SCORE_KEYS:
        assert mean[key] == pytest.approx(sum(table[key].tolist()) / 3), key


# A constant series whose mean rounds (3 x 0.1 sums to 0.30000000000000004): centred, it
# leaves noise of 1e-17 that correlates with anything, as -0.000 in a report's table.
CONSTANT = [0.1, 0.1, 0.1]
VARYING = [0.1, 0.7, 0.2]


@pytest.mark.parametrize(
    ("first", "second"), [(CONSTANT, VARYING), (VARYING, CONSTANT)], ids=["first", "second"]
)
def test_a_constant_series_on_either_side_correlates_exactly_zero(first, second):
    correlation = pearson_or_zero(np.array(first), np.array(second))
    assert correlation == 0.0 and f"{correlation:.3f}" == "0.000"


def test_a_prediction_that_never_changes_has_exactly_zero_count_correlation():
    frames = 3
    predicted = np.zeros((frames, 4, 4), bool)
    predicted[:, 1, 1] = True  # the same pixel in every frame
    scores = mall_scores(
        predicted,
        heads=[np.empty((0, 2))] * frames,
        roi=np.ones((4, 4), bool),
        perspective=np.full((4, 4), 0.1),  # weighted area 0.1 in each frame: a rounding mean
        counts=np.array([1.0, 7.0, 2.0]),
        frame_size=(4, 4),
    )
    assert scores["count_correlation"] == 0.0


def test_a_probability_equal_to_the_threshold_is_foreground():
    probability = np.array([[0.25, 0.5, 0.75]], np.float32)
    assert to_mask(probability, 0.5).tolist() == [[0, 255, 255]]
    assert to_mask(probability, 0.75).tolist() == [[0, 0, 255]]
    assert to_mask(probability, 0.0).tolist() == [[255, 255, 255]]


# ---------------------------------------------------------------- comparisons


def record(variant: str, seed: int, per_image_iou: dict[str, float]) -> RunRecord:
    return RunRecord(
        variant=variant,
        seed=seed,
        name=f"{variant}-{seed}",
        rev="0" * 40,
        evaluate={"test": {"pooled": {"iou": 0.5}}},
        mall={},
        train_seconds=None,
        per_image_iou=per_image_iou,
    )


@pytest.mark.parametrize("sign", [1, -1], ids=["better", "worse"])
def test_an_interval_that_reaches_zero_is_not_distinguishable(sign):
    """l2's runs equal pure's on every image and seed: no spread, so the Holm-corrected
    interval is the point zero, whose ends are zero: inside, not distinguishable. Moved by
    the same +-0.01 everywhere, the point interval excludes zero: a verdict."""
    images = [f"image{i:02d}" for i in range(20)]
    pure = [record("pure", seed, {name: 0.5 for name in images}) for seed in (1, 2, 3)]
    same = [record("l2", run.seed, dict(run.per_image_iou)) for run in pure]
    (comparison,) = compare_family({"pure": pure, "l2": same}, "pure").comparisons.values()
    assert (comparison.low, comparison.high) == (0.0, 0.0)
    assert comparison.verdict == NOT_DISTINGUISHABLE
    # A positive (negative) mean whose interval is that same point is a verdict.
    moved = [record("l2", run.seed, {name: 0.5 + sign * 0.01 for name in images}) for run in pure]
    (comparison,) = compare_family({"pure": pure, "l2": moved}, "pure").comparisons.values()
    assert comparison.verdict != NOT_DISTINGUISHABLE
    assert (comparison.low > 0) if sign > 0 else (comparison.high < 0)


# ---------------------------------------------------------------- the sweep's selection


def sweep_records(sweep, variant: str, val_of, points) -> list[RunRecord]:
    """A selection run of variant at each strength and selection seed, with val_of(strength)
    as its validation IoU."""
    records = []
    for strength in points:
        for seed in sweep.settings.seeds:
            spec = sweep.spec(variant, seed, strength)
            params = wanted_params(sweep.params, spec)
            records.append(
                RunRecord(
                    variant=variant,
                    seed=seed,
                    name=spec.label,
                    rev=spec.label,
                    evaluate={"val": {"iou_pooled": val_of(strength)}},
                    mall={},
                    train_seconds=1.0,
                    per_image_iou={},
                    params=params,
                )
            )
    return records


def selection_of(sweep, variant: str, val_of):
    """The variant's selection once every point it asks for is measured (extensions too)."""
    records = sweep_records(sweep, variant, val_of, sweep.settings.grids[variant])
    while True:
        selection = sweep_state(sweep, records).selection(variant)
        missing = [p for p, runs in selection.points.items() if not runs.records]
        if not missing:
            return selection
        records += sweep_records(sweep, variant, val_of, missing)


def test_equal_validation_scores_select_the_weaker_strength(sweep):
    grid = sweep.settings.grids["l2"]
    tied = {grid[1], grid[3]}
    selection = selection_of(sweep, "l2", lambda x: 0.6 if x in tied else 0.4)
    assert selection.selected == grid[1] and selection.bracketed


def test_a_tie_between_the_grids_ends_extends_it_below_the_weaker_end():
    curve = {1.0: 0.6, 10.0: 0.4, 100.0: 0.6}
    assert extended_grid((1.0, 10.0, 100.0), curve, 1e9) == [0.1, 1.0, 10.0, 100.0]


@pytest.mark.parametrize(
    ("variant", "end"),
    [("dropout", -1), ("l2", 0)],
    ids=["top-end-at-the-limit", "bottom-end-after-every-extension"],
)
def test_a_best_strength_left_at_an_end_of_the_grid_is_not_bracketed(sweep, variant, end):
    """dropout's grid cannot grow past its limit 0.95; l2's grows at most three steps down."""
    rising = (lambda x: x) if end == -1 else (lambda x: 1 / x)
    selection = selection_of(sweep, variant, rising)
    assert selection.selected == list(selection.points)[end]
    assert not selection.bracketed


# ---------------------------------------------------------------- params.yaml


def params_with(tmp_path, **data):
    document = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    document["data"].update(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_the_image_size_must_be_a_multiple_of_16_not_only_of_8(tmp_path):
    assert load_config(params_with(tmp_path, image_size=48)).data.image_size == 48
    with pytest.raises(SfaeError, match="image_size"):
        load_config(params_with(tmp_path, image_size=40))


def test_validation_images_must_leave_a_training_image(tmp_path):
    config = load_config(params_with(tmp_path, train_count=85, val_count=84))
    assert config.data.val_count == 84
    with pytest.raises(SfaeError, match="val_count"):
        load_config(params_with(tmp_path, train_count=85, val_count=85))


# ---------------------------------------------------------------- the validation hold-out

# The 17 training images that data.val_count 17 holds out with the committed data.split_seed
# 6278 (sweep.val_count), in training order. A contract, not a result: the committed sweep
# selection records (reports/runs.jsonl, data.val_count 17) were scored on exactly these
# images, so another hold-out would silently compare new runs with records of other images.
# Computed once from the real Penn-Fudan data (prepare_pennfudan on the mirror's zip).
HELD_OUT_BY_SEED_6278 = [
    *("FudanPed00044", "PennPed00064", "PennPed00010", "PennPed00034", "FudanPed00030"),
    *("FudanPed00064", "PennPed00063", "FudanPed00019", "PennPed00066", "PennPed00001"),
    *("FudanPed00062", "FudanPed00055", "FudanPed00003", "PennPed00030", "PennPed00071"),
    *("FudanPed00036", "FudanPed00052"),
]


def test_the_validation_hold_out_is_the_seventeen_images_the_records_were_scored_on():
    data = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["data"]
    seed = data["split_seed"]
    assert seed == 6278  # the split every committed record used
    # The committed split (metrics/split.json, made by the pipeline from the real data) names
    # all 170 images; the split and hold-out are recomputed from its names.
    committed = json.loads((REPO_ROOT / "metrics" / "split.json").read_text())
    names = committed["train"] + committed["val"] + committed["test"]
    train, test = split_names(names, data["train_count"], seed)
    fit, val = hold_out(train, data["val_count"], seed)
    assert (fit, val, test) == (committed["train"], committed["val"], committed["test"])

    fit, val = hold_out(train, 17, seed)
    assert val == HELD_OUT_BY_SEED_6278
    assert fit == [name for name in train if name not in val]
