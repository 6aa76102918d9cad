"""On-the-fly augmentation of the `augment` variant, with Keras' own preprocessing layers.

Image and mask go through the geometric layers as one 4-channel tensor, so both get the
same flip, zoom and shift; the mask is then re-binarised (interpolation blurs its edge).
Brightness and contrast touch the image alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from keras import layers, ops

from sfae.config import MAX_SEED, AugmentConfig

Augment = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def augmenter(settings: AugmentConfig, seed: int) -> Augment:
    """A function (images, masks) -> a freshly drawn augmented copy of both, seeded."""
    seeds = iter(np.random.default_rng([seed, 3]).integers(0, MAX_SEED, size=8).tolist())
    # Reflection fills the borders with image content: no black frames for the net to learn.
    geometric = [
        layers.RandomFlip("horizontal", seed=next(seeds)) if settings.flip else None,
        layers.RandomZoom((-settings.zoom, settings.zoom), fill_mode="reflect", seed=next(seeds))
        if settings.zoom
        else None,
        layers.RandomTranslation(
            (-settings.shift, settings.shift),
            (-settings.shift, settings.shift),
            fill_mode="reflect",
            seed=next(seeds),
        )
        if settings.shift
        else None,
    ]
    photometric = [
        layers.RandomBrightness(settings.brightness, value_range=(0.0, 1.0), seed=next(seeds))
        if settings.brightness
        else None,
        layers.RandomContrast(settings.contrast, value_range=(0.0, 1.0), seed=next(seeds))
        if settings.contrast
        else None,
    ]
    geometric = [layer for layer in geometric if layer is not None]
    photometric = [layer for layer in photometric if layer is not None]

    def augment(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        joined = ops.concatenate([ops.convert_to_tensor(images), ops.convert_to_tensor(masks)], -1)
        for layer in geometric:
            joined = layer(joined, training=True)
        moved_images, moved_masks = joined[..., :3], joined[..., 3:]
        for layer in photometric:
            moved_images = layer(moved_images, training=True)
        moved_masks = ops.cast(moved_masks >= 0.5, "float32")
        return (
            np.asarray(ops.convert_to_numpy(moved_images), np.float32),
            np.asarray(ops.convert_to_numpy(moved_masks), np.float32),
        )

    return augment
