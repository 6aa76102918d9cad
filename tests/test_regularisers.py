"""The regularisers as units: dropout in the network, augmentation in the loop, variants that
combine several, and a regulariser of one's own in one module."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import keras
import numpy as np
import pytest
import yaml

from sfae import config as params
from sfae.config import Config, Number, between, strength_key
from sfae.errors import SfaeError
from sfae.nn import training
from sfae.nn.model import build_model
from sfae.nn.regularisers.augment import Augmentation, augmenter
from sfae.nn.regularisers.base import Regulariser
from sfae.nn.regularisers.registry import REGULARISERS, STRENGTH_LIMITS, load_config

REPO = Path(__file__).resolve().parent.parent
AUGMENT = {"flip": True, "zoom": 0.1, "shift": 0.1, "brightness": 0.1, "contrast": 0.2}
SPARSE = {
    **{"activation": "elu", "epsilon": 1.0e-8, "pretrain_epochs": 1},
    **{"pretrain_learning_rate": 0.0005, "finetune_epochs": 2, "weight": 1.75},
}
# The three combinations the next study needs: augmentation and one regulariser with a strength.
COMBINED = {
    "augment_l2": {"regularizer": "l2", "regularizer_scale": 0.005},
    "augment_dropout": {"dropout": 0.1},
    "augment_sparse": {"bottleneck_activation": "linear", "sparse": SPARSE},
}


@pytest.fixture(scope="module")
def base() -> Config:
    return load_config(REPO / "params.yaml")


def small(config: Config, variant: str, epochs: int = 2) -> Config:
    return replace(
        config,
        variant=config.variants[variant],
        data=replace(config.data, image_size=32),
        train=replace(config.train, epochs=epochs, shards=1),
    )


def with_variants(folder: Path, variants: dict) -> Path:
    """params.yaml with more variants (the tests' own, not the committed file's)."""
    document = yaml.safe_load((REPO / "params.yaml").read_text())
    document["variants"].update(copy.deepcopy(variants))
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def masks_and_images(count=6, size=32):
    """Masks of random boxes, and images that show the mask (bright) on a dark ground."""
    rng = np.random.default_rng(0)
    masks = np.zeros((count, size, size, 1), np.float32)
    for mask in masks:
        top, left = rng.integers(2, size // 2, size=2)
        mask[top : top + size // 3, left : left + size // 4] = 1.0
    return 0.1 + 0.8 * np.repeat(masks, 3, axis=-1), masks


def counting_augmentation(monkeypatch) -> list:
    """Record the images of every augmented epoch the finetuning draws."""
    calls, real = [], training.augmentation

    def spy(config):
        augment = real(config)
        if augment is None:
            return None

        def counted(images, masks):
            calls.append(images.shape)
            return augment(images, masks)

        return counted

    monkeypatch.setattr(training, "augmentation", spy)
    return calls


def test_dropout_follows_every_hidden_convolution_and_leaves_the_weights_alone(base):
    rate = base.variants["dropout"].dropout.model_copy(update={"dropout": 0.2})
    changed = base.variants["dropout"].model_copy(update={"dropout": rate})
    dropped = build_model(replace(small(base, "pure"), variant=changed))
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
    model = build_model(small(base, "dropout"))
    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    inference = [np.asarray(model(images, training=False)[0]) for _ in range(2)]
    training_outputs = [np.asarray(model(images, training=True)[0]) for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    assert not np.array_equal(training_outputs[0], training_outputs[1])


def settings(**changes) -> Augmentation:
    return Augmentation(**{**AUGMENT, **changes})


def test_augmentation_moves_image_and_mask_together():
    images, masks = masks_and_images()
    geometric = augmenter(settings(zoom=0.2, shift=0.2, brightness=0.0, contrast=0.0), seed=3)
    moved_images, moved_masks = geometric(images, masks)
    assert not np.array_equal(moved_masks, masks)  # something moved
    assert set(np.unique(moved_masks)) <= {0.0, 1.0}
    # Where the image is bright the mask is set: the same transform hit both. Interpolation
    # blurs a one-pixel rim, which the threshold may put on either side.
    agree = (moved_images[..., 0] > 0.5) == (moved_masks[..., 0] > 0.5)
    assert agree.mean() > 0.98


def test_photometric_augmentation_changes_the_image_only():
    images, masks = masks_and_images()
    photometric = augmenter(settings(flip=False, zoom=0, shift=0, brightness=0.3, contrast=0.5), 3)
    changed_images, same_masks = photometric(images, masks)
    np.testing.assert_array_equal(same_masks, masks)
    assert not np.allclose(changed_images, images)
    assert changed_images.min() >= 0.0 and changed_images.max() <= 1.0


def test_each_epoch_draws_new_augmentations_and_a_seed_repeats_them():
    images, masks = masks_and_images()
    first, second = augmenter(settings(), seed=5), augmenter(settings(), seed=5)
    a1, a2 = first(images, masks), first(images, masks)
    b1 = second(images, masks)
    assert not np.array_equal(a1[1], a2[1])
    np.testing.assert_array_equal(a1[0], b1[0])


def test_finetuning_the_augment_variant_sees_augmented_batches(base, monkeypatch):
    config = small(base, "augment")
    images, masks = masks_and_images(count=5)
    calls = counting_augmentation(monkeypatch)
    history = training.finetune(build_model(config), config, images, masks)
    assert len(history) == config.finetune_epochs() == len(calls)
    assert calls[0] == images.shape


@pytest.mark.parametrize("name", sorted(COMBINED))
def test_a_combined_variant_trains_with_every_unit_in_it(
    tmp_path: Path, monkeypatch, name: str
) -> None:
    variant = {"bottleneck_activation": "softabs", "augment": AUGMENT, **COMBINED[name]}
    config = small(load_config(with_variants(tmp_path, {name: variant})), name, epochs=3)
    units = {type(unit).__name__ for unit in config.variant.regularisers}
    assert "Augmentation" in units and len(units) == 2
    assert (
        strength_key(config.variant)
        == {
            "augment_l2": f"variants.{name}.regularizer_scale",
            "augment_dropout": f"variants.{name}.dropout",
            "augment_sparse": f"variants.{name}.sparse.weight",
        }[name]
    )
    images, masks = masks_and_images(count=5)
    calls = counting_augmentation(monkeypatch)
    training.configure_determinism(config.seed)
    model = build_model(config)
    pretrained = training.pretrain(model, config, images)
    history = training.finetune(model, config, images, masks)

    assert len(calls) == len(history) == config.finetune_epochs()  # augmented every epoch
    last = history[-1].terms
    assert all(np.isfinite(value) for value in last.values())
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.SpatialDropout2D)]
    assert bool(drops) == (name == "augment_dropout")
    assert (last["penalty"] > 0) == (name == "augment_l2") == bool(model.losses)
    if name == "augment_sparse":  # pretrained on the sparse cost, then finetuned with it
        assert len(pretrained) == 1 and set(pretrained[0].terms) == {"loss", "sparse"}
        expected = last["segmentation"] + last["penalty"] + 1.75 * last["sparse"]
        assert last["loss"] == pytest.approx(expected, rel=1e-5)
    else:
        assert pretrained == [] and "sparse" not in last


def test_a_variant_may_not_pretrain_twice(tmp_path: Path) -> None:
    path = with_variants(tmp_path, {"twice": {"bottleneck_activation": "linear", "sparse": SPARSE}})
    document = yaml.safe_load(path.read_text())

    class Other(Regulariser):  # a second pretraining unit
        name = "other"
        epochs: int

        def pretrain_share(self):
            return self.epochs, 1

    document["variants"]["twice"]["other"] = {"epochs": 2}
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(SfaeError, match="variants.twice combines sparse and other"):
        params.load_config(path, (*REGULARISERS, Other))


class InputNoise(Regulariser):
    """The worked example of a new regulariser: Gaussian noise on the training images, drawn
    afresh every epoch. One class (here in a test; in src/sfae/nn/regularisers/noise.py
    otherwise, listed in registry.REGULARISERS) and a variant that uses its key."""

    name = "noise"  # variants.<variant>.noise: {stddev: ...}
    strength = "stddev"  # what a sweep grid varies: variants.<variant>.noise.stddev

    stddev: Annotated[Number, between(0.0, 1.0)]

    def augmentation(self, seed: int):
        rng = np.random.default_rng([seed, 5])

        def augment(images, masks):
            noise = rng.normal(0.0, self.stddev, images.shape).astype(np.float32)
            return images + noise, masks

        return augment


def test_a_new_regulariser_is_one_class_and_a_variant(tmp_path: Path, monkeypatch) -> None:
    path = with_variants(
        tmp_path, {"noisy": {"bottleneck_activation": "softabs", "noise": {"stddev": 0.05}}}
    )
    with pytest.raises(SfaeError, match="variants.noisy.noise is not a known setting"):
        load_config(path)  # ours does not know it
    config = small(params.load_config(path, (*REGULARISERS, InputNoise)), "noisy", epochs=1)
    assert config.variant.noise == InputNoise(stddev=0.05)
    assert strength_key(config.variant) == "variants.noisy.noise.stddev"
    with pytest.raises(SfaeError, match=r"variants.noisy.noise.stddev must be less than or eq"):
        bad = yaml.safe_load(path.read_text())
        bad["variants"]["noisy"]["noise"]["stddev"] = 2
        path.write_text(yaml.safe_dump(bad))
        params.load_config(path, (*REGULARISERS, InputNoise))

    images, masks = masks_and_images(count=5)
    calls = counting_augmentation(monkeypatch)
    history = training.finetune(build_model(config), config, images, masks)
    assert len(history) == 1 == len(calls)
    assert np.isfinite(history[0].terms["loss"])


def test_the_penalties_are_tf_contribs_l1_and_half_l2() -> None:
    from sfae.nn.regularisers.penalty import Penalty

    kernel = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)
    # tf.contrib's l1_regularizer: scale * sum|w|; its l2_regularizer: scale * sum(w^2) / 2
    sums = {"l1": np.abs(kernel).sum(), "l2": (kernel**2).sum() / 2}
    for kind, total in sums.items():
        regulariser = Penalty(regularizer=kind, regularizer_scale=0.005).kernel_regularizer()
        value = regulariser(keras.ops.convert_to_tensor(kernel))
        assert float(keras.ops.convert_to_numpy(value)) == pytest.approx(0.005 * total)
    assert Penalty(regularizer="none").kernel_regularizer() is None


def test_a_dropout_rate_of_zero_is_no_strength(tmp_path: Path) -> None:
    """`dropout: 0.0` beside an L2 penalty: the variant's one strength is the penalty's."""
    variant = {"bottleneck_activation": "softabs", "dropout": 0.0, **COMBINED["augment_l2"]}
    config = load_config(with_variants(tmp_path, {"l2_no_drop": variant}))
    chosen = config.variants["l2_no_drop"]
    assert chosen.dropout.dropout == 0.0 and chosen.dropout.strength_key() is None
    assert strength_key(chosen) == "variants.l2_no_drop.regularizer_scale"
    assert chosen.dropout.model_copy(update={"dropout": 0.1}).strength_key() == "dropout"


def test_the_strength_limits_are_the_settings_bounds() -> None:
    assert STRENGTH_LIMITS == {"regularizer_scale": 10.0, "weight": 1000.0, "dropout": 0.95}


def test_unit_modules_import_no_keras() -> None:
    """The params check imports the units: Keras only inside their hooks."""
    import ast

    folder = REPO / "src" / "sfae" / "nn" / "regularisers"
    for module in folder.glob("*.py"):
        tree = ast.parse(module.read_text())
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in top if isinstance(n, ast.ImportFrom)}
        assert not any(name.split(".")[0] in ("keras", "tensorflow") for name in names), module
