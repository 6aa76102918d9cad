"""The two reference remedies: spatial dropout in the network, augmentation in the loop."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest

from sfae.config import AugmentConfig, Config, load_config
from sfae.nn.augment import augmenter
from sfae.nn.model import build_model
from sfae.nn.training import finetune

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def base() -> Config:
    return load_config(REPO / "params.yaml")


def small(base: Config, variant: str, **variant_changes) -> Config:
    chosen = replace(base.variants[variant], **variant_changes)
    return replace(
        base,
        variant=chosen,
        data=replace(base.data, image_size=32),
        train=replace(base.train, epochs=2, shards=1),
    )


def test_dropout_follows_every_hidden_convolution_and_leaves_the_weights_alone(base):
    dropped = build_model(small(base, "dropout", dropout=0.2))
    plain = build_model(small(base, "pure"))
    drops = [layer for layer in dropped.layers if isinstance(layer, keras.layers.SpatialDropout2D)]
    convolutions = [layer for layer in plain.layers if "Conv" in type(layer).__name__]
    assert len(drops) == len(convolutions) - 1  # all but the mask layer
    assert all(layer.rate == 0.2 for layer in drops)
    # Dropout draws its own seeds: the initial weights are the pure network's.
    for ours, theirs in zip(dropped.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert not [layer for layer in plain.layers if "drop" in layer.name]


def test_dropout_is_active_in_training_only(base):
    model = build_model(small(base, "dropout", dropout=0.5))
    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    inference = [np.asarray(model(images, training=False)[0]) for _ in range(2)]
    training = [np.asarray(model(images, training=True)[0]) for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    assert not np.array_equal(training[0], training[1])


def masks_and_images(count=6, size=32):
    """Masks of random boxes, and images that show the mask (bright) on a dark ground."""
    rng = np.random.default_rng(0)
    masks = np.zeros((count, size, size, 1), np.float32)
    for mask in masks:
        top, left = rng.integers(2, size // 2, size=2)
        mask[top : top + size // 3, left : left + size // 4] = 1.0
    return 0.1 + 0.8 * np.repeat(masks, 3, axis=-1), masks


def test_augmentation_moves_image_and_mask_together():
    images, masks = masks_and_images()
    geometric = augmenter(AugmentConfig(True, 0.2, 0.2, 0.0, 0.0), seed=3)
    moved_images, moved_masks = geometric(images, masks)
    assert not np.array_equal(moved_masks, masks)  # something moved
    assert set(np.unique(moved_masks)) <= {0.0, 1.0}
    # Where the image is bright the mask is set: the same transform hit both. Interpolation
    # blurs a one-pixel rim, which the threshold may put on either side.
    agree = (moved_images[..., 0] > 0.5) == (moved_masks[..., 0] > 0.5)
    assert agree.mean() > 0.98


def test_photometric_augmentation_changes_the_image_only():
    images, masks = masks_and_images()
    photometric = augmenter(AugmentConfig(False, 0.0, 0.0, 0.3, 0.5), seed=3)
    changed_images, same_masks = photometric(images, masks)
    np.testing.assert_array_equal(same_masks, masks)
    assert not np.allclose(changed_images, images)
    assert changed_images.min() >= 0.0 and changed_images.max() <= 1.0


def test_each_epoch_draws_new_augmentations_and_a_seed_repeats_them():
    images, masks = masks_and_images()
    first = augmenter(AugmentConfig(True, 0.1, 0.1, 0.1, 0.2), seed=5)
    second = augmenter(AugmentConfig(True, 0.1, 0.1, 0.1, 0.2), seed=5)
    a1, a2 = first(images, masks), first(images, masks)
    b1 = second(images, masks)
    assert not np.array_equal(a1[1], a2[1])
    np.testing.assert_array_equal(a1[0], b1[0])


def test_finetuning_the_augment_variant_sees_augmented_batches(base, monkeypatch):
    config = small(base, "augment")
    images, masks = masks_and_images(count=5)
    calls = []
    real = augmenter(config.variant.augment, config.seed)

    def spy(settings, seed):
        def augment(batch_images, batch_masks):
            calls.append(batch_images.shape)
            return real(batch_images, batch_masks)

        return augment

    monkeypatch.setattr("sfae.nn.training.augmenter", spy)
    history = finetune(build_model(config), config, images, masks)
    assert len(history) == config.finetune_epochs() == len(calls)
    assert calls[0] == images.shape
