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
    """The GPU the backend computes on, if any (asked only of a backend already imported)."""
    jax = sys.modules.get("jax")
    if jax is not None and jax.default_backend() != "cpu":
        return str(jax.devices()[0].device_kind)
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is not None:
        gpus = tensorflow.config.list_physical_devices("GPU")
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
