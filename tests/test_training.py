"""Training: losses, weight penalties, both phases, determinism and divergence on tiny data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest

from sfae.config import Config, read_yaml
from sfae.errors import SfaeError
from sfae.inference import predict
from sfae.nn import training
from sfae.nn.model import build_model, encoder_model
from sfae.nn.regularisers.registry import load_config
from sfae.nn.sparse_filtering import sparse_filtering_loss

SIZE = 32
COUNT = 10  # two full batches of 5, as the paper batches
SCALE = 0.005  # regularizer_scale of l1 and l2 in params.yaml
DECODER_PREFIXES = ("decode_", "mask")
ENCODER_PREFIXES = ("encode_", "pool_", "bottleneck")
VARIANTS = tuple(
    read_yaml((Path(__file__).resolve().parent.parent / "params.yaml").read_text())["variants"]
)


def tiny_config(
    base: Config, variant: str, pretrain: int = 2, finetune: int = 2, seed: int | None = None
) -> Config:
    """The variant at 32x32; sparse variants pretrain and finetune the given epochs."""
    chosen = base.variants[variant]
    epochs = finetune
    if chosen.sparse:
        epochs = {"pretrain_epochs": pretrain, "finetune_epochs": finetune}
        chosen = chosen.model_copy(update={"sparse": chosen.sparse.model_copy(update=epochs)})
        epochs = pretrain + finetune
    return replace(
        base,
        variant=chosen,
        seed=base.seed if seed is None else seed,
        data=replace(base.data, image_size=SIZE),
        train=replace(base.train, epochs=epochs),
    )


def rectangles(count: int = COUNT, size: int = SIZE, seed: int = 0):
    """Dark noisy images with one bright rectangle each; the rectangle is the foreground."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.4, (count, size, size, 3)).astype(np.float32)
    masks = np.zeros((count, size, size, 1), np.float32)
    for index in range(count):
        height, width = rng.integers(size // 4, size * 5 // 8, 2)
        top, left = rng.integers(0, size - height), rng.integers(0, size - width)
        images[index, top : top + height, left : left + width] = rng.uniform(
            0.8, 1.0, (height, width, 3)
        )
        masks[index, top : top + height, left : left + width] = 1.0
    return images, masks


def weights_by_path(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.variables}


def is_conv(layer) -> bool:
    return isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose)


@pytest.fixture(scope="module")
def base(repo_root: Path) -> Config:
    return load_config(repo_root / "params.yaml")


@pytest.fixture(scope="module")
def data():
    return rectangles()


def train_variant(config: Config, images, masks):
    """What the two stages do, in one process: seed, build, pretrain (sparse), finetune."""
    training.configure_determinism(config.seed)
    model = build_model(config)
    pretrained = training.pretrain(model, config, images)
    finetuned = training.finetune(model, config, images, masks)
    return model, pretrained, finetuned


# --- losses ---------------------------------------------------------------------------------


def test_segmentation_loss_is_mse_plus_bce() -> None:
    rng = np.random.default_rng(0)
    masks = (rng.random((3, 4, 4, 1)) > 0.5).astype(np.float32)
    probabilities = rng.uniform(0.05, 0.95, (3, 4, 4, 1)).astype(np.float32)
    p, y = probabilities.astype(np.float64), masks.astype(np.float64)
    mse = np.mean((p - y) ** 2)
    bce = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    value = float(keras.ops.convert_to_numpy(training.segmentation_loss(masks, probabilities)))
    assert value == pytest.approx(mse + bce, rel=1e-5)


def test_segmentation_loss_of_known_values() -> None:
    masks = np.array([1.0, 0.0, 1.0, 0.0], np.float32).reshape(1, 2, 2, 1)
    probabilities = np.array([0.5, 0.5, 0.9, 0.2], np.float32).reshape(1, 2, 2, 1)
    mse = (0.25 + 0.25 + 0.01 + 0.04) / 4
    bce = -(np.log(0.5) + np.log(0.5) + np.log(0.9) + np.log(0.8)) / 4
    value = float(keras.ops.convert_to_numpy(training.segmentation_loss(masks, probabilities)))
    assert value == pytest.approx(mse + bce, rel=1e-5)
    perfect = training.segmentation_loss(masks, masks * 0.998 + 0.001)
    assert float(keras.ops.convert_to_numpy(perfect)) < 0.01


# --- weight penalties -----------------------------------------------------------------------


