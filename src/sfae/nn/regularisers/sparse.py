"""Sparse filtering of the bottleneck (`sparse: {...}`): pretraining, then part of the loss."""

from typing import Annotated, Literal

from sfae.config import Int, Number, between
from sfae.nn.regularisers.base import Regulariser


class Sparse(Regulariser):
    name, strength = "sparse", "weight"

    activation: Literal["softabs", "elu"]
    epsilon: Annotated[Number, between(0.0, 1.0)]
    # Their ratio splits train.epochs when they do not add up to it (Config.pretrain_epochs).
    pretrain_epochs: Annotated[Int, between(0, 100_000)]
    pretrain_learning_rate: Annotated[Number, between(1e-8, 1.0)]
    finetune_epochs: Annotated[Int, between(1, 100_000)]
    weight: Annotated[Number, between(0.0, 1000.0)]  # supervised loss + weight * sparse cost
    # The last N Mall frames (no masks) beside the labelled images; N may not reach mall.frames.
    unlabeled_frames: Annotated[Int, between(0, 2000)] = 0

    def pretrain_share(self) -> tuple[int, int]:
        return self.pretrain_epochs, self.finetune_epochs

    def loss_term(self):
        from sfae.nn.sparse_filtering import sparse_filtering_loss

        def cost(features):
            return sparse_filtering_loss(features, self.activation, self.epsilon)

        return "sparse", self.weight, cost
