"""A regulariser: a pydantic model of its settings overriding the hooks it needs (no-ops here);
Keras is imported inside the hooks only, so that the params check imports no TensorFlow."""

from collections.abc import Callable
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

# (images, masks) -> a freshly drawn augmented copy of both
Augment = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class Regulariser(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]  # its field in a variant's config: `config.variant.<name>`
    # True: its settings are the mapping `variants.<variant>.<name>`; False: its fields are
    # keys of the variant itself (`regularizer`, `dropout`, as the post's params.yaml has them).
    section: ClassVar[bool] = True
    strength: ClassVar[str | None] = None  # the field a sweep varies, if any

    def strength_key(self) -> str | None:
        """The strength's dotted key within the variant (None: no strength)."""
        return f"{self.name}.{self.strength}" if self.strength and self.section else self.strength

    def pretrain_share(self) -> tuple[int, int] | None:
        """(pretraining, finetuning) epochs to pretrain on its cost (Config.pretrain_epochs)."""

    def kernel_regularizer(self):
        """A Keras regulariser for every convolution kernel, or None."""

    def hidden_layer(self, x, name: str, seeds):
        """x after the hidden convolution `name`; seeds: the model's stream for such layers."""
        return x

    def loss_term(self) -> tuple[str, float, Callable] | None:
        """(name, weight, cost(features)) added to the supervised loss, or None."""

    def augmentation(self, seed: int) -> Augment | None:
        """A fresh augmented copy of the training set for each epoch, or None."""
