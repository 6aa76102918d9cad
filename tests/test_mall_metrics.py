import math
import warnings

import numpy as np
import pytest

from sfae.data.sources import MALL_FRAME_SIZE
from sfae.errors import SfaeError
from sfae.scoring.mall_metrics import mall_scores, pearson_or_zero, per_frame_mall_scores

FRAME_SIZE = MALL_FRAME_SIZE
SIZE = 64  # model pixels are 10 x 7.5 full-frame px
PERSON = 110.0  # with perspective 1: body box 44 x 88 full-frame px, disc radius 110 px


def centres(shape=(SIZE, SIZE), frame_size=FRAME_SIZE):
    """Full-frame coordinates of the model pixel centres, as (x, y) grids."""
    height, width = shape
    x = (np.arange(width) + 0.5) * frame_size[0] / width
    y = (np.arange(height) + 0.5) * frame_size[1] / height
    return np.meshgrid(x, y)


def to_full(points, shape=(SIZE, SIZE)):
    points = np.asarray(points, dtype=float)
    return points * [FRAME_SIZE[0] / shape[1], FRAME_SIZE[1] / shape[0]]


def bodies(points, height=PERSON):
    """Model pixels whose centres lie in the body box of any of the heads (model coordinates)."""
    x, y = centres()
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    for head_x, head_y in to_full(points):
        mask |= (abs(x - head_x) <= 0.2 * height) & (y >= head_y) & (y <= head_y + 0.8 * height)
    return mask


def sparse_heads(frames=5, per_frame=2, seed=0):
    rng = np.random.default_rng(seed)
    return [
        np.c_[rng.uniform(8, 56, per_frame), rng.uniform(4, 40, per_frame)] for _ in range(frames)
    ]


def uniform_geometry():
    return np.ones((SIZE, SIZE), dtype=np.uint8), np.ones((SIZE, SIZE))


def scores(predicted, heads, roi=None, perspective=None, counts=None, **options):
    default_roi, default_perspective = uniform_geometry()
    return mall_scores(
        predicted,
        heads,
        default_roi if roi is None else roi,
        default_perspective if perspective is None else perspective,
        np.array([len(points) for points in heads]) if counts is None else counts,
        FRAME_SIZE,
        **options,
    )


def one_head(predicted_pixels, perspective=1.0, **options):
    """Scores of one frame with one head at model (32, 10), full frame (320, 75)."""
    predicted = np.zeros((1, SIZE, SIZE), dtype=bool)
    for row, column in predicted_pixels:
        predicted[0, row, column] = True
    return scores(
        predicted,
        [np.array([[32.0, 10.0]])],
        perspective=np.full((SIZE, SIZE), perspective),
        **options,
    )


def test_predicting_every_body_box_hits_every_head_with_no_false_foreground():
    heads = sparse_heads()
    predicted = np.stack([bodies(points) for points in heads])
    result = scores(predicted, heads)
    assert result["head_hit_rate"] == 1.0
    assert result["false_foreground"] == 0.0
    assert result["heads_in_roi"] == 10
    assert result["frames"] == 5


def test_empty_prediction_hits_nothing_and_claims_nothing_without_warnings():
    heads = sparse_heads()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = scores(np.zeros((5, SIZE, SIZE), dtype=bool), heads)
    assert result["head_hit_rate"] == 0.0
    assert result["false_foreground"] == 0.0
    assert result["count_correlation"] == 0.0


def test_all_foreground_hits_every_head_but_is_mostly_false_for_sparse_heads():
    heads = sparse_heads()
    result = scores(np.ones((5, SIZE, SIZE), dtype=bool), heads)
    assert result["head_hit_rate"] == 1.0
    assert result["false_foreground"] > 0.5


def test_body_box_covers_the_pixel_centres_inside_it():
    # Box x in [298, 342], y in [75, 163]: columns 30..33, rows 10..21, 48 pixels.
    box = [(row, column) for row in range(10, 22) for column in range(30, 34)]
    assert one_head(box[:24])["head_hit_rate"] == 1.0  # exactly half
    assert one_head(box[:23])["head_hit_rate"] == 0.0


def test_perspective_shrinks_the_body_box():
    # Perspective 4 halves the height to 55 px: columns 31..32, rows 10..15, 12 pixels.
    small_box = [(row, column) for row in range(10, 16) for column in (31, 32)]
    assert one_head(small_box, perspective=4.0)["head_hit_rate"] == 1.0
    assert one_head(small_box, perspective=1.0)["head_hit_rate"] == 0.0  # 12 of 48


def test_a_box_holding_no_pixel_centre_uses_the_pixel_under_its_centre():
    # A 1 px person: box centre (320, 75.4) lies in model pixel column 32, row 10.
    assert one_head([(10, 32)], person_height=1.0)["head_hit_rate"] == 1.0
    assert one_head([(10, 33)], person_height=1.0)["head_hit_rate"] == 0.0


