"""Turn a trained model into numbers and pictures: Penn-Fudan test scores and Mall scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sfae.data.prepared import MallArrays, PennFudanSplits
from sfae.inference.predict import predict_probabilities
from sfae.scoring.mall_metrics import mall_scores
from sfae.scoring.metrics import per_image_scores, pooled_iou, summarize
from sfae.scoring.pictures import error_overlay, fixed_indices, grid, tint, to_uint8

TABLE_COLUMNS = ("iou", "dice", "precision", "recall", "accuracy", "boundary_f1")


def penn_fudan_scores(model, data: PennFudanSplits, threshold: float, tolerance: int):
    """(summary for evaluate.json, per-image table rows, test probabilities)."""
    test_probability = predict_probabilities(model, data.test_images)
    train_probability = predict_probabilities(model, data.train_images)
    test_truth, train_truth = data.test_masks[..., 0] > 0.5, data.train_masks[..., 0] > 0.5
    table = per_image_scores(test_truth, test_probability >= threshold, tolerance)
    summary = summarize(table)
    train_table = per_image_scores(train_truth, train_probability >= threshold, tolerance)
    train_iou = {
        "pooled": pooled_iou(train_truth, train_probability >= threshold),
        "mean": float(np.mean(train_table["iou"])),
    }
    result = {
        "test": {"pooled": summary["pooled"], "mean": summary["mean"]},
        "train": {"iou_pooled": train_iou["pooled"], "iou_mean": train_iou["mean"]},
        "gap": {
            "iou_pooled": train_iou["pooled"] - summary["pooled"]["iou"],
            "iou_mean": train_iou["mean"] - summary["mean"]["iou"],
        },
    }
    if data.val_names:  # held-out training images: what the sweep selects on
        val_truth = data.val_masks[..., 0] > 0.5
        val_predicted = predict_probabilities(model, data.val_images) >= threshold
        val_table = per_image_scores(val_truth, val_predicted, tolerance)
        result["val"] = {
            "iou_pooled": pooled_iou(val_truth, val_predicted),
            "iou_mean": float(np.mean(val_table["iou"])),
            "n_images": len(data.val_names),
        }
    rows = [
        {"name": name, **{key: float(table[key][i]) for key in TABLE_COLUMNS}}
        for i, name in enumerate(data.test_names)
    ]
    return result, rows, test_probability


def write_table(path: Path, rows: list[dict]) -> None:
    """Tab-separated, one row per image, a header line."""
    header = list(rows[0])
    lines = ["\t".join(header)]
    for row in rows:
        lines.append(
            "\t".join(f"{row[k]:.6f}" if isinstance(row[k], float) else str(row[k]) for k in header)
        )
    path.write_text("\n".join(lines) + "\n")


def prediction_pictures(data: PennFudanSplits, probability, threshold, wanted: int):
    """(grid: image | truth | prediction per row, errors: TP/FP/FN per image) as uint8 RGB."""
    picks = fixed_indices(len(data.test_names), wanted)
    rows, errors = [], []
    for i in picks:
        image, truth = data.test_images[i], data.test_masks[i, ..., 0]
        rows.append([to_uint8(image), tint(image, truth), tint(image, probability[i])])
        errors.append(error_overlay(image, truth > 0.5, probability[i] >= threshold))
    return grid(rows), grid([errors])


def mall_generalisation(model, mall: MallArrays, threshold: float, person_height: float):
    predicted = predict_probabilities(model, mall.frames) >= threshold
    scores = mall_scores(
        predicted,
        mall.heads,
        mall.roi,
        mall.perspective,
        mall.counts,
        mall.frame_size,
        person_height,
    )
    # How "red" the overlay is: the share of ROI pixels called foreground, all frames pooled.
    inside = mall.roi.astype(bool)
    scores["foreground_share"] = float(predicted[:, inside].mean())
    return scores
