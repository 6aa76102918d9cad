import warnings

import numpy as np
import pytest

from sfae.errors import SfaeError
from sfae.scoring.metrics import (
    COUNT_KEYS,
    SCORE_KEYS,
    boundary,
    confusion,
    per_image_scores,
    summarize,
)


def segmentation_scores(truth, predicted, tolerance=2) -> dict:
    table = per_image_scores(truth, predicted, tolerance)
    return summarize(table) | {"per_image": table}


def square(top: int, left: int, side: int, size: int = 40) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def batch(*masks: np.ndarray) -> np.ndarray:
    return np.stack(masks)


def boundary_f1(truth: np.ndarray, predicted: np.ndarray, tolerance: float) -> float:
    return float(per_image_scores(batch(truth), batch(predicted), tolerance)["boundary_f1"][0])


def test_confusion_counts_a_hand_made_4x4_case():
    truth = square(1, 1, 2, size=4)
    predicted = square(1, 2, 2, size=4)  # one column to the right: two pixels overlap
    counts = confusion(batch(truth), batch(predicted))
    assert {key: value.tolist() for key, value in counts.items()} == {
        "tp": [2],
        "fp": [2],
        "fn": [2],
        "tn": [10],
    }


def test_pixel_scores_of_the_4x4_case():
    scores = per_image_scores(batch(square(1, 1, 2, size=4)), batch(square(1, 2, 2, size=4)))
    assert scores["iou"][0] == pytest.approx(2 / 6)
    assert scores["dice"][0] == pytest.approx(4 / 8)
    assert scores["precision"][0] == pytest.approx(0.5)
    assert scores["recall"][0] == pytest.approx(0.5)
    assert scores["accuracy"][0] == pytest.approx(12 / 16)


def test_dice_equals_2_iou_over_1_plus_iou_on_random_masks():
    rng = np.random.default_rng(0)
    truth = rng.random((20, 16, 16)) < 0.4
    predicted = rng.random((20, 16, 16)) < 0.3
    result = segmentation_scores(truth, predicted)
    iou, dice = result["per_image"]["iou"], result["per_image"]["dice"]
    np.testing.assert_allclose(dice, 2 * iou / (1 + iou))
    pooled = result["pooled"]
    assert pooled["dice"] == pytest.approx(2 * pooled["iou"] / (1 + pooled["iou"]))


def test_perfect_prediction_scores_one_everywhere():
    rng = np.random.default_rng(1)
    truth = rng.random((5, 12, 12)) < 0.5
    result = segmentation_scores(truth, truth.copy())
    for summary in ("pooled", "mean"):
        assert result[summary] == {key: 1.0 for key in SCORE_KEYS}


