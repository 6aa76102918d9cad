"""Turn a trained model into numbers and pictures: Penn-Fudan test scores and Mall scores."""

import numpy as np

from sfae.data.prepared import MallArrays, PennFudanSplits
from sfae.inference.predict import predict_probabilities
from sfae.scoring.mall_metrics import mall_scores
from sfae.scoring.metrics import TABLE_COLUMNS, per_image_scores, pooled_iou, summarize
from sfae.scoring.pictures import error_overlay, fixed_indices, grid, tint, to_uint8


def penn_fudan_scores(model, data: PennFudanSplits, threshold: float, tolerance: int):
    """A final run's (summary for evaluate.json, per-image table rows, test probabilities)."""
    test_probability = predict_probabilities(model, data.test_images)
    test_truth = data.test_masks[..., 0] > 0.5
    table = per_image_scores(test_truth, test_probability >= threshold, tolerance)
    test = summarize(table)  # {"pooled": ..., "mean": ...}
    train_truth = data.train_masks[..., 0] > 0.5
    train_predicted = predict_probabilities(model, data.train_images) >= threshold
    train = {"iou_pooled": pooled_iou(train_truth, train_predicted)}
    train_table = per_image_scores(train_truth, train_predicted, tolerance)
    train["iou_mean"] = float(np.mean(train_table["iou"]))
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
