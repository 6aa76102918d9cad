"""Augmentation drawn afresh every epoch (`augment: {...}`), with Keras' preprocessing layers.

Image and mask go through the geometric layers as one 4-channel tensor, so both get the
same flip, zoom and shift; the mask is then re-binarised (interpolation blurs its edge).
Brightness and contrast touch the image alone.
"""

from typing import Annotated

import numpy as np
from pydantic import StrictBool

from sfae.config import MAX_SEED, Number, between
from sfae.nn.regularisers.base import Augment, Regulariser


class Augmentation(Regulariser):
    name = "augment"  # no strength: the settings are a set of ranges, not one knob

    flip: StrictBool  # random horizontal flips
    zoom: Annotated[Number, between(0.0, 0.9)]  # scale up or down by at most this fraction
    shift: Annotated[Number, between(0.0, 0.9)]  # translate by at most this fraction of the side
    brightness: Annotated[Number, between(0.0, 1.0)]  # add at most this (images lie in [0, 1])
    contrast: Annotated[Number, between(0.0, 0.9)]  # factor in [1 - contrast, 1 + contrast]

    def augmentation(self, seed: int) -> Augment:
        return augmenter(self, seed)


def augmenter(settings: Augmentation, seed: int) -> Augment:
    """A function (images, masks) -> a freshly drawn augmented copy of both, seeded."""
    from keras import layers, ops

    seeds = iter(np.random.default_rng([seed, 3]).integers(0, MAX_SEED, size=8).tolist())
    zoom, shift = (-settings.zoom, settings.zoom), (-settings.shift, settings.shift)
    # Reflection fills the borders with image content: no black frames for the net to learn.
    geometric = [
        layers.RandomFlip("horizontal", seed=next(seeds)) if settings.flip else None,
        layers.RandomZoom(zoom, fill_mode="reflect", seed=next(seeds)) if settings.zoom else None,
        layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=next(seeds))
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