def test_empty_truth_and_empty_prediction_agree_perfectly_without_warnings():
    empty = np.zeros((3, 8, 8), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = segmentation_scores(empty, empty.copy())
    for summary in ("pooled", "mean"):
        assert result[summary] == {key: 1.0 for key in SCORE_KEYS}


def test_empty_prediction_of_non_empty_truth_scores_zero():
    truth = batch(square(2, 2, 4, size=10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = per_image_scores(truth, np.zeros_like(truth))
    for key in ("iou", "dice", "precision", "recall", "boundary_precision", "boundary_f1"):
        assert scores[key][0] == 0.0, key
    assert scores["boundary_recall"][0] == 0.0
    assert scores["accuracy"][0] == pytest.approx(84 / 100)


def test_prediction_on_empty_truth_scores_zero_precision():
    predicted = batch(square(2, 2, 4, size=10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = per_image_scores(np.zeros_like(predicted), predicted)
    for key in ("iou", "dice", "precision", "recall", "boundary_precision", "boundary_recall"):
        assert scores[key][0] == 0.0, key


def test_boundary_of_a_filled_square_is_its_ring():
    ring = boundary(square(1, 1, 5, size=7))
    expected = square(1, 1, 5, size=7) & ~square(2, 2, 3, size=7)
    np.testing.assert_array_equal(ring, expected)
    assert np.count_nonzero(ring) == 16


def test_boundary_treats_outside_the_image_as_background():
    full = np.ones((5, 5), dtype=bool)
    np.testing.assert_array_equal(boundary(full), ~square(1, 1, 3, size=5))


def test_boundary_uses_4_neighbours():
    # A diagonal gap does not make the centre a boundary pixel of the 3x3 cross erosion.
    mask = np.ones((5, 5), dtype=bool)
    mask[1, 1] = False
    assert not boundary(mask)[2, 2]
    assert boundary(mask)[1, 2] and boundary(mask)[2, 1]


def test_square_shifted_by_one_pixel_matches_within_tolerance_2_but_not_0():
    truth, shifted = square(10, 10, 10), square(10, 11, 10)
    assert boundary_f1(truth, shifted, tolerance=2) == 1.0
    assert boundary_f1(truth, shifted, tolerance=0) < 1.0


def test_square_shifted_by_five_pixels_diagonally_matches_only_where_edges_cross():
    # Of each 36-pixel ring, 5 pixels on either side of each of the two crossings lie within 2 px.
    truth, shifted = square(10, 10, 10), square(15, 15, 10)
    assert boundary_f1(truth, shifted, tolerance=2) == pytest.approx(10 / 36)


def test_small_square_shifted_by_five_pixels_matches_nothing():
    assert boundary_f1(square(10, 10, 3), square(15, 15, 3), tolerance=2) == 0.0


def test_pooled_and_mean_differ_as_computed_by_hand():
    # Image 1: one pixel, predicted exactly. Image 2: four pixels, two of them predicted.
    truth_1 = np.zeros((4, 4), dtype=bool)
    truth_1[0, 0] = True
    truth_2 = square(0, 0, 2, size=4)
    predicted_2 = np.zeros((4, 4), dtype=bool)
    predicted_2[0, :2] = True
    result = segmentation_scores(batch(truth_1, truth_2), batch(truth_1.copy(), predicted_2))
    assert result["mean"]["iou"] == pytest.approx((1.0 + 2 / 4) / 2)
    assert result["pooled"]["iou"] == pytest.approx(3 / 5)
    assert result["mean"]["recall"] == pytest.approx(0.75)
    assert result["pooled"]["recall"] == pytest.approx(3 / 5)
    assert result["mean"]["precision"] == result["pooled"]["precision"] == 1.0
    assert result["pooled"]["accuracy"] == pytest.approx(30 / 32)


def test_pooled_boundary_scores_sum_matched_and_total_pixels():
    truth = batch(square(10, 10, 10), square(10, 10, 3))
    predicted = batch(square(15, 15, 10), square(15, 15, 3))
    table = per_image_scores(truth, predicted, tolerance=2)
    assert table["boundary_matched_predicted"].tolist() == [10, 0]
    assert table["boundary_predicted"].tolist() == [36, 8]
    pooled = summarize(table)["pooled"]
    assert pooled["boundary_precision"] == pytest.approx(10 / 44)
    assert pooled["boundary_recall"] == pytest.approx(10 / 44)
    assert pooled["boundary_f1"] == pytest.approx(10 / 44)


def test_per_image_table_has_every_column_for_every_image():
    rng = np.random.default_rng(2)
    truth = rng.random((4, 9, 9)) < 0.5
    table = per_image_scores(truth, ~truth)
    assert set(table) == set(COUNT_KEYS + SCORE_KEYS)
    assert all(len(column) == 4 for column in table.values())


@pytest.mark.parametrize(
    ("truth", "predicted", "message"),
    [
        (np.zeros((2, 4, 4), bool), np.zeros((3, 4, 4), bool), "differ in shape"),
        (np.zeros((4, 4), bool), np.zeros((4, 4), bool), r"shape \(n, h, w\)"),
        (np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 4), bool), "boolean"),
        (np.zeros((0, 4, 4), bool), np.zeros((0, 4, 4), bool), r"shape \(n, h, w\)"),
        ([[[True]]], np.ones((1, 1, 1), bool), "numpy array"),
    ],
)
def test_bad_masks_raise(truth, predicted, message):
    with pytest.raises(SfaeError, match=message):
        segmentation_scores(truth, predicted)


@pytest.mark.parametrize("tolerance", [-1, float("nan"), "two"])
def test_bad_tolerance_raises(tolerance):
    masks = np.zeros((1, 4, 4), dtype=bool)
    with pytest.raises(SfaeError, match="tolerance"):
        segmentation_scores(masks, masks, tolerance=tolerance)