def test_false_foreground_starts_beyond_the_height_radius():
    # Row 10 centres lie 3.75 px below the head: column 42 is 105 px away, column 43 115 px.
    assert one_head([(10, 42)])["false_foreground"] == 0.0
    assert one_head([(10, 43)])["false_foreground"] == 1.0
    assert one_head([(10, 42), (10, 43), (63, 0), (0, 63)])["false_foreground"] == 0.75


def test_every_prediction_in_a_frame_without_heads_is_false():
    predicted = np.zeros((2, SIZE, SIZE), dtype=bool)
    predicted[:, 20:30, 20:30] = True
    heads = [np.array([[25.0, 18.0]]), np.zeros((0, 2))]
    table = per_frame_mall_scores(predicted, heads, *uniform_geometry(), FRAME_SIZE)
    assert table["false_foreground"].tolist() == [0, 100]
    assert table["foreground_in_roi"].tolist() == [100, 100]


def test_heads_outside_the_roi_are_not_counted_but_still_explain_foreground():
    roi = np.zeros((SIZE, SIZE), dtype=np.uint8)
    roi[:, 32:] = 1
    heads = [np.array([[10.0, 10.0], [20.0, 30.0], [40.0, 10.0], [50.0, 20.0], [31.9, 5.0]])]
    predicted = bodies(heads[0])[None]
    result = scores(predicted, heads, roi=roi)
    assert result["heads_in_roi"] == 2
    assert result["head_hit_rate"] == 1.0
    # The head at x = 31.9 lies outside the ROI, its body partly inside: that part is not false.
    assert np.count_nonzero(predicted[0] & (roi == 1) & bodies([[31.9, 5.0]])) > 0
    assert result["false_foreground"] == 0.0


def test_no_head_in_the_roi_gives_a_zero_hit_rate():
    result = scores(
        np.ones((1, SIZE, SIZE), bool), [np.array([[5.0, 5.0]])], roi=np.zeros((64, 64))
    )
    assert result["heads_in_roi"] == 0
    assert result["head_hit_rate"] == 0.0
    assert result["false_foreground"] == 0.0  # nothing predicted inside the empty ROI


def test_count_correlation_is_one_when_the_area_in_the_roi_follows_the_count():
    counts = np.array([2, 5, 9, 14, 20])
    rng = np.random.default_rng(3)
    predicted = np.zeros((5, SIZE, SIZE), dtype=bool)
    roi = np.zeros((SIZE, SIZE), dtype=np.uint8)
    roi[:, :32] = 1
    for frame, count in enumerate(counts):
        predicted[frame, :, :32].flat[: 40 * count] = True
        predicted[frame, :, 32:] = rng.random((SIZE, 32)) < 0.5  # outside the ROI: ignored
    result = scores(predicted, [np.zeros((0, 2))] * 5, roi=roi, counts=counts)
    assert result["count_correlation"] == pytest.approx(1.0)


def test_count_correlation_weights_area_by_perspective():
    # Every frame predicts one row of 64 pixels; the row's perspective weight follows the count.
    perspective = np.repeat(np.arange(1.0, SIZE + 1)[:, None], SIZE, axis=1)
    counts = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    predicted = np.zeros((len(counts), SIZE, SIZE), dtype=bool)
    for frame, count in enumerate(counts):
        predicted[frame, count] = True
    no_heads = [np.zeros((0, 2))] * len(counts)
    result = scores(predicted, no_heads, perspective=perspective, counts=counts)
    assert result["count_correlation"] == pytest.approx(1.0)
    table = per_frame_mall_scores(
        predicted, no_heads, np.ones((SIZE, SIZE)), perspective, FRAME_SIZE
    )
    np.testing.assert_allclose(table["weighted_area"], SIZE * (counts + 1.0))


def test_constant_prediction_or_constant_counts_correlate_zero_without_warnings():
    predicted = np.zeros((4, SIZE, SIZE), dtype=bool)
    predicted[:, 10:20, 10:20] = True
    no_heads = [np.zeros((0, 2))] * 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert scores(predicted, no_heads, counts=np.array([1, 2, 3, 4]))["count_correlation"] == 0
        predicted[1:, 0, 0] = True
        assert scores(predicted, no_heads, counts=np.full(4, 7))["count_correlation"] == 0.0
        assert pearson_or_zero(np.full(3, 0.1), np.array([1.0, 2.0, 3.0])) == 0.0
        assert pearson_or_zero(np.array([5.0]), np.array([2.0])) == 0.0


def reference_table(predicted, heads, roi, perspective, frame_size, person_height):
    """The module docstring's definitions, pixel by pixel and head by head."""
    frames, height, width = predicted.shape
    scale_x, scale_y = frame_size[0] / width, frame_size[1] / height
    x, y = centres((height, width), frame_size)
    table = {key: [] for key in ("heads_in_roi", "head_hits", "false_foreground")}
    for frame in range(frames):
        in_roi = hits = 0
        near = np.zeros((height, width), dtype=bool)
        for head_x, head_y in heads[frame]:
            column, row = min(int(head_x), width - 1), min(int(head_y), height - 1)
            h = person_height / math.sqrt(perspective[row, column])
            full_x, full_y = head_x * scale_x, head_y * scale_y
            near |= np.hypot(x - full_x, y - full_y) <= h
            if not roi[row, column]:
                continue
            in_roi += 1
            box = (abs(x - full_x) <= 0.2 * h) & (y >= full_y) & (y <= full_y + 0.8 * h)
            if box.any():
                share = predicted[frame][box].mean()
            else:
                column = min(max(int(full_x // scale_x), 0), width - 1)
                row = min(max(int((full_y + 0.4 * h) // scale_y), 0), height - 1)
                share = float(predicted[frame, row, column])
            hits += share >= 0.5
        table["heads_in_roi"].append(in_roi)
        table["head_hits"].append(hits)
        table["false_foreground"].append(np.count_nonzero(predicted[frame] & roi & ~near))
    return table


@pytest.mark.parametrize("person_height", [110.0, 30.0, 4.0])
def test_vectorised_table_matches_a_literal_reading_of_the_definitions(person_height):
    rng = np.random.default_rng(4)
    height, width, frame_size = 24, 40, (640, 480)  # 16 x 20 full-frame px per pixel
    predicted = rng.random((6, height, width)) < 0.4
    heads = [np.c_[rng.uniform(0, width, k), rng.uniform(0, height, k)] for k in range(6)]
    heads[5][0] = [width, height]  # the far corner belongs to the last pixel
    roi = rng.random((height, width)) < 0.7
    perspective = np.repeat(np.linspace(15.0, 1.0, height)[:, None], width, axis=1)
    table = per_frame_mall_scores(predicted, heads, roi, perspective, frame_size, person_height)
    expected = reference_table(predicted, heads, roi, perspective, frame_size, person_height)
    for key, values in expected.items():
        assert table[key].tolist() == values, key


def test_non_square_model_resolution_scales_each_axis():
    # 48 x 64 model (H x W): pixels are 10 x 10 full-frame px, the head is at (320, 100).
    predicted = np.zeros((1, 48, 64), dtype=bool)
    predicted[0, 10:19, 30:34] = True  # columns 30..33 and rows 10..18 hold the 44 x 88 box
    result = mall_scores(
        predicted,
        [np.array([[32.0, 10.0]])],
        np.ones((48, 64)),
        np.ones((48, 64)),
        [1],
        FRAME_SIZE,
    )
    assert result["head_hit_rate"] == 1.0
    assert result["false_foreground"] == 0.0


def valid_inputs():
    heads = sparse_heads(frames=3)
    return {
        "predicted": np.zeros((3, SIZE, SIZE), dtype=bool),
        "heads": heads,
        "roi": np.ones((SIZE, SIZE), dtype=np.uint8),
        "perspective": np.ones((SIZE, SIZE)),
        "counts": np.array([2, 2, 2]),
        "frame_size": FRAME_SIZE,
    }


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("heads", sparse_heads(frames=2), "2 frames of head points for 3"),
        ("counts", np.array([1, 2]), "counts has shape"),
        ("counts", np.array([1.0, np.nan, 2.0]), "counts must be finite"),
        ("predicted", np.zeros((3, SIZE, SIZE), dtype=np.uint8), "boolean"),
        ("predicted", np.zeros((SIZE, SIZE), dtype=bool), r"shape \(n, H, W\)"),
        ("roi", np.ones((SIZE, SIZE + 1)), "roi has shape"),
        ("roi", np.full((SIZE, SIZE), 0.5), "roi must hold only 0 and 1"),
        ("perspective", np.zeros((SIZE, SIZE)), "perspective must be finite and > 0"),
        ("perspective", np.ones((2, 2)), "perspective has shape"),
        ("heads", [np.ones((2, 3))] * 3, r"shape \(k, 2\)"),
        ("heads", [np.array([[65.0, 1.0]])] * 3, "outside the 64x64 model image"),
        ("heads", [np.array([[np.nan, 1.0]])] * 3, "outside"),
        ("frame_size", (640,), "frame_size"),
        ("frame_size", (640, 0), "frame height"),
    ],
)
def test_bad_inputs_raise(name, value, message):
    inputs = valid_inputs() | {name: value}
    with pytest.raises(SfaeError, match=message):
        mall_scores(**inputs)


def test_bad_person_height_raises():
    with pytest.raises(SfaeError, match="person_height"):
        mall_scores(**valid_inputs(), person_height=-1)
