"""Sparse filtering cost: agrees with an independent NumPy version, normalises, differentiates."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from sfae.nn.sparse_filtering import soft_absolute, sparse_filtering_loss

EPSILON = 1e-8
ACTIVATIONS = ("softabs", "elu")


def numpy_normalised(features: np.ndarray, activation: str, epsilon: float = EPSILON):
    """Ngiam's two normalisations, written independently of the module (float64)."""
    f = np.asarray(features, np.float64)
    if activation == "softabs":
        a = np.sqrt(f**2 + epsilon)
    else:  # ELU with alpha 1
        a = np.where(f > 0, f, np.expm1(np.minimum(f, 0)))
    columns = a / np.sqrt((a**2).sum(axis=0, keepdims=True) + epsilon)
    return columns / np.sqrt((columns**2).sum(axis=1, keepdims=True) + epsilon)


def numpy_cost(features: np.ndarray, activation: str, epsilon: float = EPSILON) -> float:
    return float(numpy_normalised(features, activation, epsilon).mean())


def random_features(seed: int, batch: int = 7, k: int = 9, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.5, size=(batch, k)).astype(dtype)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cost_agrees_with_numpy(activation: str, seed: int) -> None:
    features = random_features(seed, batch=5 + seed, k=9)
    cost = float(np.asarray(sparse_filtering_loss(features, activation, EPSILON)))
    assert cost == pytest.approx(numpy_cost(features, activation), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_cost_agrees_with_numpy_in_float64(activation: str) -> None:
    features = random_features(3, batch=10, k=4, dtype=np.float64)
    cost = float(np.asarray(sparse_filtering_loss(tf.constant(features), activation, EPSILON)))
    assert cost == pytest.approx(numpy_cost(features, activation), rel=1e-12)


def test_cost_is_the_mean_not_the_sum() -> None:
    # Constant features: every normalised entry is 1/sqrt(k), so the mean is 1/sqrt(k).
    features = np.full((5, 9), 2.0, np.float32)
    cost = float(np.asarray(sparse_filtering_loss(features)))
    assert cost == pytest.approx(1 / 3, rel=1e-5)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_row_has_unit_norm_after_normalisation(activation: str) -> None:
    features = random_features(4, batch=12, k=9)
    normalised = numpy_normalised(features, activation)
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0, atol=1e-6)
    # The cost is the mean of this very matrix (so the module normalises the same way).
    cost = float(np.asarray(sparse_filtering_loss(features, activation)))
    assert cost == pytest.approx(normalised.mean(), rel=1e-5, abs=1e-6)


def test_softabs_rows_have_l1_norm_between_one_and_sqrt_k() -> None:
    k = 9
    for seed in range(5):
        features = random_features(10 + seed, batch=8, k=k)
        if seed == 0:
            features[:, 1:] *= 1e-3  # nearly one-hot rows: L1 norm close to 1
        normalised = numpy_normalised(features, "softabs")
        assert (normalised > 0).all()
        l1 = np.abs(normalised).sum(axis=1)
        assert (l1 >= 1.0 - 1e-6).all() and (l1 <= np.sqrt(k) + 1e-6).all(), l1
        # k * cost is the mean L1 norm of a row, so the cost lies in [1/k, 1/sqrt(k)].
        cost = float(np.asarray(sparse_filtering_loss(features, "softabs")))
        assert 1 / k - 1e-6 <= cost <= 1 / np.sqrt(k) + 1e-6


def test_soft_absolute() -> None:
    x = np.array([-3.0, -1e-3, 0.0, 2.0], np.float64)
    np.testing.assert_allclose(np.asarray(soft_absolute(x, 1e-8)), np.sqrt(x**2 + 1e-8))
    assert float(np.asarray(soft_absolute(np.float64(0.0), 0.25))) == pytest.approx(0.5)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_matches_central_finite_differences(activation: str) -> None:
    features = random_features(5, batch=6, k=5, dtype=np.float64)
    variable = tf.Variable(features)
    with tf.GradientTape() as tape:
        cost = sparse_filtering_loss(variable, activation, EPSILON)
    analytic = tape.gradient(cost, variable).numpy()
    assert analytic.dtype == np.float64 and np.abs(analytic).max() > 1e-4

    step = 1e-6
    numeric = np.zeros_like(features)
    for index in np.ndindex(features.shape):
        shifted = features.copy()
        shifted[index] += step
        up = numpy_cost(shifted, activation)
        shifted[index] -= 2 * step
        down = numpy_cost(shifted, activation)
        numeric[index] = (up - down) / (2 * step)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_adam_on_a_linear_layer_lowers_the_cost(activation: str) -> None:
    rng = np.random.default_rng(7)
    inputs = tf.constant(rng.normal(size=(40, 16)).astype(np.float32))
    layer = keras.layers.Dense(
        9, use_bias=False, kernel_initializer=keras.initializers.RandomNormal(seed=1)
    )
    layer.build((None, 16))
    optimizer = keras.optimizers.Adam(0.01)
    variables = layer.trainable_variables

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            cost = sparse_filtering_loss(layer(inputs), activation, EPSILON)
        optimizer.apply(tape.gradient(cost, variables), variables)
        return cost

    before = float(sparse_filtering_loss(layer(inputs), activation, EPSILON))
    for _ in range(80):
        step()
    after = float(sparse_filtering_loss(layer(inputs), activation, EPSILON))
    assert np.isfinite(after)
    assert after < before - 0.01, (before, after)


@pytest.mark.parametrize("activation", ["relu", "abs", "", None, "ELU"])
def test_unknown_activation_is_a_value_error(activation) -> None:
    with pytest.raises(ValueError, match="activation"):
        sparse_filtering_loss(random_features(0), activation)
