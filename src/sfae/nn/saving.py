"""Byte-stable .keras archives (Keras writes the save time and Python object ids into them: the
same weights would get another DVC hash each save, re-running every later stage); load errors."""

import io
import json
import zipfile
from pathlib import Path

import keras

from sfae.errors import SfaeError


def _renumber_shared_objects(node: object, numbers: dict) -> object:
    """The id() values Keras uses as `shared_object_id` replaced by 1, 2, ... in order."""
    if isinstance(node, list):
        return [_renumber_shared_objects(item, numbers) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: numbers.setdefault(value, len(numbers) + 1)
        if key == "shared_object_id"
        else _renumber_shared_objects(value, numbers)
        for key, value in node.items()
    }


def deterministic_archive(data: bytes) -> bytes:
    """A .keras archive rewritten so that its bytes depend on the model only."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        entries = {info.filename: source.read(info) for info in source.infolist()}
    metadata = json.loads(entries["metadata.json"])
    metadata["date_saved"] = "1980-01-01@00:00:00"  # the zip entries' date, Keras' format
    config = _renumber_shared_objects(json.loads(entries["config.json"]), {})
    entries["metadata.json"] = json.dumps(metadata).encode()
    entries["config.json"] = json.dumps(config).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # the earliest a zip has
            info.compress_type = zipfile.ZIP_STORED  # as Keras writes it
            info.external_attr = 0o644 << 16
            info.create_system = 3  # Unix, whatever the machine
            target.writestr(info, entries[name])
    return buffer.getvalue()


def save_model_deterministic(model: keras.Model, path: Path) -> None:
    """model.save(path), the same bytes for the same model (load_model reads it as ever)."""
    path = Path(path)
    model.save(path)
    path.write_bytes(deterministic_archive(path.read_bytes()))


def check_saved(path: Path) -> Path:
    """path, if a file that is not empty; else an SfaeError saying how to make it again."""
    path = Path(path)
    if not path.is_file():
        raise SfaeError(f"{path}: not found; run `dvc repro` to make it")
    if path.stat().st_size == 0:
        raise SfaeError(f"{path}: empty (truncated); run `dvc repro` to make it again")
    return path


def load_weights(model: keras.Model, path: Path) -> None:
    path = check_saved(path)
    try:
        model.load_weights(path)
    except Exception as error:  # h5py and Keras raise many kinds for a bad file
        raise SfaeError(
            f"{path}: damaged, truncated or not this model's weights; run `dvc repro` to "
            f"make it again ({one_line(error)})"
        ) from error


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    text = text[:197] + "..." if len(text) > 200 else text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