def set_known_weights(model: keras.Model, seed: int = 1) -> None:
    """Conv kernels: 0.1 everywhere except encode_1 (signed random); others large."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name == "encode_1":
            values = [rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.weights]
        elif is_conv(layer):
            values = [np.full(w.shape, 0.1, np.float32) for w in layer.weights]
        else:  # the dense bottleneck and the pool scalars: must not count
            values = [np.full(w.shape, 3.0, np.float32) for w in layer.weights]
        layer.set_weights(values)


def conv_kernels(model: keras.Model) -> list[np.ndarray]:
    kernels = [keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers if is_conv(layer)]
    assert len(kernels) == 13  # 4 encoder convs, 9 decoder (transposed) convs
    return kernels


@pytest.mark.parametrize("variant", ["l1", "l2"])
def test_penalty_covers_exactly_the_conv_kernels(base: Config, data, variant: str) -> None:
    model = build_model(tiny_config(base, variant))
    set_known_weights(model)
    kernels = [k.astype(np.float64) for k in conv_kernels(model)]
    if variant == "l1":
        expected = SCALE * sum(np.abs(k).sum() for k in kernels)
    else:  # tf.contrib's l2_regularizer: scale * sum(w^2) / 2
        expected = SCALE * sum((k**2).sum() for k in kernels) / 2
    penalty = float(keras.ops.convert_to_numpy(training.weight_penalty(model)))
    assert penalty == pytest.approx(expected, rel=1e-5)

    # The same value is the "penalty" term the finetune loss adds.
    images, masks = data
    terms = training.finetune_terms(tiny_config(base, variant))(model, images[:2], masks[:2])
    assert float(terms["penalty"]) == pytest.approx(expected, rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(float(terms["segmentation"]) + expected, rel=1e-5)

    # Neither the dense bottleneck nor the pool-mix scalars are penalised.
    for layer in model.layers:
        if layer.weights and not is_conv(layer):
            layer.set_weights([np.full(w.shape, -50.0, np.float32) for w in layer.weights])
    again = float(keras.ops.convert_to_numpy(training.weight_penalty(model)))
    assert again == pytest.approx(penalty, rel=1e-6)
    assert model.get_layer("bottleneck").kernel_regularizer is None


def test_penalty_of_uniform_kernels_counts_every_conv_weight(base: Config) -> None:
    # All 3909 conv/transposed-conv kernel weights (6505 at 96 px less the 2592 dense and
    # 4 pool weights; at 32 px only the dense layer shrinks) set to 0.1.
    for variant, expected in [("l1", SCALE * 0.1 * 3909), ("l2", SCALE * 0.01 * 3909 / 2)]:
        model = build_model(tiny_config(base, variant))
        for layer in model.layers:
            if layer.weights:
                layer.set_weights([np.full(w.shape, 0.1, np.float32) for w in layer.weights])
        penalty = float(keras.ops.convert_to_numpy(training.weight_penalty(model)))
        assert penalty == pytest.approx(expected, rel=1e-5), variant


@pytest.mark.parametrize("variant", ["pure", "sparse_softabs", "sparse_elu"])
def test_unregularised_variants_have_no_penalty(base: Config, variant: str) -> None:
    model = build_model(tiny_config(base, variant))
    set_known_weights(model)
    assert model.losses == []
    assert float(keras.ops.convert_to_numpy(training.weight_penalty(model))) == 0.0


# --- training -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_and_its_loss_falls(base: Config, data, variant: str) -> None:
    images, masks = data
    config = tiny_config(base, variant, pretrain=4, finetune=5)
    logged = []
    model, pretrained, finetuned = train_variant(config, images, masks)

    sparse = config.variant.sparse
    names = {"loss", "penalty", "segmentation"} | ({"sparse"} if sparse else set())
    assert [entry.epoch for entry in finetuned] == [0, 1, 2, 3, 4]
    for entry in finetuned:
        assert set(entry.terms) == names
        assert all(np.isfinite(value) for value in entry.terms.values())
        total = entry.terms["segmentation"] + entry.terms["penalty"]
        if sparse:
            total += sparse.weight * entry.terms["sparse"]
        assert entry.terms["loss"] == pytest.approx(total, rel=1e-4, abs=1e-6)
        logged.append(entry.terms["loss"])
    # With augmentation the sparse cost is read on new distortions each epoch, and over five
    # epochs it can rise while the segmentation falls: only the segmentation must fall then.
    if not (sparse and config.variant.augment):
        assert logged[-1] < logged[0], logged
    if variant != "l1":  # l1's fall is mostly its penalty shrinking
        assert finetuned[-1].terms["segmentation"] < finetuned[0].terms["segmentation"]

    if sparse:
        assert [entry.epoch for entry in pretrained] == [0, 1, 2, 3]
        assert all(set(entry.terms) == {"loss", "sparse"} for entry in pretrained)
        assert pretrained[-1].terms["sparse"] < pretrained[0].terms["sparse"]
    else:
        assert pretrained == []

    probabilities = predict.predict_probabilities(model, images, batch_size=3)
    assert probabilities.shape == (COUNT, SIZE, SIZE)
    assert ((probabilities > 0) & (probabilities < 1)).all()


def test_epoch_terms_are_means_over_the_whole_set(base: Config, data) -> None:
    # With a zero learning rate the model never changes, so the epoch mean of the
    # segmentation loss (batches of 4, 4 and 2, weighted by size) is the loss of all at once.
    images, masks = data
    config = tiny_config(base, "pure")
    training.configure_determinism(config.seed)
    model = build_model(config)
    before = weights_by_path(model)
    seen = []
    history = training.fit(
        model,
        training.finetune_terms(config),
        images,
        masks,
        epochs=2,
        learning_rate=0.0,
        batch_size=4,
        seed=0,
        on_epoch_end=seen.append,
    )
    assert seen == history and len(history) == 2
    probabilities, _ = model(images)
    whole = float(keras.ops.convert_to_numpy(training.segmentation_loss(masks, probabilities)))
    for entry in history:
        assert entry.terms["segmentation"] == pytest.approx(whole, rel=1e-5)
    after = weights_by_path(model)
    assert all(np.array_equal(before[path], after[path]) for path in before)


@pytest.mark.parametrize("count, shards", [(5, 2), (5, 3), (4, 4), (7, 2)])
def test_shard_slices_cover_the_batch_in_order(count: int, shards: int) -> None:
    slices = training.shard_slices(count, shards)
    assert len(slices) == shards
    assert [index for start, end in slices for index in range(start, end)] == list(range(count))
    assert all(end > start for start, end in slices)


def assert_shards_change_nothing(config: Config, images, masks) -> None:
    """Every loss term and gradient of 2 and 3 shards equals the whole batch's, both phases."""
    import tensorflow as tf

    model = build_model(config)
    phases = [(model, training.finetune_terms(config))]
    if config.variant.sparse:
        phases.append((encoder_model(model), training.pretrain_terms(config)))
    for network, terms in phases:
        results = []
        for shards in (1, 2, 3):
            with tf.GradientTape() as tape:
                values = terms(network, images[:5], masks[:5], shards)
            gradients = tape.gradient(values["loss"], network.trainable_variables)
            results.append((values, gradients))
        (whole, whole_gradients), *sharded = results
        for values, gradients in sharded:
            assert values.keys() == whole.keys()
            for name in whole:
                np.testing.assert_allclose(values[name], whole[name], rtol=1e-5, atol=1e-7)
            for ours, reference in zip(gradients, whole_gradients, strict=True):
                np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", ["pure", "l1", "sparse_elu", "sparse_softabs"])
