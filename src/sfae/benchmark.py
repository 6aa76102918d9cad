"""Training speed: the project's training loop against a plain `model.fit` of the same math."""

from __future__ import annotations

import time

import keras
import numpy as np

from sfae.model import build_model
from sfae.params import Config
from sfae.sparse_filtering import sparse_filtering_loss
from sfae.training import finetune_terms, fit, segmentation_loss


def compile_plain(model: keras.Model, config: Config) -> None:
    """The same loss as finetune_terms, the way a plain Keras user writes it."""
    sparse = config.variant.sparse
    losses = [segmentation_loss, None]
    weights = [1.0, 0.0]
    if sparse:
        losses[1] = lambda _, features: sparse_filtering_loss(
            features, sparse.activation, sparse.epsilon
        )
        weights[1] = sparse.weight
    model.compile(
        optimizer=keras.optimizers.Adam(config.train.learning_rate),
        loss=losses,
        loss_weights=weights,
    )


def plain_fit(config: Config, images, masks, epochs: int, shuffle: bool = True):
    """Per-epoch losses and seconds of `model.fit` with Keras' defaults."""
    model = build_model(config)
    compile_plain(model, config)
    dummy = np.zeros((len(images), 9), np.float32)
    times = []
    callback = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda *_: times.append(time.perf_counter())
    )
    started = time.perf_counter()
    history = model.fit(
        images,
        [masks, dummy],
        batch_size=config.train.batch_size,
        epochs=epochs,
        shuffle=shuffle,
        verbose=0,
        callbacks=[callback],
    )
    return history.history["loss"], [started, *times], model


def project_fit(config: Config, images, masks, epochs: int, shuffle: bool = True):
    """Per-epoch losses and seconds of the project's training loop (sfae.training.fit)."""
    model = build_model(config)
    times = []
    started = time.perf_counter()
    history = fit(
        model,
        finetune_terms(config),
        images,
        masks,
        epochs,
        config.train.learning_rate,
        config.train.batch_size,
        seed=config.seed,
        on_epoch_end=lambda _: times.append(time.perf_counter()),
        shuffle=shuffle,
        shards=config.train.shards,
    )
    return [entry.terms["loss"] for entry in history], [started, *times], model


def seconds_per_epoch(stamps: list[float]) -> float:
    """Steady-state seconds per epoch from the end times of epochs (stamps[0]: the start).

    The first epoch (tracing, compiling) is left out; the median of the others keeps a
    pause of a shared machine from counting against whichever loop it happened to hit.
    """
    durations = np.diff(stamps)
    return float(np.median(durations[1:] if len(durations) > 1 else durations))
