"""The paper's segmentation auto-encoder in Keras 3 (keras.ops only, so any backend runs it)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from sfae.params import Config
from sfae.sparse_filtering import soft_absolute

BOTTLENECK_UNITS = 9  # reshaped to 3x3x1 for the decoder


@keras.saving.register_keras_serializable(package="sfae")
class PoolMix(layers.Layer):
    """2x2/stride-2 pooling as a learnable blend: w * first + (1 - w) * second.

    first/second are "max" and "avg" in either order; the paper alternates the order
    from one pooling step to the next, with one scalar w per step.
    """

    def __init__(self, first="max", stddev=0.05, seed=None, **kwargs):
        super().__init__(**kwargs)
        if first not in ("max", "avg"):
            raise ValueError(f"first must be 'max' or 'avg', got {first!r}")
        self.first, self.stddev, self.seed = first, stddev, seed

    def build(self, input_shape):
        self.mix = self.add_weight(
            name="mix",
            shape=(),
            initializer=keras.initializers.RandomNormal(stddev=self.stddev, seed=self.seed),
        )

    def call(self, inputs):
        pooled_max = ops.max_pool(inputs, pool_size=2, strides=2, padding="valid")
        pooled_avg = ops.average_pool(inputs, pool_size=2, strides=2, padding="valid")
        first, second = (
            (pooled_max, pooled_avg) if self.first == "max" else (pooled_avg, pooled_max)
        )
        return self.mix * first + (1.0 - self.mix) * second

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, height // 2, width // 2, channels)

    def get_config(self):
        return {
            **super().get_config(),
            "first": self.first,
            "stddev": self.stddev,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="sfae")
class SoftAbsolute(layers.Layer):
    """sqrt(x^2 + epsilon), the paper's bottleneck activation for pure/L1/L2."""

    def __init__(self, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        return soft_absolute(inputs, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _regularizer(config: Config):
    variant = config.variant
    if variant.regularizer == "l1":
        return keras.regularizers.L1(variant.regularizer_scale)
    if variant.regularizer == "l2":
        # tf.contrib's l2_regularizer(scale) is scale * sum(w^2) / 2; Keras' L2(c) is c * sum(w^2).
        return keras.regularizers.L2(variant.regularizer_scale / 2)
    return None


def build_model(config: Config) -> keras.Model:
    """The auto-encoder, outputs [mask probability (s, s, 1), bottleneck features (9,)].

    Built from the config's image size, variant and seed: the same config gives the
    same initial weights.
    """
    size = config.data.image_size
    seeds = iter(np.random.default_rng(config.seed).integers(0, 2**31 - 1, size=64).tolist())
    # A stream of its own, so that dropout leaves every other variant's weights as they were.
    dropout_seeds = iter(
        np.random.default_rng([config.seed, 2]).integers(0, 2**31 - 1, size=64).tolist()
    )
    stddev = config.train.init_stddev
    regularizer = _regularizer(config)
    dropout = config.variant.dropout

    def conv(x, channels, kernel=3, activation="elu", transpose=False, name=None):
        kind = layers.Conv2DTranspose if transpose else layers.Conv2D
        x = kind(
            channels,
            kernel,
            padding="same",
            activation=activation,
            use_bias=False,
            kernel_initializer=keras.initializers.RandomNormal(stddev=stddev, seed=next(seeds)),
            kernel_regularizer=regularizer,
            name=name,
        )(x)
        if dropout and activation != "sigmoid":  # every hidden feature map, not the mask
            x = layers.SpatialDropout2D(dropout, seed=next(dropout_seeds), name=f"{name}_drop")(x)
        return x

    def pool(x, first, name):
        return PoolMix(first=first, stddev=stddev, seed=next(seeds), name=name)(x)

    def resize(x, side, interpolation, name):
        return layers.Resizing(side, side, interpolation=interpolation, name=name)(x)

    images = keras.Input((size, size, 3), name="image")
    encoded_full = conv(images, 4, name="encode_1")  # s
    encoded_half = conv(pool(encoded_full, "max", "pool_1"), 8, name="encode_2")  # s/2
    encoded_quarter = conv(pool(encoded_half, "avg", "pool_2"), 16, name="encode_3")  # s/4
    encoded_eighth = conv(pool(encoded_quarter, "max", "pool_3"), 8, name="encode_4")  # s/8
    flat = layers.Flatten(name="flatten")(pool(encoded_eighth, "avg", "pool_4"))  # (s/16)^2 * 8

    features = layers.Dense(
        BOTTLENECK_UNITS,
        use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(stddev=stddev, seed=next(seeds)),
        name="bottleneck",
    )(flat)
    # Sparse variants feed the decoder linearly: their nonlinearity lives in the sparse cost.
    code = features
    if config.variant.bottleneck_activation == "softabs":
        code = SoftAbsolute(name="bottleneck_softabs")(features)
    x = layers.Reshape((3, 3, 1), name="code_grid")(code)

    x = conv(
        resize(x, size // 16, "bilinear", "up_1"), 3, kernel=1, transpose=True, name="decode_1"
    )
    x = resize(x, size // 8, "bicubic", "up_2")
    x = conv(x, 3, kernel=1, transpose=True, name="decode_2t")
    x = conv(x, 3, kernel=1, name="decode_2")
    for step, (skip, interpolation) in enumerate(
        [(encoded_quarter, "bilinear"), (encoded_half, "bilinear"), (encoded_full, "bicubic")],
        start=3,
    ):
        side = size // 2 ** (5 - step)
        x = layers.Concatenate(name=f"skip_{step}")(
            [resize(x, side, interpolation, f"up_{step}"), skip]
        )
        x = conv(x, 3, transpose=True, name=f"decode_{step}t")
        last = step == 5
        x = conv(
            x,
            1 if last else 3,
            activation="sigmoid" if last else "elu",
            name="mask" if last else f"decode_{step}",
        )
    features = layers.Identity(name="features")(features)
    return keras.Model(images, [x, features], name=f"sfae_{config.variant.name}")


def encoder_model(model: keras.Model) -> keras.Model:
    """The sub-network from image to bottleneck features (what sparse pretraining trains)."""
    return keras.Model(model.input, model.get_layer("features").output, name="encoder")
