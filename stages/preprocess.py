"""DVC stage: resize and split one raw dataset into data/prepared/: pennfudan, mall (the
scored frames) or unlabeled (the Mall frames after them, for sparse filtering)."""

import argparse

from sfae.atomic import staged_outputs
from sfae.data.prepare import (
    prepare_mall,
    prepare_pennfudan,
    prepare_unlabeled,
    save_arrays,
    split_record,
)
from sfae.data.sources import MALL, PENNFUDAN
from sfae.errors import run_stage
from sfae.nn.regularisers.registry import load_config
from sfae.paths import ProjectPaths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", choices=["pennfudan", "mall", "unlabeled"])
    dataset = parser.parse_args().dataset
    paths = ProjectPaths.here()
    config = load_config(paths.params)
    if dataset == "pennfudan":
        data = config.data
        arrays = prepare_pennfudan(
            paths.raw / PENNFUDAN.folder,
            data.image_size,
            data.train_count,
            data.split_seed,
            data.val_count,
        )
        with staged_outputs(paths.pennfudan_prepared, paths.split) as (prepared, split):
            save_arrays(prepared, arrays)
            split.write_text(split_record(arrays))
    elif dataset == "mall":
        arrays = prepare_mall(paths.raw / MALL.folder, config.data.image_size, config.mall.frames)
        with staged_outputs(paths.mall_prepared) as (prepared,):
            save_arrays(prepared, arrays)
    else:
        raw, size = paths.raw / MALL.folder, config.data.image_size
        arrays = prepare_unlabeled(raw, size, config.mall.unlabeled_frames)
        with staged_outputs(paths.unlabeled_prepared) as (prepared,):
            save_arrays(prepared, arrays)


if __name__ == "__main__":
    run_stage(main)
