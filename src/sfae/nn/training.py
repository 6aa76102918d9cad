"""Losses, one epoch on each backend, and the loop of both phases (pretraining, finetuning)."""

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from sfae.config import Config
from sfae.errors import SfaeError
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
        # Intra-op threads only slow this net's small ops (~20%); a started runtime keeps its own.
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(1)


def shard_slices(count, shards: int) -> list[tuple]:
    bounds = [(count * shard) // shards for shard in range(shards + 1)]
    return list(zip(bounds, bounds[1:], strict=False))


def run_in_shards(model, images, shards: int):
    """The outputs of each shard of the batch, and the slices: the same math (no batch
    statistics), in passes TensorFlow's inter-op threads run at once."""
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
    """The batch mean of per-shard means."""
    if len(values) == 1:
        return values[0]
    total = sum(
        ops.cast(end - start, "float32") * value
        for value, (start, end) in zip(values, slices, strict=True)
    )
    return total / ops.cast(slices[-1][1], "float32")


def finetune_terms(config: Config) -> Callable:
    """The supervised terms ("loss" is minimised); the regularisers' (sparse filtering) couple
    the batch, so they see all its features."""
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
    return next((unit for unit in config.variant.regularisers if unit.pretrain_share()), None)


def pretrain_terms(config: Config) -> Callable:
    name, _, cost = pretraining(config).loss_term()

    def terms(model, images, masks, shards=1):
        value = cost(ops.concatenate(run_in_shards(model, images, shards)[0], axis=0))
        return {"loss": value, name: value}

    return terms


def _tensorflow_epoch(
    model, optimizer, terms, names, images, masks, count, batch_size, shards, augment, unlabeled
):
    """One tf.function per epoch (per-step overhead dominates this tiny net)."""
    import tensorflow as tf

    # Augmented data: variables, assigned each epoch, keep one trace; fixed data: constants.
    holder = tf.Variable if augment else tf.constant
    images, masks = holder(images), holder(masks)
    frames = None if unlabeled is None else tf.constant(unlabeled)
    steps = math.ceil(count / batch_size)
    variables = model.trainable_variables
    # No shard may be empty: not more shards than examples in the smallest (last) batch.
    shards = min(shards, batch_size, count - (steps - 1) * batch_size)

    @tf.function
    def run_epoch(order, frame_order):
        sums = tf.zeros([len(names)])
        for step in tf.range(steps):
            window = slice(step * batch_size, tf.minimum((step + 1) * batch_size, count))
            index = order[window]
            extra = {} if frames is None else {"unlabeled": tf.gather(frames, frame_order[window])}
            with tf.GradientTape() as tape:
                batch = (tf.gather(images, index), tf.gather(masks, index))
                values = terms(model, *batch, shards, **extra)
            optimizer.apply(tape.gradient(values["loss"], variables), variables)
            weight = tf.cast(tf.shape(index)[0], tf.float32)
            sums += tf.stack([values[name] for name in names]) * weight
        return sums / count

    def run(order, data=None, frame_order=None):
        if data is not None:
            images.assign(data[0])
            masks.assign(data[1])
        return run_epoch(order, frame_order)

    return run


def _jax_epoch(model, optimizer, terms, names, images, masks, count, batch_size, *_):
    """A jitted stateless step (no shards: XLA schedules it itself)."""
    import jax
    import jax.numpy as jnp

    images, masks = jnp.asarray(images), jnp.asarray(masks)
    trainable, fixed = model.trainable_variables, model.non_trainable_variables

    def loss(weights, fixed_values, x, y):  # x, y: a batch of images and masks
        mapping = list(zip([*trainable, *fixed], [*weights, *fixed_values], strict=True))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            values = terms(model, x, y)
        fixed_after = [scope.get_current_value(variable) for variable in fixed]
        return values["loss"], (values, fixed_after)

    gradient = jax.value_and_grad(loss, has_aux=True)
    groups = (trainable, optimizer.variables, fixed)  # the state a step takes and returns

    @jax.jit
    def step(state, x, y):
        weights, optimizer_values, fixed_values = state
        (_, (values, fixed_values)), grads = gradient(weights, fixed_values, x, y)
        weights, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, weights)
        return [weights, optimizer_values, fixed_values], jnp.stack([values[n] for n in names])

    def run_epoch(order, data=None, _frames=None):
        epoch_images, epoch_masks = (images, masks) if data is None else map(jnp.asarray, data)
        state = [[variable.value for variable in group] for group in groups]
        sums = jnp.zeros(len(names))
        for start in range(0, count, batch_size):
            index = order[start : start + batch_size]
            state, values = step(state, epoch_images[index], epoch_masks[index])
            sums = sums + values * len(index)
        # Back into the variables, so callbacks (IoU logging, saving) see this epoch's model.
        for group, values in zip(groups, state, strict=True):
            for variable, value in zip(group, values, strict=True):
                variable.assign(value)
        return sums / count

    return run_epoch


EPOCH_RUNNERS = {"tensorflow": _tensorflow_epoch, "jax": _jax_epoch}


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
    """Phase 1 of sparse variants; with unlabeled frames, each epoch draws as many as there are
    images from both together."""
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
    return only_one(config, "augmentation", "augment the data", config.seed)


def finetune(model, config: Config, images, masks, on_epoch_end=None, unlabeled=None):
    """Phase 2 (the only one of pure/L1/L2); the regularisers' costs see a batch of unlabeled
    frames beside each labelled one."""
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
