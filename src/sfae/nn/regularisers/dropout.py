"""Spatial dropout after every hidden convolution: `dropout` (the rate)."""

from typing import Annotated

from sfae.config import Number, between
from sfae.nn.regularisers.base import Regulariser


class Dropout(Regulariser):
    name, section, strength = "dropout", False, "dropout"  # `dropout: 0.1` is a key of the variant

    dropout: Annotated[Number, between(0.0, 0.95)] = 0.0

    def strength_key(self) -> str | None:
        return super().strength_key() if self.dropout else None

    def hidden_layer(self, x, name: str, seeds):
        from keras import layers

        if not self.dropout:
            return x
        return layers.SpatialDropout2D(self.dropout, seed=next(seeds), name=f"{name}_drop")(x)
