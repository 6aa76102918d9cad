"""Where a run ran: the machine and the versions of the packages that shape its numbers."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("tensorflow", "keras", "jax", "numpy", "dvc", "dvclive")


def machine_description() -> str:
    processor = platform.processor() or platform.machine()
    where = f"{platform.platform()}, {processor}, {os.cpu_count()} CPUs"
    device = accelerator()
    return f"{where}, {device}" if device else where


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
        if gpus:
            return str(gpus[0].name)
    return None


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions
