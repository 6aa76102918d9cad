"""The paper's auto-encoder: shapes, parameter count, custom layers, seeding, variants."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from sfae.config import Config, read_yaml
from sfae.nn.model import BOTTLENECK_UNITS, PoolMix, SoftAbsolute, build_model, encoder_model
from sfae.nn.regularisers.registry import load_config

POOLS = ("pool_1", "pool_2", "pool_3", "pool_4")
VARIANTS = tuple(
    read_yaml((Path(__file__).resolve().parent.parent / "params.yaml").read_text())["variants"]
)


def configured(base: Config, variant: str = "pure", size: int = 96, seed: int | None = None):
    return replace(
        base,
        variant=base.variants[variant],
        data=replace(base.data, image_size=size),
        seed=base.seed if seed is None else seed,
    )


def random_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, size, size, 3), dtype=np.float32)


def all_weights(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_weights()]


@pytest.fixture(scope="module")
def base(repo_root: Path) -> Config:
    return load_config(repo_root / "params.yaml")


@pytest.fixture(scope="module")
def paper_model(base: Config) -> keras.Model:
    return build_model(configured(base, "pure", 96))


@pytest.fixture(scope="module")
def small_models(base: Config) -> dict[str, keras.Model]:
    return {name: build_model(configured(base, name, 32)) for name in VARIANTS}


@pytest.mark.parametrize("size", [96, 32])
def test_output_shapes(base: Config, paper_model: keras.Model, small_models, size: int) -> None:
    model = paper_model if size == 96 else small_models["pure"]
    masks, features = model.predict_on_batch(random_images(3, size))
    assert masks.shape == (3, size, size, 1)
    assert features.shape == (3, BOTTLENECK_UNITS) == (3, 9)
    assert [tuple(o.shape) for o in model.outputs] == [(None, size, size, 1), (None, 9)]


def test_paper_network_has_6505_parameters(paper_model: keras.Model) -> None:
    # encoder kernels: 3*3*3*4 + 3*3*4*8 + 3*3*8*16 + 3*3*16*8 = 108 + 288 + 1152 + 1152 = 2700
    # pool-mix scalars: 4
    # dense bottleneck (6*6*8 = 288 -> 9, no bias): 288 * 9 = 2592
    # decoder: decode_1 (1x1, 1->3) 3, decode_2t (1x1, 3->3) 9, decode_2 (1x1, 3->3) 9,
    #   decode_3t (3x3, 3+16 -> 3) 513, decode_3 (3x3, 3->3) 81,
    #   decode_4t (3x3, 3+8 -> 3) 297, decode_4 81, decode_5t (3x3, 3+4 -> 3) 189,
    #   mask (3x3, 3->1) 27: together 1209
    # total: 2700 + 4 + 2592 + 1209 = 6505
    assert paper_model.count_params() == 6505
    assert sum(int(np.prod(v.shape)) for v in paper_model.trainable_variables) == 6505
    assert not paper_model.non_trainable_variables
    counts = {
        layer.name: layer.count_params() for layer in paper_model.layers if layer.count_params()
    }
    assert counts == {
        "encode_1": 108,
        "encode_2": 288,
        "encode_3": 1152,
        "encode_4": 1152,
        **dict.fromkeys(POOLS, 1),
        "bottleneck": 2592,
        "decode_1": 3,
        "decode_2t": 9,
        "decode_2": 9,
        "decode_3t": 513,
        "decode_3": 81,
        "decode_4t": 297,
        "decode_4": 81,
        "decode_5t": 189,
        "mask": 27,
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_biases_anywhere(small_models, variant: str) -> None:
    model = small_models[variant]
    for layer in model.layers:
        if hasattr(layer, "use_bias"):
            assert layer.use_bias is False, layer.name
    for variable in model.variables:
        assert "bias" not in variable.path, variable.path
    # Only kernels and the four pool scalars are trained (dropout keeps a seed state).
    kinds = sorted({v.path.rsplit("/", 1)[-1] for v in model.trainable_variables})
    assert kinds == ["kernel", "mix"]
    states = {v.path.rsplit("/", 1)[-1] for v in model.non_trainable_variables}
    has_dropout = any(isinstance(layer, keras.layers.SpatialDropout2D) for layer in model.layers)
    assert has_dropout == ("dropout" in variant)
    assert states == ({"seed_generator_state"} if has_dropout else set())


def test_pool_mix_scalars_are_trainable_and_get_gradients(small_models) -> None:
    model = small_models["pure"]
    trainable = {id(v) for v in model.trainable_variables}
    mixes = []
    for name in POOLS:
        layer = model.get_layer(name)
        assert isinstance(layer, PoolMix)
        assert len(layer.trainable_weights) == 1
        mix = layer.trainable_weights[0]
        assert tuple(mix.shape) == () and id(mix) in trainable
        mixes.append(mix)
    assert [model.get_layer(n).first for n in POOLS] == ["max", "avg", "max", "avg"]

    images = tf.constant(random_images(4, 32, seed=1))
    with tf.GradientTape() as tape:
        masks, features = model(images, training=True)
        loss = tf.reduce_mean(masks) + tf.reduce_mean(tf.square(features))
    gradients = tape.gradient(loss, mixes)
    for name, gradient in zip(POOLS, gradients, strict=True):
        assert gradient is not None, name
        assert float(gradient.numpy()) != 0.0, name


def test_pool_mix_blends_max_and_average() -> None:
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3) ** 1.5
    windows = x.reshape(2, 2, 2, 2, 2, 3)
    pooled_max, pooled_avg = windows.max(axis=(2, 4)), windows.mean(axis=(2, 4))
    for first, (a, b) in [("max", (pooled_max, pooled_avg)), ("avg", (pooled_avg, pooled_max))]:
        layer = PoolMix(first=first)
        layer.build(x.shape)
        layer.mix.assign(0.3)
        np.testing.assert_allclose(np.asarray(layer(x)), 0.3 * a + 0.7 * b, rtol=1e-5)
    with pytest.raises(ValueError, match="first"):
        PoolMix(first="min")


def test_custom_layers_survive_save_and_load(base: Config, tmp_path: Path) -> None:
    model = build_model(configured(base, "l2", 32))
    # Move the weights away from their initial values, so a load that re-initialises shows.
    model.get_layer("pool_2").mix.assign(0.7)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    images = random_images(3, 32, seed=2)
    for original, restored in zip(
        model.predict_on_batch(images), loaded.predict_on_batch(images), strict=True
    ):
        np.testing.assert_array_equal(original, restored)
    for before, after in zip(all_weights(model), all_weights(loaded), strict=True):
        np.testing.assert_array_equal(before, after)
    for name in (*POOLS, "bottleneck_softabs"):
        layer, restored_layer = model.get_layer(name), loaded.get_layer(name)
        assert type(restored_layer) is type(layer)
        assert isinstance(layer, PoolMix | SoftAbsolute)
        assert restored_layer.get_config() == layer.get_config()
    assert loaded.get_layer("bottleneck_softabs").epsilon == 1e-8
    assert loaded.get_layer("pool_3").first == "max"


def test_same_seed_same_initial_weights_other_seed_different(base: Config) -> None:
    first = all_weights(build_model(configured(base, "pure", 32, seed=11)))
    again = all_weights(build_model(configured(base, "pure", 32, seed=11)))
    other = all_weights(build_model(configured(base, "pure", 32, seed=12)))
    assert len(first) == len(again) == len(other)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, c in zip(first, other, strict=True):
        assert not np.array_equal(a, c)


def test_initial_kernels_are_normal_with_the_configured_stddev(paper_model, base) -> None:
    kernels = np.concatenate(
        [v.numpy().ravel() for v in paper_model.trainable_variables if v.path.endswith("kernel")]
    )
    assert abs(kernels.mean()) < 0.005
    assert kernels.std() == pytest.approx(base.train.init_stddev, rel=0.1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_softabs_after_the_bottleneck_only_for_non_sparse_variants(
    small_models, variant: str
) -> None:
    model = small_models[variant]
    sparse = "sparse" in variant  # the post's two, augment_sparse, sparse_softabs_frames
    softabs_layers = [layer for layer in model.layers if isinstance(layer, SoftAbsolute)]
    code_grid = model.get_layer("code_grid")
    bottleneck_output = model.get_layer("bottleneck").output
    if sparse:
        assert softabs_layers == []
        assert code_grid.input is bottleneck_output
    else:
        assert [layer.name for layer in softabs_layers] == ["bottleneck_softabs"]
        assert softabs_layers[0].input is bottleneck_output
        assert code_grid.input is softabs_layers[0].output

    # Behaviour: what the decoder receives, against the features the model outputs.
    probe = keras.Model(model.input, [code_grid.output, model.get_layer("features").output])
    code, features = probe.predict_on_batch(random_images(4, 32, seed=3))
    code = code.reshape(4, 9)
    expected = features if sparse else np.sqrt(features.astype(np.float64) ** 2 + 1e-8)
    np.testing.assert_allclose(code, expected, rtol=1e-6, atol=1e-7)
    if not sparse:
        assert (code > 0).all()
    # The features output is the bottleneck itself (linear), in every variant.
    assert (features < 0).any()


def test_encoder_model_shares_layers_with_the_model(small_models) -> None:
    model = small_models["sparse_elu"]
    encoder = encoder_model(model)
    images = random_images(3, 32, seed=4)
    np.testing.assert_allclose(
        encoder.predict_on_batch(images), model.predict_on_batch(images)[1], rtol=1e-6
    )
    encoder_ids = {id(v) for v in encoder.trainable_variables}
    assert encoder_ids < {id(v) for v in model.trainable_variables}
    names = {layer.name for layer in encoder.layers}
    assert {"encode_1", "encode_4", "pool_4", "bottleneck"} <= names
    assert not any(name.startswith("decode") or name == "mask" for name in names)


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_is_a_probability(small_models, variant: str) -> None:
    images = random_images(4, 32, seed=5)
    images[0] = 0.0
    images[1] = 1.0
    masks, _ = small_models[variant].predict_on_batch(images)
    assert np.isfinite(masks).all()
    assert masks.min() > 0.0 and masks.max() < 1.0
