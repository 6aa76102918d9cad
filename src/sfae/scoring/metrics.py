"""Pixel and boundary scores of boolean masks (n, h, w), "pooled" (of the summed counts) and
as the "mean" over images (README "Metrics"); the boundary is the foreground minus its erosion
by a 3x3 cross. A zero denominator gives no NaN: two empty masks agree perfectly (1.0)."""

from pathlib import Path

import numpy as np
from scipy import ndimage

from sfae.errors import SfaeError

PIXEL_COUNT_KEYS = ("tp", "fp", "fn", "tn")
BOUNDARY_COUNT_KEYS = tuple(
    f"boundary_{key}" for key in ("matched_predicted", "predicted", "matched_truth", "truth")
)
COUNT_KEYS = PIXEL_COUNT_KEYS + BOUNDARY_COUNT_KEYS
TABLE_COLUMNS = ("iou", "dice", "precision", "recall", "accuracy", "boundary_f1")  # per_image.tsv
SCORE_KEYS = (*TABLE_COLUMNS[:5], "boundary_precision", "boundary_recall", "boundary_f1")


def _ratio(numerator, denominator, when_empty) -> np.ndarray:
    """numerator / denominator, and `when_empty` where the denominator is 0."""
    arrays = (np.asarray(a, dtype=np.float64) for a in (numerator, denominator, when_empty))
    numerator, denominator, when_empty = np.broadcast_arrays(*arrays)
    return np.divide(numerator, denominator, out=when_empty.copy(), where=denominator > 0)


def confusion(truth: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image pixel counts {"tp", "fp", "fn", "tn"}, each an int64 array of length n."""
    for name, masks in (("truth", truth), ("predicted", predicted)):
        if not isinstance(masks, np.ndarray):
            raise SfaeError(f"{name} must be a boolean numpy array, got {type(masks).__name__}")
        if masks.dtype != np.bool_:
            raise SfaeError(f"{name} must be a boolean array, got dtype {masks.dtype}")
        if masks.ndim != 3 or 0 in masks.shape:
            raise SfaeError(f"{name} must have shape (n, h, w), none of them 0, got {masks.shape}")
    if truth.shape != predicted.shape:
        raise SfaeError(f"truth {truth.shape} and predicted {predicted.shape} differ in shape")
    tp, fp, fn = (
        np.count_nonzero(pixels, axis=(1, 2)).astype(np.int64)
        for pixels in (truth & predicted, ~truth & predicted, truth & ~predicted)
    )
    tn = truth.shape[1] * truth.shape[2] - tp - fp - fn
    return dict(zip(PIXEL_COUNT_KEYS, (tp, fp, fn, tn), strict=True))


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a 2-D boolean mask: mask AND NOT erosion(mask, 3x3 cross, border 0)."""
    mask = mask.astype(bool, copy=False)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)  # scipy's default: the cross


def _matched(boundary_from: np.ndarray, boundary_to: np.ndarray, tolerance: float) -> int:
    """How many pixels of boundary_from lie within tolerance of a pixel of boundary_to."""
    if not boundary_from.any() or not boundary_to.any():
        return 0
    # The transform measures distances to the nearest zero: boundary_to's pixels must be the zeros.
    distance_to = ndimage.distance_transform_edt(~boundary_to)
    return int(np.count_nonzero(boundary_from & (distance_to <= tolerance)))


def boundary_counts(truth: np.ndarray, predicted: np.ndarray, tolerance) -> dict:
    """Per-image boundary pixels (int64, length n): of the prediction, those within tolerance
    (Euclidean) of the truth's, and the reverse. confusion() checks the masks first."""
    try:
        value = float(tolerance)
    except (TypeError, ValueError) as error:
        raise SfaeError(f"tolerance must be a number of pixels, got {tolerance!r}") from error
    if not np.isfinite(value) or value < 0:
        raise SfaeError(f"tolerance must be a finite number >= 0 pixels, got {tolerance!r}")
    rows = []
    for masks in zip(truth, predicted, strict=True):
        true, found = (boundary(mask) for mask in masks)
        row = (_matched(found, true, value), np.count_nonzero(found))
        rows.append(row + (_matched(true, found, value), np.count_nonzero(true)))
    return dict(zip(BOUNDARY_COUNT_KEYS, np.array(rows, dtype=np.int64).T, strict=True))


def scores_from_counts(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every score in SCORE_KEYS from the counts in COUNT_KEYS, elementwise."""
    tp, fp, fn, tn, matched_predicted, predicted_total, matched_truth, truth_total = (
        np.asarray(counts[key], dtype=np.int64) for key in COUNT_KEYS
    )
    boundary_precision = _ratio(matched_predicted, predicted_total, truth_total == 0)
    boundary_recall = _ratio(matched_truth, truth_total, predicted_total == 0)
    either = boundary_precision + boundary_recall  # 0 when both are 0: then F1 is 0
    return {
        "iou": _ratio(tp, tp + fp + fn, 1.0),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, 1.0),
        "precision": _ratio(tp, tp + fp, fn == 0),
        "recall": _ratio(tp, tp + fn, fp == 0),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn, 1.0),
        "boundary_precision": boundary_precision,
        "boundary_recall": boundary_recall,
        "boundary_f1": _ratio(2 * boundary_precision * boundary_recall, either, 0.0),
    }


def per_image_scores(truth: np.ndarray, predicted: np.ndarray, tolerance=2) -> dict:
    """Per-image table: every key of COUNT_KEYS and SCORE_KEYS -> array of length n."""
    counts = confusion(truth, predicted) | boundary_counts(truth, predicted, tolerance)
    return counts | scores_from_counts(counts)


def summarize(table: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """{"pooled": scores of the summed counts, "mean": per-image scores averaged over images}."""
    pooled = scores_from_counts({key: np.sum(table[key]) for key in COUNT_KEYS})
    return {
        "pooled": {key: float(pooled[key]) for key in SCORE_KEYS},
        "mean": {key: float(np.mean(table[key])) for key in SCORE_KEYS},
    }


def pooled_iou(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Foreground IoU of the whole batch: TP / (TP + FP + FN) over all pixels (1.0 if empty)."""
    counts = {key: value.sum() for key, value in confusion(truth, predicted).items()}
    return float(_ratio(counts["tp"], counts["tp"] + counts["fp"] + counts["fn"], 1.0))


def write_table(path: Path, rows: list[dict]) -> None:
    """per_image.tsv: tab-separated, a header line, one row per image (none: the header)."""
    cells = [[f"{v:.6f}" if isinstance(v, float) else str(v) for v in row.values()] for row in rows]
    path.write_text("".join("\t".join(line) + "\n" for line in [["name", *TABLE_COLUMNS], *cells]))
