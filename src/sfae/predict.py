"""The one prediction path: load a trained model, turn images into foreground probabilities.

Evaluation, the Mall videos, the finetune log and `sfae predict` all go through here.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

import sfae.model  # noqa: F401  (registers the custom layers for loading)
from sfae.errors import SfaeError


def load_trained(path: Path) -> keras.Model:
    try:
        return keras.models.load_model(path)
    except (OSError, ValueError) as error:
        raise SfaeError(f"{path}: cannot load the trained model ({error})") from error


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 100):
    """Foreground probabilities (n, h, w) of the model for a stack of images."""
    chunks = [
        np.asarray(model.predict_on_batch(images[start : start + batch_size])[0])[..., 0]
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(chunks)
