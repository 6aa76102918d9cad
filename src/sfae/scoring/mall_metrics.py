"""Generalisation scores of a foreground model on CUHK Mall frames, which have no masks
(README "Metrics"): predictions at model resolution, head points in model pixel coordinates,
distances and heights in full-frame pixels; model pixel i's centre is at (i + 0.5) * scale."""

import math

import numpy as np

from sfae.errors import SfaeError

# Body box relative to the person's height h: half-width, and height below the head point.
BODY_HALF_WIDTH = 0.2
BODY_LENGTH = 0.8
HIT_SHARE = 0.5


def _positive_number(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise SfaeError(f"{name} must be a number, got {value!r}") from error
    if not math.isfinite(number) or number <= 0:
        raise SfaeError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def _check_inputs(predicted, heads, roi, perspective, frame_size, person_height) -> tuple:
    """The inputs, checked: heads as (k, 2) floats, roi as bool, perspective as float, the
    full-frame px per model px along x and along y, and person_height."""
    dtype = getattr(predicted, "dtype", None)
    if not isinstance(predicted, np.ndarray) or dtype != np.bool_:
        raise SfaeError(f"predicted must be a boolean numpy array, got {dtype}")
    if len(shape := predicted.shape) != 3 or 0 in shape:
        raise SfaeError(f"predicted must have shape (n, H, W), none of them 0, got {shape}")
    frames, height, width = shape
    roi, perspective = np.asarray(roi), np.asarray(perspective, dtype=np.float64)
    for name, values in (("roi", roi), ("perspective", perspective)):
        if values.shape != (height, width):
            raise SfaeError(f"{name} has shape {values.shape}, predictions are {(height, width)}")
    # A resized ROI must have been thresholded: fractional values would weight pixels silently.
    if not np.isin(roi, (0, 1)).all():
        raise SfaeError("roi must hold only 0 and 1 (or False and True)")
    if not np.all(np.isfinite(perspective) & (perspective > 0)):
        raise SfaeError("perspective must be finite and > 0 everywhere")
    if len(frame_size) != 2:
        raise SfaeError(f"frame_size must be (width, height), got {frame_size!r}")
    scale_x = _positive_number("frame width", frame_size[0]) / width
    scale_y = _positive_number("frame height", frame_size[1]) / height
    person_height = _positive_number("person_height", person_height)
    if len(heads) != frames:
        raise SfaeError(f"{len(heads)} frames of head points for {frames} predicted frames")
    checked_heads = []
    for index, points in enumerate(heads):
        points = np.asarray(points, dtype=np.float64)
        points = points.reshape(0, 2) if points.size == 0 else points
        if len(shape := points.shape) != 2 or shape[1] != 2:
            raise SfaeError(f"frame {index}: head points must have shape (k, 2), got {shape}")
        inside = ((points >= 0) & (points <= (width, height))).all(axis=1)  # NaN is not
        if not inside.all():
            raise SfaeError(
                f"frame {index}: head point {points[~inside][0].tolist()} lies outside the "
                f"{width}x{height} model image (points are in model pixel coordinates)"
            )
        checked_heads.append(points)
    return checked_heads, roi != 0, perspective, scale_x, scale_y, person_height


def _pixel_of(coordinate: np.ndarray, size: int) -> np.ndarray:
    """Index of the model pixel holding each coordinate; the far edge belongs to the last one."""
    return np.clip(np.floor(coordinate).astype(np.int64), 0, size - 1)


def _box_shares(predicted, frame_of_head, head_x, head_y, head_height, scale_x, scale_y):
    """Foreground share of each head's body box (full-frame coordinates in, one share out)."""
    _, height, width = predicted.shape
    # First and last model pixel whose centre (i + 0.5) * scale lies in [low, high].
    left = np.ceil((head_x - BODY_HALF_WIDTH * head_height) / scale_x - 0.5)
    right = np.floor((head_x + BODY_HALF_WIDTH * head_height) / scale_x - 0.5)
    top = np.ceil(head_y / scale_y - 0.5)
    bottom = np.floor((head_y + BODY_LENGTH * head_height) / scale_y - 0.5)
    left, top = np.maximum(left, 0).astype(np.int64), np.maximum(top, 0).astype(np.int64)
    right = np.minimum(right, width - 1).astype(np.int64)
    bottom = np.minimum(bottom, height - 1).astype(np.int64)
    empty = (left > right) | (top > bottom)
    centre_x = _pixel_of(head_x[empty] / scale_x, width)
    centre_y = _pixel_of((head_y[empty] + BODY_LENGTH / 2 * head_height[empty]) / scale_y, height)
    left[empty], right[empty] = centre_x, centre_x
    top[empty], bottom[empty] = centre_y, centre_y
    # Summed-area table with a zero row and column in front: any box sum in four look-ups.
    summed = np.zeros((predicted.shape[0], height + 1, width + 1), dtype=np.int32)
    np.cumsum(np.cumsum(predicted, axis=1, dtype=np.int32), axis=2, out=summed[:, 1:, 1:])
    f = frame_of_head
    foreground = summed[f, bottom + 1, right + 1] - summed[f, top, right + 1]
    foreground -= summed[f, bottom + 1, left]
    foreground += summed[f, top, left]
    area = (bottom - top + 1) * (right - left + 1)
    return foreground / area


def per_frame_mall_scores(predicted, heads, roi, perspective, frame_size, person_height=110.0):
    """Per-frame counts behind `mall_scores` (arrays of length n): "heads_in_roi", "head_hits"
    (those whose body box is at least half foreground), "foreground_in_roi", "false_foreground"
    (farther than h_j from every head), "weighted_area" (sum(predicted * perspective * roi))."""
    heads, roi, perspective, scale_x, scale_y, person_height = _check_inputs(
        predicted, heads, roi, perspective, frame_size, person_height
    )
    frames, height, width = predicted.shape
    all_heads = np.concatenate(heads)
    frame_of_head = np.repeat(np.arange(frames), [len(points) for points in heads])
    pixel_x, pixel_y = _pixel_of(all_heads[:, 0], width), _pixel_of(all_heads[:, 1], height)
    head_height = person_height / np.sqrt(perspective[pixel_y, pixel_x])
    head_x, head_y = all_heads[:, 0] * scale_x, all_heads[:, 1] * scale_y
    in_roi = roi[pixel_y, pixel_x]
    hit = _box_shares(predicted, frame_of_head, head_x, head_y, head_height, scale_x, scale_y)
    hit = in_roi & (hit >= HIT_SHARE)
    claimed = predicted & roi
    centre_x, centre_y = (np.arange(width) + 0.5) * scale_x, (np.arange(height) + 0.5) * scale_y
    false_foreground = np.zeros(frames, dtype=np.int64)
    for frame in range(frames):
        frame_heads = frame_of_head == frame
        # Squared distances separate into x and y parts: (k, 1, W) + (k, H, 1) -> (k, H, W).
        dx2 = (centre_x[None, None, :] - head_x[frame_heads, None, None]) ** 2
        dy2 = (centre_y[None, :, None] - head_y[frame_heads, None, None]) ** 2
        near_a_head = (dx2 + dy2 <= head_height[frame_heads, None, None] ** 2).any(axis=0)
        false_foreground[frame] = np.count_nonzero(claimed[frame] & ~near_a_head)
    return {
        "heads_in_roi": np.bincount(frame_of_head[in_roi], minlength=frames).astype(np.int64),
        "head_hits": np.bincount(frame_of_head[hit], minlength=frames).astype(np.int64),
        "foreground_in_roi": np.count_nonzero(claimed, axis=(1, 2)).astype(np.int64),
        "false_foreground": false_foreground,
        "weighted_area": np.einsum("nhw,hw->n", predicted, perspective * roi),
    }


def pearson_or_zero(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson r of two equal-length series; 0.0 when either has zero variance."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    # Tested before centring: a constant series' mean can round, leaving noise to correlate.
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return 0.0
    first, second = first - first.mean(), second - second.mean()
    spread = math.sqrt(float(np.dot(first, first)) * float(np.dot(second, second)))
    return float(np.clip(np.dot(first, second) / spread, -1.0, 1.0)) if spread else 0.0


def mall_scores(predicted, heads, roi, perspective, counts, frame_size, person_height=110.0):
    """{"head_hit_rate", "false_foreground", "count_correlation", "heads_in_roi", "frames"}: shares
    of the summed counts (0.0 of nothing), the Pearson r of the weighted area and the counts."""
    table = per_frame_mall_scores(predicted, heads, roi, perspective, frame_size, person_height)
    frames = len(predicted)
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (frames,):
        raise SfaeError(f"counts has shape {counts.shape}, expected ({frames},)")
    if not np.isfinite(counts).all():
        raise SfaeError("counts must be finite")
    heads_in_roi = int(table["heads_in_roi"].sum())
    claimed = int(table["foreground_in_roi"].sum())
    return {
        "head_hit_rate": int(table["head_hits"].sum()) / heads_in_roi if heads_in_roi else 0.0,
        "false_foreground": int(table["false_foreground"].sum()) / claimed if claimed else 0.0,
        "count_correlation": pearson_or_zero(table["weighted_area"], counts),
        "heads_in_roi": heads_in_roi,
        "frames": frames,
    }
