"""Seconds per epoch of the paper schedule: project training loop vs a plain `model.fit`.

    python bench/train_speed.py --epochs 20 [--variant pure] [--arch paper|unet]
                                [--set model.unet.width=12 ...]

Three loops of the same math, each in its own process:
  plain    `model.fit` with Keras' defaults (steps_per_execution=1, default threads)
  tuned    `model.fit` with the project loop's runtime settings (configure_determinism:
           one intra-op thread) and steps_per_execution = steps per epoch
  project  the project's training loop (sfae.nn.training.fit)
Seconds per epoch are the median over the epochs after the first (which traces).
--arch picks the network (params.yaml's model.arch by default): `unet` times the U-Net of
model.unet, and the minutes printed are for its own schedule (model.unet.epochs).
--set changes a setting of params.yaml for the timing, as `dvc exp run -S` does (a sweep
candidate, say). For an augmenting variant the loops time the same math without drawing
the augmented images; a line `augment` gives what drawing them adds per epoch.
Uses data/prepared/pennfudan.npz when present, else 85 random 96x96 images.
Prints `speedup vs default fit: <plain seconds / project seconds>`, then as the last line
`speedup: <tuned fit seconds / project seconds>`.
"""

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def training_set(image_size: int, synthetic: bool):
    from sfae.data.prepared import load_pennfudan
    from sfae.paths import ProjectPaths

    prepared = ProjectPaths(ROOT).pennfudan_prepared
    if prepared.exists() and not synthetic:
        data = load_pennfudan(prepared)
        return data.train_images, data.train_masks, str(prepared)
    rng = np.random.default_rng(0)
    images = rng.random((85, image_size, image_size, 3), dtype=np.float32)
    masks = (rng.random((85, image_size, image_size, 1)) > 0.7).astype(np.float32)
    return images, masks, "85 random images"


LOOPS = ("plain", "tuned", "project")
# Loops timed under the project loop's runtime settings (applied before TensorFlow starts).
PROJECT_SETTINGS = ("tuned", "project")


def load_params(arch: str | None = None, settings: tuple[str, ...] = ()):
    """params.yaml's config, with model.arch set to `arch` when given and each
    `key=value` of `settings` applied as `dvc exp run -S` would."""
    import tempfile

    import yaml

    from sfae.config import read_yaml, with_arch
    from sfae.nn.regularisers.registry import load_config
    from sfae.paths import ProjectPaths

    path = ProjectPaths(ROOT).params
    with tempfile.TemporaryDirectory() as folder:
        if settings:
            params = read_yaml(path.read_text())
            for setting in settings:
                key, _, value = setting.partition("=")
                *parents, last = key.split(".")
                node = params
                for part in parents:
                    node = node.setdefault(part, {})
                node[last] = read_yaml(value)
            path = Path(folder) / "params.yaml"
            path.write_text(yaml.safe_dump(params))
        config = load_config(path)
    return with_arch(config, arch) if arch else config


