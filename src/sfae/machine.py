"""Where a run ran: the machine and the versions of the packages that shape its numbers.

Rounding differs between a CPU and a GPU, or CPUs of another kind, and over hundreds of
epochs that acts like another seed: so every comparison reads runs of one machine *kind*.
The kind is what decides the rounding and is stable from one identical machine to the next
(no kernel version in it): the GPU that computed, or else the CPU architecture and cores.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("tensorflow", "keras", "jax", "numpy", "dvc", "dvclive")
UNKNOWN = "unknown"


def machine_kind(description: str | None = None) -> str:
    """The kind of the machine a description names (this machine's when None):
    "NVIDIA H100 80GB HBM3 GPU", "2-core x86_64 CPU" or "unknown".

    A description is already a kind (what the training stage logs now) or, in older records,
    "<platform>, <processor>, <n> CPUs[, <GPU>]"."""
    if description is None:
        device, processor = accelerator(), platform.processor() or platform.machine()
        return f"{device} GPU" if device else f"{os.cpu_count()}-core {processor} CPU"
    if description == UNKNOWN or description.endswith((" GPU", " CPU")):
        return description
    parts = description.split(", ")
    cores = next((p for p in parts if p.endswith(" CPUs") and p[:-5].isdigit()), None)
    if len(parts) < 3 or cores is None:
        return UNKNOWN
    after = parts[parts.index(cores) + 1 :]
    if after:
        return f"{', '.join(after)} GPU"
    processor = parts[parts.index(cores) - 1]
    return f"{cores[:-5]}-core {processor} CPU"


def local_machine_kind() -> str:
    """This machine's kind as its training runs will report it: Keras is loaded first, so
    that a GPU it would compute on is seen (a few seconds, once)."""
    import keras  # noqa: F401

    return machine_kind()


def accelerator() -> str | None:
    """The GPU that Keras' backend computes on, if any (None before Keras is imported)."""
    keras = sys.modules.get("keras")
    backend = keras.backend.backend() if keras is not None else None
    if backend == "jax":
        import jax

        if jax.default_backend() != "cpu":
            return str(jax.devices()[0].device_kind)
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:  # the model ("NVIDIA H100 ..."), not the device path "/physical_device:GPU:0"
            details = tf.config.experimental.get_device_details(gpus[0])
            return str(details.get("device_name") or gpus[0].name)
    return None


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions
