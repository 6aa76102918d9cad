"""The loops bench/train_speed.py times: the project's training loop, and a plain and a tuned
`model.fit` of the same math (the tests check that all three give the same losses)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np

from sfae.config import Config
from sfae.nn.model import build_model
from sfae.nn.training import finetune_terms, fit, segmentation_loss


class FitRun(NamedTuple):
    """What a benchmarked loop returns: per-epoch losses, time stamps, the trained model.

    stamps[0] is the start, stamps[i] the end of epoch i (see seconds_per_epoch).
    """

    losses: list[float]
    stamps: list[float]
    model: keras.Model


def compile_plain(model: keras.Model, config: Config, steps_per_execution: int = 1) -> None:
    """The same loss as finetune_terms, the way a plain Keras user writes it (the weight
    penalty is Keras' own; at most one regulariser's term of the features, sparse filtering)."""
    losses = [segmentation_loss, None]
    weights = [1.0, 0.0]
    for _, weight, cost in [t for unit in config.variant.regularisers if (t := unit.loss_term())]:
        losses[1] = lambda _, features, cost=cost: cost(features)
        weights[1] = weight
    model.compile(
        optimizer=keras.optimizers.Adam(config.train.learning_rate),
        loss=losses,
        loss_weights=weights,
        steps_per_execution=steps_per_execution,
    )


def plain_fit(
    config: Config,
    images,
    masks,
    epochs: int,
    shuffle: bool = True,
    steps_per_execution: int = 1,
) -> FitRun:
    """Per-epoch losses and seconds of `model.fit` (Keras' defaults unless told otherwise)."""
    model = build_model(config)
    compile_plain(model, config, steps_per_execution)
    dummy = np.zeros((len(images), model.outputs[1].shape[-1]), np.float32)
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
    return FitRun(history.history["loss"], [started, *times], model)


def steps_per_epoch(config: Config, count: int) -> int:
    """Minibatches in one epoch of `count` examples (the last one may be smaller)."""
    return math.ceil(count / config.train.batch_size)


def tuned_fit(config: Config, images, masks, epochs: int, shuffle: bool = True) -> FitRun:
    """`model.fit` tuned: one compiled call per epoch (steps_per_execution = steps per epoch).

    The thread settings are the process's: whoever times it applies the project loop's
    (sfae.nn.training.configure_determinism) before TensorFlow's runtime starts.
    """
    steps = steps_per_epoch(config, len(images))
    return plain_fit(config, images, masks, epochs, shuffle, steps_per_execution=steps)


def project_fit(config: Config, images, masks, epochs: int, shuffle: bool = True) -> FitRun:
    """Per-epoch losses and seconds of the project's training loop (sfae.nn.training.fit)."""
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
    return FitRun([entry.terms["loss"] for entry in history], [started, *times], model)


# The timed loops, by the name the benchmark prints: Keras' defaults, tuned, the project's.
LOOPS: dict[str, Callable[..., FitRun]] = {
    "plain": plain_fit,
    "tuned": tuned_fit,
    "project": project_fit,
}


def seconds_per_epoch(stamps: list[float]) -> float:
    """Steady-state seconds per epoch from the end times of epochs (stamps[0]: the start).

    The first epoch (tracing, compiling) is left out; the median of the others keeps a
    pause of a shared machine from counting against whichever loop it happened to hit.
    """
    durations = np.diff(stamps)
    return float(np.median(durations[1:] if len(durations) > 1 else durations))
