"""Losses and the training loop of both phases (sparse pretraining, supervised finetuning)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from sfae.config import Config
from sfae.errors import SfaeError
from sfae.nn.augment import Augment, augmenter
from sfae.nn.model import encoder_model
from sfae.nn.sparse_filtering import sparse_filtering_loss


def segmentation_loss(masks, probabilities):
    """Mean squared error + binary cross-entropy, equal weight, as in the paper."""
    return ops.mean(ops.square(probabilities - masks)) + ops.mean(
        keras.losses.binary_crossentropy(masks, probabilities)
    )


def weight_penalty(model: keras.Model):
    """The L1/L2 kernel penalty of the model (0 when it has none)."""
    penalties = model.losses
    return ops.sum(ops.stack(penalties)) if penalties else ops.zeros(())


def configure_determinism(seed: int) -> None:
    """Seed every generator and ask the backend for deterministic kernels."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        # This network's ops are too small to gain from intra-op threads; they only add
        # synchronisation (measured ~20% per step on 2 cores). A runtime that already
        # started (e.g. in a test session) keeps its threads: hence the suppress.
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(1)


LossTerms = Callable[..., dict]


def shard_slices(count, shards: int) -> list[tuple]:
    """Contiguous (start, end) slices that split a batch of `count` into `shards` parts."""
    bounds = [(count * shard) // shards for shard in range(shards + 1)]
    return list(zip(bounds, bounds[1:], strict=False))


def run_in_shards(model, images, shards: int):
    """The model's outputs for each shard of the batch, and each shard's slice.

    The network treats examples independently (no batch statistics), so shards change
    nothing in the math. They change the graph: each shard is an independent forward and
    backward pass, which TensorFlow's inter-op threads run on separate cores.
    """
    slices = shard_slices(ops.shape(images)[0], shards)
    if shards == 1:
        return [model(images, training=True)], slices
    outputs = [model(images[start:end], training=True) for start, end in slices]
    return outputs, slices


def refuse_batch_statistics(model: keras.Model, shards: int) -> None:
    """Raise SfaeError for shards > 1 on a network with batch statistics (BatchNormalization).

    Such a network's output for one example depends on the others of its batch: shards
    would then normalise over a part of the batch each, other math rather than other
    rounding. (The U-Net's GroupNormalization works on each example alone.)
    """
    if shards <= 1:
        return
    pending, batch_normalised = list(model.layers), []
    while pending:
        layer = pending.pop(0)
        pending.extend(getattr(layer, "layers", []))  # nested models
        if isinstance(layer, keras.layers.BatchNormalization):
            batch_normalised.append(layer.name)
    if batch_normalised:
        raise SfaeError(
            f"train.shards {shards} would change the math of a network with batch statistics "
            f"({', '.join(batch_normalised)}): set train.shards to 1"
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


def finetune_terms(config: Config) -> LossTerms:
    """Loss terms of the supervised phase; "loss" is what the optimiser minimises.

    The segmentation loss is a mean over examples, so each shard computes its own and
    its backward pass needs nothing from the other shards; sparse filtering couples the
    batch, so it sees the joined bottleneck features.
    """
    sparse = config.variant.sparse

    def terms(model, images, masks, shards=1):
        outputs, slices = run_in_shards(model, images, shards)
        segmentation = mean_over_shards(
            [
                segmentation_loss(masks[start:end], probabilities)
                for (probabilities, _), (start, end) in zip(outputs, slices, strict=True)
            ],
            slices,
        )
        penalty = weight_penalty(model)
        result = {"segmentation": segmentation, "penalty": penalty}
        total = segmentation + penalty
        if sparse:
            features = ops.concatenate([features for _, features in outputs], axis=0)
            result["sparse"] = sparse_filtering_loss(features, sparse.activation, sparse.epsilon)
            total = total + sparse.weight * result["sparse"]
        result["loss"] = total
        return result

    return terms


def pretrain_terms(config: Config) -> LossTerms:
    """Sparse pretraining: only the sparse-filtering cost of the bottleneck, no labels."""
    sparse = config.variant.sparse

    def terms(model, images, masks, shards=1):
        outputs, _ = run_in_shards(model, images, shards)
        features = ops.concatenate(outputs, axis=0)
        cost = sparse_filtering_loss(features, sparse.activation, sparse.epsilon)
        return {"loss": cost, "sparse": cost}

    return terms


@dataclass
class EpochLog:
    epoch: int
    terms: dict[str, float]


def shuffled_order(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.permutation(count).astype(np.int32)


def _tensorflow_epoch(model, optimizer, terms, names, images, masks, batch_size, shards, augmented):
    """One compiled function that runs a whole epoch (all minibatches) on the TF backend.

    One call per epoch instead of one per step removes the per-step Python and
    input-pipeline overhead that dominates this tiny network; each batch is split in
    `shards` parallel shards (see run_in_shards), so that more than one core works.
    """
    import tensorflow as tf

    # Augmented data changes every epoch: variables, assigned each epoch, keep one trace.
    # Fixed data stays constants, so the graph of every other variant is as it was.
    holder = tf.Variable if augmented else tf.constant
    images, masks = holder(images), holder(masks)
    count = int(images.shape[0])
    steps = math.ceil(count / batch_size)
    variables = model.trainable_variables
    # No shard may be empty: not more shards than examples in the smallest (last) batch.
    shards = min(shards, batch_size, count - (steps - 1) * batch_size)

    @tf.function
    def run_epoch(order):
        sums = tf.zeros([len(names)])
        for step in tf.range(steps):
            index = order[step * batch_size : tf.minimum((step + 1) * batch_size, count)]
            with tf.GradientTape() as tape:
                values = terms(model, tf.gather(images, index), tf.gather(masks, index), shards)
            optimizer.apply(tape.gradient(values["loss"], variables), variables)
            weight = tf.cast(tf.shape(index)[0], tf.float32)
            sums += tf.stack([values[name] for name in names]) * weight
        return sums / count

    def run(order, data=None):
        if data is not None:
            images.assign(data[0])
            masks.assign(data[1])
        return run_epoch(order)

    return run


def _jax_epoch(model, optimizer, terms, names, images, masks, batch_size, shards, augmented):
    """The same epoch on the JAX backend: one jitted step through Keras' stateless API.

    XLA compiles the whole step and schedules it itself: no shards (the argument is unused).
    Non-trainable state (dropout's seed generators) is carried from step to step.
    """
    import jax
    import jax.numpy as jnp

    images, masks = jnp.asarray(images), jnp.asarray(masks)
    count = int(images.shape[0])
    trainable, fixed = model.trainable_variables, model.non_trainable_variables

    def loss(trainable_values, fixed_values, batch_images, batch_masks):
        mapping = [
            *zip(trainable, trainable_values, strict=True),
            *zip(fixed, fixed_values, strict=True),
        ]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            values = terms(model, batch_images, batch_masks)
        fixed_after = [scope.get_current_value(variable) for variable in fixed]
        return values["loss"], (values, fixed_after)

    gradient = jax.value_and_grad(loss, has_aux=True)

    @jax.jit
    def step(trainable_values, optimizer_values, fixed_values, batch_images, batch_masks):
        (_, (values, fixed_values)), grads = gradient(
            trainable_values, fixed_values, batch_images, batch_masks
        )
        trainable_values, optimizer_values = optimizer.stateless_apply(
            optimizer_values, grads, trainable_values
        )
        stacked = jnp.stack([values[name] for name in names])
        return trainable_values, optimizer_values, fixed_values, stacked

    def run_epoch(order, data=None):
        epoch_images, epoch_masks = (
            (images, masks) if data is None else (jnp.asarray(data[0]), jnp.asarray(data[1]))
        )
        trainable_values = [variable.value for variable in trainable]
        optimizer_values = [variable.value for variable in optimizer.variables]
        fixed_values = [variable.value for variable in fixed]
        sums = jnp.zeros(len(names))
        for start in range(0, count, batch_size):
            index = order[start : start + batch_size]
            trainable_values, optimizer_values, fixed_values, values = step(
                trainable_values,
                optimizer_values,
                fixed_values,
                epoch_images[index],
                epoch_masks[index],
            )
            sums = sums + values * len(index)
        # Back into the variables, so callbacks (IoU logging, saving) see this epoch's model.
        for variable, value in zip(trainable, trainable_values, strict=True):
            variable.assign(value)
        for variable, value in zip(optimizer.variables, optimizer_values, strict=True):
            variable.assign(value)
        for variable, value in zip(fixed, fixed_values, strict=True):
            variable.assign(value)
        return sums / count

    return run_epoch


EPOCH_RUNNERS = {"tensorflow": _tensorflow_epoch, "jax": _jax_epoch}


def fit(
    model: keras.Model,
    terms: LossTerms,
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
) -> list[EpochLog]:
    """Adam on minibatches of a shuffled in-memory set; returns the per-epoch mean terms.

    `shards` splits each batch for parallel work on the TensorFlow backend: the same math
    with other rounding, which hundreds of epochs grow into another trajectory, as
    another seed would (hence a tracked parameter, not the machine's core count).

    `augment`, when given, draws a fresh augmented copy of the training set each epoch.

    Raises SfaeError as soon as a loss turns NaN or infinite.
    """
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
    run_epoch = EPOCH_RUNNERS[backend](
        model, optimizer, terms, names, images, masks, batch_size, shards, augment is not None
    )
    history = []
    for epoch in range(epochs):
        order = (
            shuffled_order(rng, len(images)) if shuffle else np.arange(len(images), dtype=np.int32)
        )
        data = augment(images, masks) if augment else None
        values = np.asarray(run_epoch(order, data))
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


def pretrain(model: keras.Model, config: Config, images: np.ndarray, on_epoch_end=None):
    """Phase 1 of sparse variants: the sparse cost alone moves encoder and bottleneck."""
    sparse = config.variant.sparse
    if not sparse or sparse.pretrain_epochs == 0:
        return []
    dummy_masks = np.zeros((len(images), 1), np.float32)
    return fit(
        encoder_model(model),
        pretrain_terms(config),
        images,
        dummy_masks,
        sparse.pretrain_epochs,
        sparse.pretrain_learning_rate,
        config.train.batch_size,
        seed=config.seed,
        on_epoch_end=on_epoch_end,
        shards=config.train.shards,
    )


def finetune(model, config: Config, images, masks, on_epoch_end=None):
    """Phase 2 (the only phase of pure/L1/L2): a fresh Adam on the supervised loss."""
    settings = config.variant.augment
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
        augment=augmenter(settings, config.seed) if settings else None,
    )
