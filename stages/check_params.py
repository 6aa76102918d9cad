"""DVC stage: check the whole of params.yaml before anything runs, and write what training
reads of it (metrics/settings.json).

It depends on params.yaml as a file, so any change there runs it: a typo in a new key
(`dvc exp run -S +data.imagesize=64`) stops the run with one line naming the key and the
nearest known one, where no other stage would notice it, and an unknown variant is refused
with the list of variants. The training stage depends on the settings it writes rather than
on `variants.${variant}`, so DVC never has to resolve a variant that does not exist, and a
change to another variant's settings re-trains nothing.
"""

import json

import pydantic

from sfae.atomic import staged_outputs
from sfae.errors import run_stage
from sfae.nn.regularisers.registry import REGULARISERS, load_config
from sfae.paths import ProjectPaths
from sfae.plans import check_params


def training_settings(config) -> dict:
    """Everything the training stage reads of params.yaml, resolved (the U-Net's schedule in
    place, a sparse variant's epochs split), so that it changes exactly when training would."""

    def dump(value):
        return pydantic.TypeAdapter(type(value)).dump_python(value, mode="json")

    settings = {
        "variant": config.variant.model_dump(mode="json"),
        "seed": config.seed,
        "data": dump(config.data),
        "train": dump(config.train),
        "arch": config.arch,
        "pretrain_epochs": config.pretrain_epochs(),
        "threshold": config.evaluate.threshold,  # the logged IoU curves use it
    }
    if config.arch == "unet":
        settings["unet"] = dump(config.model.unet)
    return settings


def main() -> None:
    paths = ProjectPaths.here()
    check_params(paths.params, REGULARISERS)
    settings = training_settings(load_config(paths.params))
    with staged_outputs(paths.settings) as (target,):
        target.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    run_stage(main)