def test_sharded_terms_and_gradients_equal_the_whole_batch(base: Config, data, variant) -> None:
    # Sharding only regroups the work: every term and every gradient is the whole batch's.
    assert_shards_change_nothing(tiny_config(base, variant), *data)


def test_no_batch_is_split_into_empty_shards(base: Config) -> None:
    # 11 images in batches of 5 leave a last batch of 1: with 4 shards asked for, each
    # shard must still hold an example (an empty one gives a NaN loss and "diverged").
    images, masks = rectangles(count=11)
    config = tiny_config(base, "sparse_elu", pretrain=1, finetune=1)
    config = replace(config, train=replace(config.train, shards=4))
    model = build_model(config)
    history = training.pretrain(model, config, images) + training.finetune(
        model, config, images, masks
    )
    assert len(history) == 2
    assert all(np.isfinite(list(entry.terms.values())).all() for entry in history)


def test_pretraining_moves_only_encoder_and_bottleneck(base: Config, data) -> None:
    images, _ = data
    for variant in ("sparse_softabs", "sparse_elu"):
        config = tiny_config(base, variant, pretrain=2)
        training.configure_determinism(config.seed)
        model = build_model(config)
        before = weights_by_path(model)
        history = training.pretrain(model, config, images)
        assert len(history) == 2
        after = weights_by_path(model)
        assert before.keys() == after.keys()
        layers = {path: path.split("/")[0] for path in before}
        decoder = [p for p, layer in layers.items() if layer.startswith(DECODER_PREFIXES)]
        encoder = [p for p, layer in layers.items() if layer.startswith(ENCODER_PREFIXES)]
        assert len(decoder) == 9 and len(encoder) == 9
        assert sorted(decoder + encoder) == sorted(before)
        for path in decoder:
            assert np.array_equal(before[path], after[path]), f"{variant}: {path} moved"
        for path in encoder:
            assert not np.array_equal(before[path], after[path]), f"{variant}: {path} stayed"


