"""DVC stage: fetch, extract and verify one dataset into data/raw/ (pennfudan or mall)."""

import argparse

from sfae.data.download import install
from sfae.data.sources import DATASETS
from sfae.errors import run_stage
from sfae.paths import ProjectPaths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", choices=sorted(DATASETS))
    dataset = DATASETS[parser.parse_args().dataset]
    install(dataset, ProjectPaths.here().raw / dataset.folder)


if __name__ == "__main__":
    run_stage(main)
