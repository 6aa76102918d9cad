"""Augmentation drawn afresh every epoch (`augment: {...}`) with Keras' preprocessing layers;
image and mask share the geometric ones (as one 4-channel tensor), the image alone the rest."""

from typing import Annotated

import numpy as np
from pydantic import StrictBool

from sfae.config import MAX_SEED, Number, between
from sfae.nn.regularisers.base import Augment, Regulariser


def augmenter(settings: "Augmentation", seed: int) -> Augment:
    """A function (images, masks) -> a freshly drawn augmented copy of both, seeded."""
    from keras import layers, ops

    seeds = iter(np.random.default_rng([seed, 3]).integers(0, MAX_SEED, size=8).tolist())
    s, unit = settings, (0.0, 1.0)
    zoom, shift = (-s.zoom, s.zoom), (-s.shift, s.shift)
    # Reflection fills the borders with image content: no black frames for the net to learn.
    warp, tone = [], []  # geometric (image and mask), photometric (image)
    if s.flip:
        warp.append(layers.RandomFlip("horizontal", seed=next(seeds)))
    if s.zoom:
        warp.append(layers.RandomZoom(zoom, fill_mode="reflect", seed=next(seeds)))
    if s.shift:
        warp.append(layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=next(seeds)))
    if s.brightness:
        tone.append(layers.RandomBrightness(s.brightness, value_range=unit, seed=next(seeds)))
    if s.contrast:
        tone.append(layers.RandomContrast(s.contrast, value_range=unit, seed=next(seeds)))

    def augment(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        joined = ops.concatenate([ops.convert_to_tensor(images), ops.convert_to_tensor(masks)], -1)
        for layer in warp:
            joined = layer(joined, training=True)
        moved_images, moved_masks = joined[..., :3], joined[..., 3:]
        for layer in tone:
            moved_images = layer(moved_images, training=True)
        moved = (moved_images, ops.cast(moved_masks >= 0.5, "float32"))
        return tuple(np.asarray(ops.convert_to_numpy(array), np.float32) for array in moved)

    return augment


class Augmentation(Regulariser):
    name = "augment"  # no strength: the settings are a set of ranges, not one knob

    flip: StrictBool  # random horizontal flips
    zoom: Annotated[Number, between(0.0, 0.9)]  # scale up or down by at most this fraction
    shift: Annotated[Number, between(0.0, 0.9)]  # translate by at most this fraction of the side
    brightness: Annotated[Number, between(0.0, 1.0)]  # add at most this (images lie in [0, 1])
    contrast: Annotated[Number, between(0.0, 0.9)]  # factor in [1 - contrast, 1 + contrast]

    def augmentation(self, seed: int) -> Augment:
        return augmenter(self, seed)
