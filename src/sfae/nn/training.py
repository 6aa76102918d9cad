"""Losses and the training loop of both phases (sparse pretraining, supervised finetuning)."""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from sfae.config import Config
from sfae.errors import SfaeError
from sfae.nn.epochs import EPOCH_RUNNERS
from sfae.nn.model import encoder_model, only_one
from sfae.nn.regularisers.base import Augment


def segmentation_loss(masks, probabilities):
    """Mean squared error + binary cross-entropy, equal weight, as in the paper."""
    squared = ops.mean(ops.square(probabilities - masks))
    return squared + ops.mean(keras.losses.binary_crossentropy(masks, probabilities))


def weight_penalty(model: keras.Model):
    penalties = model.losses
    return ops.sum(ops.stack(penalties)) if penalties else ops.zeros(())


def configure_determinism(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        # Intra-op threads only add synchronisation to this net's small ops (~20% per step on
        # 2 cores); a runtime already started (a test session) keeps its threads.
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(1)


def shard_slices(count, shards: int) -> list[tuple]:
    bounds = [(count * shard) // shards for shard in range(shards + 1)]
    return list(zip(bounds, bounds[1:], strict=False))


def run_in_shards(model, images, shards: int):
    """The model's outputs for each shard of the batch, and the slices. Examples are independent
    (no batch statistics): the same math, in passes TensorFlow's inter-op threads run at once."""
    slices = shard_slices(ops.shape(images)[0], shards)
    if shards == 1:
        return [model(images, training=True)], slices
    return [model(images[start:end], training=True) for start, end in slices], slices


def refuse_batch_statistics(model: keras.Model, shards: int) -> None:
    """SfaeError for shards > 1 on a net with BatchNormalization (shards would change its math)."""
    layers = list(model.layers)
    for layer in layers:  # the list grows by nested models' layers as it is walked
        layers += getattr(layer, "layers", [])
    found = [x.name for x in layers if isinstance(x, keras.layers.BatchNormalization)]
    if shards > 1 and found:
        raise SfaeError(
            f"train.shards {shards} would change the math of a network with batch statistics "
            f"({', '.join(found)}): set train.shards to 1"
        )


def mean_over_shards(values, slices):
    """The batch mean of a per-example mean computed shard by shard (weighted by size)."""
    if len(values) == 1:
        return values[0]
    total = sum(
        ops.cast(end - start, "float32") * value
        for value, (start, end) in zip(values, slices, strict=True)
    )
    return total / ops.cast(slices[-1][1], "float32")


def finetune_terms(config: Config) -> Callable:
    """The supervised phase's terms ("loss" is minimised): a segmentation loss per shard; the
    regularisers' terms (sparse filtering) couple the batch, so they see all its features."""
    extra = [term for unit in config.variant.regularisers if (term := unit.loss_term())]

    def terms(model, images, masks, shards=1, unlabeled=None):
        outputs, slices = run_in_shards(model, images, shards)
        losses = [
            segmentation_loss(masks[start:end], probabilities)
            for (probabilities, _), (start, end) in zip(outputs, slices, strict=True)
        ]
        segmentation = mean_over_shards(losses, slices)
        penalty = weight_penalty(model)
        result = {"segmentation": segmentation, "penalty": penalty}
        total = segmentation + penalty
        if extra:
            features = ops.concatenate([features for _, features in outputs], axis=0)
        if extra and unlabeled is not None:  # frames without masks: their features only
            features = ops.concatenate([features, model(unlabeled, training=True)[1]], axis=0)
        for name, weight, cost in extra:
            result[name] = cost(features)
            total = total + weight * result[name]
        result["loss"] = total
        return result

    return terms


def pretraining(config: Config):
    """The variant's regulariser that pretrains the encoder first (sparse), or None."""
    return next((unit for unit in config.variant.regularisers if unit.pretrain_share()), None)


def pretrain_terms(config: Config) -> Callable:
    """Pretraining: only the pretraining regulariser's cost of the bottleneck, no labels."""
    name, _, cost = pretraining(config).loss_term()

    def terms(model, images, masks, shards=1):
        value = cost(ops.concatenate(run_in_shards(model, images, shards)[0], axis=0))
        return {"loss": value, name: value}

    return terms


@dataclass
class EpochLog:
    epoch: int
    terms: dict[str, float]


def fit(
    model: keras.Model,
    terms: Callable,
    images: np.ndarray,
    masks: np.ndarray,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    on_epoch_end: Callable[[EpochLog], None] | None = None,
    shuffle: bool = True,
    shards: int = 1,
    augment: Augment | None = None,
    per_epoch: int | None = None,
    unlabeled: np.ndarray | None = None,
) -> list[EpochLog]:
    """Adam on minibatches of a shuffled in-memory set: the per-epoch mean terms. `shards` (TF):
    the same math, other rounding, which many epochs grow into another trajectory (a tracked
    parameter, not the core count); `per_epoch`: how many of `images` an epoch draws."""
    backend = keras.backend.backend()
    if backend not in EPOCH_RUNNERS:
        raise SfaeError(
            f"the training loop runs on the TensorFlow or JAX backend, not {backend!r} "
            "(set KERAS_BACKEND)"
        )
    refuse_batch_statistics(model, shards)
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(seed)
    names = sorted(terms(model, images[:1], masks[:1]))
    if (unlabeled is not None or per_epoch is not None) and backend != "tensorflow":
        raise SfaeError("unlabeled frames train on the TensorFlow backend only")
    count = per_epoch or len(images)
    run_epoch = EPOCH_RUNNERS[backend](
        model, optimizer, terms, names, images, masks, count, batch_size, shards, augment, unlabeled
    )
    # Their own stream, so that the labelled images' order is as it would be without them.
    frames_rng = np.random.default_rng([seed, 3])
    history = []
    for epoch in range(epochs):
        order = (rng.permutation(len(images)) if shuffle else np.arange(len(images)))[:count]
        order = order.astype(np.int32)
        data = augment(images, masks) if augment else None
        frames = None
        if unlabeled is not None:
            frames = frames_rng.permutation(len(unlabeled)).astype(np.int32)[: len(order)]
        values = np.asarray(run_epoch(order, data, frames))
        log = EpochLog(epoch, dict(zip(names, values.tolist(), strict=True)))
        if not np.all(np.isfinite(values)):
            raise SfaeError(
                f"training diverged at epoch {epoch + 1}: loss terms {log.terms}; "
                "try a lower learning rate in params.yaml"
            )
        history.append(log)
        if on_epoch_end:
            on_epoch_end(log)
    return history


def pretrain(model: keras.Model, config: Config, images, on_epoch_end=None, unlabeled=None):
    """Phase 1 of sparse variants: the sparse cost alone moves encoder and bottleneck; with
    unlabeled frames, each epoch draws as many as there are images from both together."""
    unit, epochs = pretraining(config), config.pretrain_epochs()
    if unit is None or epochs == 0:
        return []
    count = len(images)
    if unlabeled is not None and len(unlabeled):
        images = np.concatenate([images, unlabeled])
    return fit(
        encoder_model(model),
        pretrain_terms(config),
        images,
        np.zeros((len(images), 1), np.float32),  # no masks
        epochs,
        unit.pretrain_learning_rate,
        config.train.batch_size,
        seed=config.seed,
        on_epoch_end=on_epoch_end,
        shards=config.train.shards,
        per_epoch=count if len(images) > count else None,
    )


def augmentation(config: Config) -> Augment | None:
    """The variant's augmentation of the training set, drawn afresh each epoch, or None."""
    return only_one(config, "augmentation", "augment the data", config.seed)


def finetune(model, config: Config, images, masks, on_epoch_end=None, unlabeled=None):
    """Phase 2 (the only phase of pure/L1/L2): a fresh Adam on the supervised loss; with
    unlabeled frames, the regularisers' costs see a batch of them beside each labelled one."""
    return fit(
        model,
        finetune_terms(config),
        images,
        masks,
        config.finetune_epochs(),
        config.train.learning_rate,
        config.train.batch_size,
        seed=config.seed + 1,  # a different shuffle stream than the pretraining phase
        on_epoch_end=on_epoch_end,
        shards=config.train.shards,
        augment=augmentation(config),
        unlabeled=unlabeled if unlabeled is not None and len(unlabeled) else None,
    )
