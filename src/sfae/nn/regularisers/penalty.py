"""L1 or L2 penalty on every convolution kernel: `regularizer` and `regularizer_scale`."""

from typing import Annotated, Literal

from pydantic import Field, field_validator

from sfae.config import Number, between
from sfae.nn.regularisers.base import Regulariser


class Penalty(Regulariser):
    # `regularizer: l2` and `regularizer_scale` are keys of the variant
    name, section, strength = "penalty", False, "regularizer_scale"

    regularizer: Literal["none", "l1", "l2"]
    regularizer_scale: Annotated[Number, between(0.0, 10.0), Field(validate_default=True)] = 0.0

    @field_validator("regularizer_scale")
    @classmethod
    def _scaled(cls, scale, info):
        regularizer = info.data.get("regularizer", "none")
        if regularizer != "none" and scale == 0.0:
            raise ValueError(f"must be > 0 for regularizer {regularizer}")
        return scale

    def strength_key(self) -> str | None:
        return None if self.regularizer == "none" else super().strength_key()

    def kernel_regularizer(self):
        import keras

        if self.regularizer == "l1":  # tf.contrib's l1_regularizer(scale): scale * sum|w|
            return keras.regularizers.L1(self.regularizer_scale)
        if self.regularizer == "l2":
            # tf.contrib's l2_regularizer(scale) is scale * sum(w^2) / 2; Keras' L2(c): c * sum(w^2)
            return keras.regularizers.L2(self.regularizer_scale / 2)