def test_pretrain_is_a_no_op_without_sparse_epochs(base: Config, data) -> None:
    images, _ = data
    config = tiny_config(base, "pure")
    model = build_model(config)
    before = weights_by_path(model)
    assert training.pretrain(model, config, images) == []
    sparse = tiny_config(base, "sparse_elu", pretrain=0, finetune=2)
    assert training.pretrain(build_model(sparse), sparse, images) == []
    after = weights_by_path(model)
    assert all(np.array_equal(before[path], after[path]) for path in before)


def test_finetuning_shuffles_with_another_stream_than_pretraining(
    base: Config, data, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both phases go through the real `fit`; only the epoch runner is replaced, by one that
    records each epoch's order. The same seed in both phases would repeat the pretraining's
    batches in the same order at the start of finetuning."""
    images, masks = data
    orders: list[np.ndarray] = []

    def recording_runner(model, optimizer, terms, names, *args, **kwargs):
        def run_epoch(order, data=None, frames=None):
            orders.append(np.asarray(order).copy())
            return np.zeros(len(names), np.float32)

        return run_epoch

    monkeypatch.setitem(training.EPOCH_RUNNERS, keras.backend.backend(), recording_runner)
    config = tiny_config(base, "sparse_elu", pretrain=3, finetune=3)
    model = build_model(config)

    def phases() -> tuple[list[np.ndarray], list[np.ndarray]]:
        orders.clear()
        assert len(training.pretrain(model, config, images)) == 3
        pretrained = list(orders)
        orders.clear()
        assert len(training.finetune(model, config, images, masks)) == 3
        return pretrained, list(orders)

    pretrained, finetuned = phases()
    for order in pretrained + finetuned:
        assert sorted(order.tolist()) == list(range(COUNT))  # a shuffle of the whole set
    assert len({tuple(order) for order in pretrained}) == 3  # a new order each epoch
    for before, after in zip(pretrained, finetuned, strict=True):
        assert not np.array_equal(before, after)
    # Each phase's stream is still fixed by the seed.
    again = phases()
    assert all(np.array_equal(a, b) for a, b in zip(pretrained, again[0], strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(finetuned, again[1], strict=True))


def test_one_seed_gives_bit_identical_weights(base: Config, data) -> None:
    """Every random stream in one variant: sparse_elu's pretraining and its shuffles, l1's
    penalty and dropout's masks (one variant each would cost three trainings each)."""
    images, masks = data
    config = tiny_config(base, "sparse_elu")
    units = {"penalty": base.variants["l1"].penalty, "dropout": base.variants["dropout"].dropout}
    config = replace(config, variant=config.variant.model_copy(update=units))
    assert [type(unit).__name__ for unit in config.variant.regularisers] == [
        "Penalty",
        "Dropout",
        "Sparse",
    ]
    runs = [train_variant(config, images, masks) for _ in range(2)]
    # Dropout's seed generators are named by a count over the whole process: not weights.
    first, second = (
        {path: value for path, value in weights_by_path(model).items() if "seed_gen" not in path}
        for model, _, _ in runs
    )
    assert first.keys() == second.keys()
    for path in first:
        assert np.array_equal(first[path], second[path]), path
    assert runs[0][2] == runs[1][2]  # the logged losses too

    other, _, _ = train_variant(replace(config, seed=config.seed + 1), images, masks)
    moved = weights_by_path(other)
    assert not all(np.array_equal(first[path], moved[path]) for path in first)


def test_a_nan_loss_raises_an_sfae_error_naming_the_epoch(base: Config, data) -> None:
    images, masks = data
    poisoned = images.copy()
    poisoned[3, 5, 5, 0] = np.nan
    config = tiny_config(base, "pure")
    with pytest.raises(SfaeError, match=r"epoch 1\b"):
        training.finetune(build_model(config), config, poisoned, masks)

    sparse = tiny_config(base, "sparse_softabs")
    with pytest.raises(SfaeError, match=r"epoch 1\b"):
        training.pretrain(build_model(sparse), sparse, poisoned)


def test_a_later_divergence_names_its_epoch(base: Config, data) -> None:
    # Finite for the first epoch, then the callback poisons the output layer: epoch 2 fails.
    images, masks = data
    config = tiny_config(base, "pure")
    model = build_model(config)
    state = {"calls": 0}

    def poison(entry):
        state["calls"] += 1
        model.get_layer("mask").kernel.assign(
            np.full(model.get_layer("mask").kernel.shape, np.nan, np.float32)
        )

    with pytest.raises(SfaeError, match=r"epoch 2\b") as raised:
        training.fit(
            model,
            training.finetune_terms(config),
            images,
            masks,
            epochs=3,
            learning_rate=0.005,
            batch_size=5,
            seed=0,
            on_epoch_end=poison,
        )
    assert state["calls"] == 1
    assert "params.yaml" in str(raised.value)


# --- unlabeled frames ------------------------------------------------------------------------


def spy_on_epochs(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The example order of every epoch the TensorFlow loop runs."""
    seen, real = [], training.EPOCH_RUNNERS["tensorflow"]

    def runner(*args, **kwargs):
        run = real(*args, **kwargs)

        def epoch(order, *rest):
            seen.append(np.asarray(order).copy())
            return run(order, *rest)

        return epoch

    monkeypatch.setitem(training.EPOCH_RUNNERS, "tensorflow", runner)
    return seen


def test_pretraining_draws_from_images_and_frames_in_as_many_steps(base, data, monkeypatch):
    images, _ = data
    frames, _ = rectangles(4 * COUNT, seed=9)
    config = tiny_config(base, "sparse_softabs", pretrain=3)
    seen = spy_on_epochs(monkeypatch)
    training.configure_determinism(config.seed)
    history = training.pretrain(build_model(config), config, images, unlabeled=frames)
    assert len(history) == 3 and [len(order) for order in seen] == [COUNT] * 3
    drawn = np.concatenate(seen)
    assert (drawn >= COUNT).any() and (drawn < COUNT).any()  # frames and images both
    assert len({tuple(order) for order in seen}) == 3  # drawn afresh each epoch
    seen.clear()
    training.configure_determinism(config.seed)
    alone = training.pretrain(build_model(config), config, images)
    assert [sorted(order) for order in seen] == [list(range(COUNT))] * 3
    assert alone[-1].terms != history[-1].terms


def test_frames_enter_the_sparse_cost_and_nothing_else(base, data) -> None:
    images, masks = data
    frames, _ = rectangles(5, seed=9)
    config = tiny_config(base, "sparse_softabs")
    training.configure_determinism(config.seed)
    model = build_model(config)
    terms = training.finetune_terms(config)
    plain = terms(model, images[:5], masks[:5])
    seen = terms(model, images[:5], masks[:5], unlabeled=frames)
    assert float(seen["segmentation"]) == float(plain["segmentation"])
    assert float(seen["penalty"]) == float(plain["penalty"])
    features = np.concatenate(
        [model(images[:5], training=True)[1], model(frames, training=True)[1]]
    )
    sparse = config.variant.sparse
    expected = sparse_filtering_loss(features, sparse.activation, sparse.epsilon)
    assert np.isclose(float(seen["sparse"]), float(expected), rtol=1e-6)
    assert float(seen["sparse"]) != float(plain["sparse"])
    # A variant without a cost of the features has nothing to show them.
    pure = tiny_config(base, "pure")
    pure_terms = training.finetune_terms(pure)
    pure_model = build_model(pure)
    with_frames = pure_terms(pure_model, images[:5], masks[:5], unlabeled=frames)
    assert float(with_frames["loss"]) == float(
        pure_terms(pure_model, images[:5], masks[:5])["loss"]
    )


def test_finetuning_takes_a_fresh_batch_of_frames_beside_each_labelled_one(
    base, data, monkeypatch
) -> None:
    images, masks = data
    frames, _ = rectangles(3 * COUNT, seed=9)
    config = tiny_config(base, "sparse_softabs", finetune=2)
    training.configure_determinism(config.seed)
    history = training.finetune(build_model(config), config, images, masks, unlabeled=frames)
    assert len(history) == 2 and all(np.isfinite(e.terms["sparse"]) for e in history)
    # Without frames the loop is the one every committed run used: the same floats.
    runs = []
    for _ in range(2):
        training.configure_determinism(config.seed)
        runs.append(training.finetune(build_model(config), config, images, masks)[-1].terms)
    assert runs[0] == runs[1] != history[-1].terms
