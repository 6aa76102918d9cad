"""Our regularisers, and the loader of the stages' config that knows them (imports no Keras)."""

from pathlib import Path

from sfae import config
from sfae.errors import SfaeError
from sfae.nn.regularisers.augment import Augmentation
from sfae.nn.regularisers.dropout import Dropout
from sfae.nn.regularisers.penalty import Penalty
from sfae.nn.regularisers.sparse import Sparse

REGULARISERS = (Penalty, Dropout, Augmentation, Sparse)

# The highest value each strength may take (its `le` bound), by its key's last part.
STRENGTH_LIMITS = {
    unit.strength: next(m.le for m in unit.model_fields[unit.strength].metadata if hasattr(m, "le"))
    for unit in REGULARISERS
    if unit.strength
}


def load_config(path: Path) -> config.Config:
    """params.yaml's run config (all but study and sweep); SfaeError names a bad key."""
    loaded = config.load_config(path, REGULARISERS)
    prepared = loaded.mall.unlabeled_frames
    for name, variant in loaded.variants.items():
        if variant.sparse and (asked := variant.sparse.unlabeled_frames) > prepared:
            raise SfaeError(
                f"{path}: variants.{name}.sparse.unlabeled_frames ({asked}) is more than the "
                f"{prepared} frames that mall.unlabeled_frames prepares"
            )
    return loaded
