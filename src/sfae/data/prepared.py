"""The prepared arrays (data/prepared/*.npz) as the training and scoring stages read them."""

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sfae.errors import SfaeError


def load_arrays(path: Path, keys=(), what: str = "", stage: str = "") -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as bundle:
            arrays = {key: bundle[key] for key in bundle.files}
    except FileNotFoundError as error:
        raise SfaeError(f"{path}: not found; run `dvc repro` to make it") from error
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise SfaeError(f"{path}: unreadable prepared arrays ({error})") from error
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise SfaeError(f"{path}: not {what} (no {', '.join(missing)}); run `dvc repro {stage}`")
    return arrays


@dataclass(frozen=True)
class MallArrays:
    frames: np.ndarray
    frame_numbers: np.ndarray  # 1-based, as in the frame file names
    heads: list[np.ndarray]
    counts: np.ndarray
    roi: np.ndarray
    perspective: np.ndarray
    frame_size: tuple[int, int]


def load_mall(path: Path) -> MallArrays:
    keys = ("frames", "frame_numbers", "head_points", "head_offsets", "counts", "roi")
    arrays = load_arrays(
        path, (*keys, "perspective", "frame_size"), "prepared Mall arrays", "preprocess_mall"
    )
    return MallArrays(
        **{key: arrays[key] for key in ("frames", "frame_numbers", "counts", "roi", "perspective")},
        heads=np.split(arrays["head_points"], arrays["head_offsets"][1:-1]),
        frame_size=tuple(int(v) for v in arrays["frame_size"]),
    )


@dataclass(frozen=True)
class PennFudanSplits:
    train_images: np.ndarray  # (n, s, s, 3) float32 in [0, 1]
    train_masks: np.ndarray  # (n, s, s, 1) float32 in {0, 1}
    test_images: np.ndarray
    test_masks: np.ndarray
    train_names: list[str]
    test_names: list[str]
    val_images: np.ndarray  # empty (0, s, s, 3) when no validation images are held out
    val_masks: np.ndarray
    val_names: list[str]


def load_pennfudan(path: Path) -> PennFudanSplits:
    keys = [f"{s}_{kind}" for s in ("train", "test") for kind in ("images", "masks", "names")]
    arrays = load_arrays(path, keys, "prepared Penn-Fudan arrays", "preprocess_pennfudan")
    fields = {}
    for split in ("train", "val", "test"):  # val: empty arrays where none are held out
        fields[f"{split}_images"] = arrays.get(f"{split}_images", arrays["train_images"][:0])
        masks = arrays.get(f"{split}_masks", arrays["train_masks"][:0])
        fields[f"{split}_masks"] = masks[..., None].astype(np.float32)
        fields[f"{split}_names"] = arrays.get(f"{split}_names", np.array([])).tolist()
    return PennFudanSplits(**fields)


def load_unlabeled(path: Path, count: int) -> np.ndarray:
    """The last `count` unlabeled Mall frames, float32 in [0, 1] as the training images are."""
    frames = load_arrays(path, ["frames"], "prepared unlabeled frames", "preprocess_unlabeled")
    frames = frames["frames"]
    if count > len(frames):
        raise SfaeError(f"{path}: holds {len(frames)} unlabeled frames, {count} asked for")
    return frames[len(frames) - count :].astype(np.float32) / 255.0
