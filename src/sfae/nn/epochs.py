"""One epoch of minibatch training on each backend, as training.fit runs it."""

import math

import keras


def _tensorflow_epoch(
    model, optimizer, terms, names, images, masks, count, batch_size, shards, augment, unlabeled
):
    """One tf.function per epoch (per-step overhead dominates this tiny net), each batch in
    `shards` parallel shards; with `unlabeled`, the frames that `frame_order` picks per step."""
    import tensorflow as tf

    # Augmented data changes every epoch: variables, assigned each epoch, keep one trace.
    # Fixed data stays constants, so the graph of every other variant is as it was.
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
    """The same on JAX: a jitted stateless step (no shards: XLA schedules it itself)."""
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
