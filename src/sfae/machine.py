"""Where a run ran: the machine *kind* and the versions of the packages that shape its numbers.
Rounding differs from kind to kind (GPU; CPU architecture and cores: no kernel version), which
over hundreds of epochs acts like another seed: comparisons read runs of one kind."""

import contextlib
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("tensorflow", "keras", "jax", "numpy", "dvc", "dvclive")
UNKNOWN = "unknown"


def machine_kind(description: str | None = None) -> str:
    """The kind ("NVIDIA H100 80GB HBM3 GPU", "2-core x86_64 CPU", "unknown") of a description (a
    kind; in older records `<platform>, <processor>, <n> CPUs[, <GPU>]`), or of this machine."""
    if description is None:
        device, processor = accelerator(), platform.processor() or platform.machine()
        return f"{device} GPU" if device else f"{os.cpu_count()}-core {processor} CPU"
    if description == UNKNOWN or description.endswith((" GPU", " CPU")):
        return description
    parts = description.split(", ")
    at = next((i for i, p in enumerate(parts) if p.endswith(" CPUs") and p[:-5].isdigit()), None)
    if len(parts) < 3 or at is None:
        return UNKNOWN
    if at + 1 < len(parts):
        return f"{', '.join(parts[at + 1 :])} GPU"
    return f"{parts[at][:-5]}-core {parts[at - 1]} CPU"


def local_machine_kind() -> str:
    """This machine's kind as its training runs report it: Keras first, to see its GPU."""
    import keras  # noqa: F401

    return machine_kind()


def accelerator() -> str | None:
    """The GPU that Keras' backend computes on, if any (None before Keras is imported)."""
    backend = keras.backend.backend() if (keras := sys.modules.get("keras")) else None
    if backend == "jax":
        import jax

        return str(jax.devices()[0].device_kind) if jax.default_backend() != "cpu" else None
    if backend == "tensorflow":
        import tensorflow as tf

        # The model ("NVIDIA H100 ..."), not the device path "/physical_device:GPU:0".
        if gpus := tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpus[0])
            return str(details.get("device_name") or gpus[0].name)
    return None


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), **dict.fromkeys(PACKAGES, "not installed")}
    for name in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    return versions
