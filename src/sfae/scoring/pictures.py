"""Pictures a person judges at a glance: prediction grids and error overlays."""

import numpy as np

MASK_COLOUR = np.array([255, 40, 40], np.float32)  # red, as the original post's overlays
TRUE_POSITIVE = np.array([40, 200, 40], np.uint8)  # green
FALSE_POSITIVE = np.array([230, 40, 40], np.uint8)  # red: claimed, not there
FALSE_NEGATIVE = np.array([40, 90, 255], np.uint8)  # blue: there, missed


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def tint(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """image (h, w, 3) in [0, 1] with mask (h, w) in [0, 1] blended in red."""
    weight = alpha * mask[..., None]
    return to_uint8(image * (1 - weight) + MASK_COLOUR / 255.0 * weight)


def error_overlay(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """TP green, FP red, FN blue over a dimmed image."""
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
