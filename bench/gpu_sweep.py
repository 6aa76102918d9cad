"""Run a sweep on a GPU machine that has JAX but no TensorFlow, DVC, git or internet.

The sweep runs there through `python -m sfae.sweep --local DIR` (sfae.local_runs: the
same stages in plain folders), so only its data must travel: the prepared arrays of the
preprocessing stages, for every data.val_count the sweep uses. They are packed small here
(float images stored as the 8-bit values they were made from, which unpack bit for bit)
and unpacked into DIR's shared stages there, where the runs find them as if they had run.

    # here, in the repository, with the data prepared (`make repro`):
    python bench/gpu_sweep.py pack --arch unet .device
    # here, the wheels it lacks there (for its Python; bench/gpu_requirements.txt):
    pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        -d .whl -r bench/gpu_requirements.txt
    # there, with .device and .whl carried:
    pip install --no-index --no-deps .whl/*.whl
    python bench/gpu_sweep.py unpack .device runs
    SFAE_COMMIT=<commit> KERAS_BACKEND=jax python -m sfae.sweep --arch unet --local runs --jobs 3

`pack` prints the data stages' seconds and each packed file's size, `unpack` each file's size.
Packing keeps an array as floats unless its 8-bit values give it back bit for bit.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCALE = np.float32(255)
PACKED = "__u8"  # suffix of an array stored as its 8-bit values


def data_stages(arch: str) -> list[dict]:
    """The overrides under which the sweep's runs need the data stages."""
    from sfae.params import load_config
    from sfae.paths import ProjectPaths

    config = load_config(ProjectPaths(ROOT).params)
    settings = config.sweep if arch == "paper" else getattr(config.sweep, arch)
    return [{"data.val_count": count} for count in sorted({settings.val_count, 0})]


def pack_npz(source: Path, target: Path) -> None:
    arrays = dict(np.load(source))
    packed = {}
    for name, array in arrays.items():
        if array.dtype == np.float32:
            values = np.rint(array * SCALE)
            if np.array_equal(values.astype(np.uint8).astype(np.float32) / SCALE, array):
                packed[name + PACKED] = values.astype(np.uint8)
                continue
        packed[name] = array
    np.savez_compressed(target, **packed)


def unpack_npz(source: Path, target: Path) -> None:
    arrays = {}
    for name, array in np.load(source).items():
        if name.endswith(PACKED):
            arrays[name.removesuffix(PACKED)] = array.astype(np.float32) / SCALE
        else:
            arrays[name] = array
    with target.open("wb") as file:
        np.savez(file, **arrays)


def pack(arch: str, out: Path) -> None:
    from sfae.local_runs import LocalExperiments

    with tempfile.TemporaryDirectory() as scratch:
        store = LocalExperiments(ROOT, Path(scratch), commit="pack")
        for overrides in data_stages(arch):
            store.queue({key: [value] for key, value in overrides.items()}, "preprocess_pennfudan")
        store.queue({}, "preprocess_mall")
        started = time.perf_counter()
        store.start(jobs=1)
        store.wait()
        failed = [run.log for run in store.runs() if run.state != "success"]
        if failed:
            sys.exit(f"data stages failed: see {failed}")
        print(f"data stages: {time.perf_counter() - started:.0f} s")
        shutil.rmtree(out, ignore_errors=True)
        for entry in sorted((Path(scratch) / ".stages").glob("preprocess_*")):
            copy_tree(entry, out / entry.name, pack_npz)


def unpack(packed: Path, runs: Path) -> None:
    copy_tree(packed, runs / ".stages", unpack_npz)


def copy_tree(source: Path, target: Path, convert_npz) -> None:
    """Copy every file under `source` to `target`, .npz files through `convert_npz`."""
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        copied = target / file.relative_to(source)
        copied.parent.mkdir(parents=True, exist_ok=True)
        if file.suffix == ".npz":
            convert_npz(file, copied)
        else:
            shutil.copy2(file, copied)
        print(f"{copied}: {copied.stat().st_size / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="pack the sweep's prepared data (here)")
    packing.add_argument("--arch", default="unet", choices=("paper", "unet"))
    packing.add_argument("out", type=Path)
    unpacking = commands.add_parser("unpack", help="unpack it into a --local runs folder")
    unpacking.add_argument("packed", type=Path)
    unpacking.add_argument("runs", type=Path)
    arguments = parser.parse_args()
    if arguments.command == "pack":
        pack(arguments.arch, arguments.out)
    else:
        unpack(arguments.packed, arguments.runs)


if __name__ == "__main__":
    main()
