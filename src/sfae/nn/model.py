"""The networks (keras.ops only: any backend), outputs [mask probability, features]."""

import keras
import numpy as np
from keras import layers, ops

from sfae.config import MAX_SEED, Config
from sfae.errors import SfaeError
from sfae.nn.sparse_filtering import soft_absolute

BOTTLENECK_UNITS = 9  # reshaped to 3x3x1 for the decoder


@keras.saving.register_keras_serializable(package="sfae")
class PoolMix(layers.Layer):
    """2x2/stride-2 pooling, w * first + (1 - w) * second with one learnt scalar w; first and
    second are max and avg, in the order the paper alternates from one pooling to the next."""

    def __init__(self, first="max", stddev=0.05, seed=None, **kwargs):
        super().__init__(**kwargs)
        if first not in ("max", "avg"):
            raise ValueError(f"first must be 'max' or 'avg', got {first!r}")
        self.first, self.stddev, self.seed = first, stddev, seed

    def build(self, input_shape):
        initializer = keras.initializers.RandomNormal(stddev=self.stddev, seed=self.seed)
        self.mix = self.add_weight(name="mix", shape=(), initializer=initializer)

    def call(self, inputs):
        pooled_max = ops.max_pool(inputs, pool_size=2, strides=2, padding="valid")
        pooled_avg = ops.average_pool(inputs, pool_size=2, strides=2, padding="valid")
        first, second = (pooled_max, pooled_avg)[:: 1 if self.first == "max" else -1]
        return self.mix * first + (1.0 - self.mix) * second

    def get_config(self):
        return dict(super().get_config(), first=self.first, stddev=self.stddev, seed=self.seed)


@keras.saving.register_keras_serializable(package="sfae")
class SoftAbsolute(layers.Layer):
    """sqrt(x^2 + epsilon), the paper's bottleneck activation for pure/L1/L2."""

    def __init__(self, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        return soft_absolute(inputs, self.epsilon)

    def get_config(self):
        return dict(super().get_config(), epsilon=self.epsilon)


def only_one(config: Config, hook: str, does: str, *args):
    """What the variant's one regulariser with `hook` gives (None: none); SfaeError for two."""
    found = [v for u in config.variant.regularisers if (v := getattr(u, hook)(*args)) is not None]
    if len(found) > 1:
        raise SfaeError(f"variant {config.variant.name}: two regularisers {does}")
    return found[0] if found else None


def seed_stream(key, count: int):
    return iter(np.random.default_rng(key).integers(0, MAX_SEED, size=count).tolist())


def build_model(config: Config) -> keras.Model:
    """The network of config.arch; one config, one set of weights."""
    return unet_model(config) if config.arch == "unet" else paper_model(config)


def paper_model(config: Config) -> keras.Model:
    """The auto-encoder: [mask probability (s, s, 1), bottleneck features (9,)]."""
    size = config.data.image_size
    seeds = seed_stream(config.seed, 64)
    # A stream of their own, so that dropout leaves every other variant's weights as they were.
    layer_seeds = seed_stream([config.seed, 2], 64)
    stddev = config.train.init_stddev
    regularizer = only_one(config, "kernel_regularizer", "penalise the kernels")
    same = dict(padding="same", use_bias=False, kernel_regularizer=regularizer)

    def normal():
        return keras.initializers.RandomNormal(stddev=stddev, seed=next(seeds))

    def conv(x, channels, kernel=3, act="elu", transpose=False, name=None):
        kind = layers.Conv2DTranspose if transpose else layers.Conv2D
        op = kind(channels, kernel, activation=act, kernel_initializer=normal(), name=name, **same)
        x = op(x)
        for unit in [] if act == "sigmoid" else config.variant.regularisers:  # not on the mask
            x = unit.hidden_layer(x, name, layer_seeds)
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
        BOTTLENECK_UNITS, use_bias=False, kernel_initializer=normal(), name="bottleneck"
    )(flat)
    # Sparse variants feed the decoder linearly: their nonlinearity lives in the sparse cost.
    code = features
    if config.variant.bottleneck_activation == "softabs":
        code = SoftAbsolute(name="bottleneck_softabs")(features)
    x = layers.Reshape((3, 3, 1), name="code_grid")(code)

    x = resize(x, size // 16, "bilinear", "up_1")
    x = conv(x, 3, kernel=1, transpose=True, name="decode_1")
    x = resize(x, size // 8, "bicubic", "up_2")
    x = conv(x, 3, kernel=1, transpose=True, name="decode_2t")
    x = conv(x, 3, kernel=1, name="decode_2")
    skips = [(encoded_quarter, "bilinear"), (encoded_half, "bilinear"), (encoded_full, "bicubic")]
    for step, (skip, interpolation) in enumerate(skips, start=3):
        x = resize(x, size // 2 ** (5 - step), interpolation, f"up_{step}")
        x = layers.Concatenate(name=f"skip_{step}")([x, skip])
        x = conv(x, 3, transpose=True, name=f"decode_{step}t")
        if step < 5:
            x = conv(x, 3, name=f"decode_{step}")
    x = conv(x, 1, act="sigmoid", name="mask")
    features = layers.Identity(name="features")(features)
    return keras.Model(images, [x, features], name=f"sfae_{config.variant.name}")


def unet_model(config: Config) -> keras.Model:
    """A U-Net: [mask, features (the deepest level average-pooled, unread by the decoder: no
    bottleneck_activation)]. Per-example normalisation (train.shards keeps the math); He-normal
    kernels (N(0, 0.05) does not suit 9 * 8 * width inputs); no bias before a normalisation."""
    unet = config.model.unet
    size = config.data.image_size
    seeds, layer_seeds = seed_stream([config.seed, 3], 256), seed_stream([config.seed, 4], 256)
    regularizer = only_one(config, "kernel_regularizer", "penalise the kernels")
    grouped = unet.norm == "group"

    def kernel_settings():
        initializer = keras.initializers.HeNormal(seed=next(seeds))
        return {"kernel_initializer": initializer, "kernel_regularizer": regularizer}

    def conv(x, channels, name, kernel=3, transpose=False):
        kind = layers.Conv2DTranspose if transpose else layers.Conv2D
        settings = dict(padding="same", use_bias=not grouped, name=name, **kernel_settings())
        x = kind(channels, kernel, strides=2 if transpose else 1, **settings)(x)
        if grouped:
            x = layers.GroupNormalization(unet.groups, name=f"{name}_norm")(x)
        x = layers.Activation("elu", name=f"{name}_elu")(x)
        for unit in config.variant.regularisers:
            x = unit.hidden_layer(x, name, layer_seeds)
        return x

    def block(x, channels, name):
        return conv(conv(x, channels, f"{name}a"), channels, f"{name}b")

    x = images = keras.Input((size, size, 3), name="image")
    skips = []
    for level in range(1, unet.depth + 1):
        if level > 1:
            x = layers.MaxPooling2D(2, name=f"pool_{level - 1}")(x)
        x = block(x, unet.width * 2 ** (level - 1), f"encode_{level}")
        skips.append(x)
    features = layers.GlobalAveragePooling2D(name="bottleneck")(x)
    for level in range(unet.depth - 1, 0, -1):
        channels = unet.width * 2 ** (level - 1)
        x = conv(x, channels, f"up_{level}", kernel=2, transpose=True)
        x = layers.Concatenate(name=f"skip_{level}")([x, skips[level - 1]])
        x = block(x, channels, f"decode_{level}")
    x = layers.Conv2D(1, 1, name="mask_logit", **kernel_settings())(x)
    mask = layers.Activation("sigmoid", name="mask")(x)
    features = layers.Identity(name="features")(features)
    return keras.Model(images, [mask, features], name=f"sfae_unet_{config.variant.name}")


def encoder_model(model: keras.Model) -> keras.Model:
    """The sub-network from image to bottleneck features (what sparse pretraining trains)."""
    return keras.Model(model.input, model.get_layer("features").output, name="encoder")
