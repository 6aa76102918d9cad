"""Seconds per epoch of the paper schedule: project training loop vs a plain `model.fit`.

    python bench/train_speed.py --epochs 20 [--variant pure]

Each loop runs in its own process, so each gets TensorFlow's thread settings as it would
alone; seconds per epoch are the median over the epochs after the first (which traces).
Uses data/prepared/pennfudan.npz when present, else 85 random 96x96 images.
The last line printed is `speedup: <plain fit seconds / project seconds>`.
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
    from sfae.paths import ProjectPaths
    from sfae.prepare import load_pennfudan

    prepared = ProjectPaths(ROOT).pennfudan_prepared
    if prepared.exists() and not synthetic:
        data = load_pennfudan(prepared)
        return data.train_images, data.train_masks, str(prepared)
    rng = np.random.default_rng(0)
    images = rng.random((85, image_size, image_size, 3), dtype=np.float32)
    masks = (rng.random((85, image_size, image_size, 1)) > 0.7).astype(np.float32)
    return images, masks, "85 random images"


def measure(loop: str, variant: str, epochs: int, synthetic: bool) -> dict:
    from sfae.benchmark import plain_fit, project_fit, seconds_per_epoch
    from sfae.params import load_config
    from sfae.paths import ProjectPaths
    from sfae.training import configure_determinism

    config = load_config(ProjectPaths(ROOT).params)
    config = dataclasses.replace(config, variant=config.variants[variant])
    if loop == "project":
        configure_determinism(config.seed)
    images, masks, source = training_set(config.data.image_size, synthetic)
    run = project_fit if loop == "project" else plain_fit
    losses, stamps, _ = run(config, images, masks, epochs)
    return {
        "seconds_per_epoch": seconds_per_epoch(stamps),
        "final_loss": losses[-1],
        "data": source,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--variant", default="pure")
    parser.add_argument("--synthetic", action="store_true", help="random images, not the real set")
    parser.add_argument("--loop", choices=["project", "plain"], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.loop:
        result = measure(arguments.loop, arguments.variant, arguments.epochs, arguments.synthetic)
        print(json.dumps(result))
        return
    results = {}
    for loop in ("plain", "project"):
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
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"the {loop} loop failed:\n{done.stderr[-3000:]}")
        results[loop] = json.loads(done.stdout.strip().splitlines()[-1])
    schedule = 801
    print(
        f"data: {results['project']['data']}; variant {arguments.variant}; "
        f"{arguments.epochs} epochs"
    )
    for loop, result in results.items():
        seconds = result["seconds_per_epoch"]
        print(
            f"{loop:8s} {seconds:.4f} s/epoch "
            f"({seconds * schedule / 60:.1f} min for {schedule} epochs)"
            f"  final loss {result['final_loss']:.4f}"
        )
    speedup = results["plain"]["seconds_per_epoch"] / results["project"]["seconds_per_epoch"]
    print(f"speedup: {speedup:.2f}")


if __name__ == "__main__":
    main()