def intra_op_threads() -> int | None:
    """TensorFlow's intra-op thread setting: 0 is its default (one per core), None not TF.

    configure_determinism sets it only while the runtime has not started (else the setting
    is left as it was): a 1 here means it took effect.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads()


def augment_seconds(config, images, masks, epochs: int) -> float:
    """Seconds per epoch of drawing the augmented training set, which the training loop
    adds to every epoch of an augmenting variant (the timed loops run the same math
    without it, so the fits stay comparable)."""
    import time

    from fit_loops import seconds_per_epoch

    from sfae.nn.regularisers.augment import augmenter

    augment = augmenter(config.variant.augment, config.seed)
    stamps = [time.perf_counter()]
    for _ in range(max(epochs, 2)):
        augment(images, masks)
        stamps.append(time.perf_counter())
    return seconds_per_epoch(stamps)


def measure(
    loop: str, variant: str, epochs: int, synthetic: bool, arch: str | None, settings=()
) -> dict:
    from fit_loops import LOOPS as RUNS
    from fit_loops import seconds_per_epoch, steps_per_epoch

    from sfae.nn.training import configure_determinism

    config = load_params(arch, settings)
    config = dataclasses.replace(config, variant=config.variants[variant])
    if loop in PROJECT_SETTINGS:
        configure_determinism(config.seed)
    images, masks, source = training_set(config.data.image_size, synthetic)
    threads = intra_op_threads()
    if loop in PROJECT_SETTINGS and threads not in (None, 1):
        sys.exit(f"the {loop} loop should run with 1 intra-op thread, not {threads}")
    run = RUNS[loop](config, images, masks, epochs)
    augmenting = None
    if loop == "project" and config.variant.augment:
        augmenting = augment_seconds(config, images, masks, epochs)
    return {
        "augment_seconds_per_epoch": augmenting,
        "seconds_per_epoch": seconds_per_epoch(run.stamps),
        "final_loss": run.losses[-1],
        "data": source,
        "intra_op_threads": threads,
        "steps_per_epoch": steps_per_epoch(config, len(images)),
        "parameters": run.model.count_params(),
    }


def describe(loop: str, result: dict) -> str:
    threads = result["intra_op_threads"]
    threads = {None: "n/a", 0: "default"}.get(threads, threads)
    if loop == "project":
        return f"project loop, intra-op threads {threads}"
    steps = result["steps_per_epoch"] if loop == "tuned" else 1
    return f"model.fit, intra-op threads {threads}, steps_per_execution {steps}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--variant", default="pure")
    parser.add_argument("--arch", choices=("paper", "unet"), help="default: model.arch")
    parser.add_argument("--synthetic", action="store_true", help="random images, not the real set")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a params.yaml setting, as dvc exp run -S does (repeatable)",
    )
    parser.add_argument("--loop", choices=LOOPS, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.loop:
        result = measure(
            arguments.loop,
            arguments.variant,
            arguments.epochs,
            arguments.synthetic,
            arguments.arch,
            tuple(arguments.set),
        )
        print(json.dumps(result))
        return
    results = {}
    for loop in LOOPS:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--loop",
            loop,
            "--variant",
            arguments.variant,
            "--epochs",
            str(arguments.epochs),
            *(["--synthetic"] if arguments.synthetic else []),
            *(["--arch", arguments.arch] if arguments.arch else []),
            *(f"--set={setting}" for setting in arguments.set),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"the {loop} loop failed:\n{done.stderr[-3000:]}")
        results[loop] = json.loads(done.stdout.strip().splitlines()[-1])
    config = load_params(arguments.arch, tuple(arguments.set))
    schedule = config.train.epochs
    print(
        f"data: {results['project']['data']}; variant {arguments.variant}; "
        f"{arguments.epochs} epochs; arch {config.arch} "
        f"({results['project']['parameters']} parameters)"
        + "".join(f"; {setting}" for setting in arguments.set)
    )
    for loop, result in results.items():
        seconds = result["seconds_per_epoch"]
        print(
            f"{loop:8s} {seconds:.4f} s/epoch "
            f"({seconds * schedule / 60:.1f} min for {schedule} epochs)"
            f"  final loss {result['final_loss']:.4f}  [{describe(loop, result)}]"
        )
    project = results["project"]["seconds_per_epoch"]
    if (augmenting := results["project"]["augment_seconds_per_epoch"]) is not None:
        total = (project + augmenting) * schedule / 60
        print(
            f"augment  {augmenting:.4f} s/epoch drawing the augmented set, on top of each loop: "
            f"the project loop with it {total:.1f} min for {schedule} epochs"
        )
    print(f"speedup vs default fit: {results['plain']['seconds_per_epoch'] / project:.2f}")
    print(f"speedup: {results['tuned']['seconds_per_epoch'] / project:.2f}")


if __name__ == "__main__":
    main()
