"""Turn a trained model into numbers (Penn-Fudan test scores, Mall scores) and pictures a person
judges at a glance (prediction grids, error overlays)."""

import numpy as np

from sfae.data.prepared import MallArrays, PennFudanSplits
from sfae.inference.predict import predict_probabilities
from sfae.scoring.mall_metrics import mall_scores
from sfae.scoring.metrics import TABLE_COLUMNS, per_image_scores, summarize

MASK_COLOUR = np.array([255, 40, 40], np.float32)  # red, as the original post's overlays
TRUE_POSITIVE = np.array([40, 200, 40], np.uint8)  # green
FALSE_POSITIVE = np.array([230, 40, 40], np.uint8)  # red: claimed, not there
FALSE_NEGATIVE = np.array([40, 90, 255], np.uint8)  # blue: there, missed


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def tint(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    weight = alpha * mask[..., None]
    return to_uint8(image * (1 - weight) + MASK_COLOUR / 255.0 * weight)


def error_overlay(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    canvas = to_uint8(image * 0.5)
    canvas[truth & predicted] = TRUE_POSITIVE
    canvas[~truth & predicted] = FALSE_POSITIVE
    canvas[truth & ~predicted] = FALSE_NEGATIVE
    return canvas


def grid(rows: list[list[np.ndarray]], scale: int = 2, gap: int = 4) -> np.ndarray:
    """Tiles (all the same size, uint8 RGB) in rows, enlarged by `scale`, on white."""
    tiles = [[np.kron(tile, np.ones((scale, scale, 1), np.uint8)) for tile in row] for row in rows]
    height, width = tiles[0][0].shape[:2]
    columns = max(len(row) for row in tiles)
    shape = (len(tiles) * (height + gap) + gap, columns * (width + gap) + gap, 3)
    canvas = np.full(shape, 255, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            top, left = gap + r * (height + gap), gap + c * (width + gap)
            canvas[top : top + height, left : left + width] = tile
    return canvas


def fixed_indices(count: int, wanted: int) -> list[int]:
    """`wanted` evenly spaced indices of a list of `count`: the same images every run."""
    return sorted({int(i) for i in np.linspace(0, count - 1, min(wanted, count)).round()})


def penn_fudan_scores(model, data: PennFudanSplits, threshold: float, tolerance: int):
    """(evaluate.json's summary, per-image table rows, test probabilities)."""
    test_probability = predict_probabilities(model, data.test_images)
    test_truth = data.test_masks[..., 0] > 0.5
    table = per_image_scores(test_truth, test_probability >= threshold, tolerance)
    test = summarize(table)  # {"pooled": ..., "mean": ...}
    train_truth = data.train_masks[..., 0] > 0.5
    train_predicted = predict_probabilities(model, data.train_images) >= threshold
    train_table = per_image_scores(train_truth, train_predicted, tolerance)
    train = {f"iou_{kind}": scores["iou"] for kind, scores in summarize(train_table).items()}
    gap = {f"iou_{kind}": train[f"iou_{kind}"] - test[kind]["iou"] for kind in ("pooled", "mean")}
    rows = [
        {"name": name, **{key: float(table[key][i]) for key in TABLE_COLUMNS}}
        for i, name in enumerate(data.test_names)
    ]
    return {"test": test, "train": train, "gap": gap}, rows, test_probability


def prediction_pictures(data: PennFudanSplits, probability, threshold, wanted: int):
    """(grid: image | truth | prediction per row, errors: TP/FP/FN per image) as uint8 RGB."""
    rows, errors = [], []
    for i in fixed_indices(len(data.test_names), wanted):
        image, truth = data.test_images[i], data.test_masks[i, ..., 0]
        rows.append([to_uint8(image), tint(image, truth), tint(image, probability[i])])
        errors.append(error_overlay(image, truth > 0.5, probability[i] >= threshold))
    return grid(rows), grid([errors])


def mall_generalisation(model, mall: MallArrays, threshold: float, person_height: float):
    masks = predict_probabilities(model, mall.frames) >= threshold
    scores = mall_scores(
        masks, mall.heads, mall.roi, mall.perspective, mall.counts, mall.frame_size, person_height
    )
    # How "red" the overlay is: the share of ROI pixels called foreground, all frames pooled.
    scores["foreground_share"] = float(masks[:, mall.roi.astype(bool)].mean())
    return scores
