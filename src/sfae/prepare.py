"""Turn the raw datasets into small arrays at model resolution (data/prepared/)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sfae.datasets import (
    MALL_FRAME_SIZE,
    load_mall_annotations,
    load_mall_geometry,
    mall_frame_path,
    pennfudan_pairs,
)
from sfae.errors import SfaeError
from sfae.image_io import read_mask, read_rgb, resize_image, resize_map, resize_mask


def split_names(names: list[str], train_count: int, seed: int) -> tuple[list[str], list[str]]:
    """Seeded shuffle of the sorted names; the first train_count are train, the rest test."""
    ordered = sorted(names)
    if not 0 < train_count < len(ordered):
        raise SfaeError(
            f"train_count {train_count} must leave images in both splits of {len(ordered)}"
        )
    order = np.random.default_rng(seed).permutation(len(ordered))
    shuffled = [ordered[i] for i in order]
    return shuffled[:train_count], shuffled[train_count:]


def hold_out(train: list[str], val_count: int, seed: int) -> tuple[list[str], list[str]]:
    """(fit, val): val_count training names drawn with the split's seed for validation.

    The test split is never touched, and the names left to fit keep their order, so
    val_count 0 gives exactly the training split of before (and the same training run).
    """
    if not 0 <= val_count < len(train):
        raise SfaeError(f"val_count {val_count} must leave images to train on of {len(train)}")
    picked = set(np.random.default_rng([seed, 1]).permutation(len(train))[:val_count].tolist())
    fit = [name for i, name in enumerate(train) if i not in picked]
    val = [name for i, name in enumerate(train) if i in picked]
    return fit, val


def prepare_pennfudan(
    raw: Path, image_size: int, train_count: int, seed: int, val_count: int = 0
) -> dict:
    """Images in [0, 1] and binary masks at image_size, split into train, val and test.

    The val arrays exist only when val_count > 0: without them the file is the same as
    before validation existed, so DVC re-runs nothing downstream.
    """
    pairs = pennfudan_pairs(raw)
    if not pairs:
        raise SfaeError(f"{raw / 'PNGImages'}: no PNG images")
    size = (image_size, image_size)
    images, masks = {}, {}
    for name, image_path, mask_path in tqdm(pairs, desc="prepare Penn-Fudan", unit="image"):
        image, instances = read_rgb(image_path), read_mask(mask_path)
        if instances.shape != image.shape[:2]:
            raise SfaeError(f"{mask_path}: mask size differs from its image {image_path.name}")
        images[name] = resize_image(image, size)
        masks[name] = resize_mask(instances > 0, size)
    train, test = split_names(list(images), train_count, seed)
    train, val = hold_out(train, val_count, seed)
    arrays = {}
    for split, names in (("train", train), ("val", val), ("test", test)):
        if not names:
            continue
        arrays[f"{split}_images"] = np.stack([images[n] for n in names])
        arrays[f"{split}_masks"] = np.stack([masks[n] for n in names])
        arrays[f"{split}_names"] = np.array(names)
    return arrays


def prepare_mall(raw: Path, image_size: int, frames: int) -> dict:
    """The first `frames` frames at image_size, head points in resized pixels, ROI, perspective."""
    heads, counts = load_mall_annotations(raw)
    if frames > len(heads):
        raise SfaeError(
            f"{raw / 'mall_gt.mat'}: asked for {frames} frames, it annotates {len(heads)}"
        )
    roi, perspective = load_mall_geometry(raw)
    size = (image_size, image_size)
    scale = np.array([image_size / MALL_FRAME_SIZE[0], image_size / MALL_FRAME_SIZE[1]])
    images = [
        resize_image(read_rgb(mall_frame_path(raw, number)), size)
        for number in tqdm(range(1, frames + 1), desc="prepare Mall", unit="frame")
    ]
    points = [heads[i] * scale for i in range(frames)]
    return {
        "frames": np.stack(images),
        "frame_numbers": np.arange(1, frames + 1),
        "head_points": np.concatenate(points).astype(np.float32),
        "head_offsets": np.cumsum([0] + [len(p) for p in points]),
        "counts": counts[:frames],
        "roi": resize_mask(roi > 0, size),
        # Values stay in the dataset's own units: relative per-pixel weights.
        "perspective": resize_map(perspective, size),
        "frame_size": np.array(MALL_FRAME_SIZE),
    }


def save_arrays(path: Path, arrays: dict) -> None:
    """Write arrays as an uncompressed .npz (path must end in .npz)."""
    with path.open("wb") as out:
        np.savez(out, **arrays)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as bundle:
            return {key: bundle[key] for key in bundle.files}
    except FileNotFoundError as error:
        raise SfaeError(f"{path}: not found; run `dvc repro` to make it") from error
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise SfaeError(f"{path}: unreadable prepared arrays ({error})") from error


@dataclass(frozen=True)
class MallArrays:
    frames: np.ndarray
    frame_numbers: np.ndarray  # 1-based, as in the frame file names
    heads: list[np.ndarray]
    counts: np.ndarray
    roi: np.ndarray
    perspective: np.ndarray
    frame_size: tuple[int, int]


MALL_KEYS = (
    *("frames", "frame_numbers", "head_points", "head_offsets"),
    *("counts", "roi", "perspective", "frame_size"),
)


def _require(path: Path, arrays: dict, keys, what: str, stage: str) -> None:
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise SfaeError(f"{path}: not {what} (no {', '.join(missing)}); run `dvc repro {stage}`")


def load_mall(path: Path) -> MallArrays:
    arrays = load_arrays(path)
    _require(path, arrays, MALL_KEYS, "prepared Mall arrays", "preprocess_mall")
    offsets = arrays["head_offsets"]
    points = arrays["head_points"]
    return MallArrays(
        frames=arrays["frames"],
        frame_numbers=arrays["frame_numbers"],
        heads=[points[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)],
        counts=arrays["counts"],
        roi=arrays["roi"],
        perspective=arrays["perspective"],
        frame_size=tuple(int(v) for v in arrays["frame_size"]),
    )


def split_record(arrays: dict) -> str:
    """The split as reviewable JSON: the image names of each split (val may be empty)."""
    record = {
        split: arrays[f"{split}_names"].tolist() if f"{split}_names" in arrays else []
        for split in ("train", "val", "test")
    }
    return json.dumps(record, indent=2) + "\n"


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
    arrays = load_arrays(path)
    keys = [
        f"{split}_{kind}" for split in ("train", "test") for kind in ("images", "masks", "names")
    ]
    _require(path, arrays, keys, "prepared Penn-Fudan arrays", "preprocess_pennfudan")
    images, masks = arrays["train_images"], arrays["train_masks"]
    val_images = arrays.get("val_images", images[:0])
    val_masks = arrays.get("val_masks", masks[:0])
    return PennFudanSplits(
        train_images=images,
        train_masks=masks[..., None].astype(np.float32),
        test_images=arrays["test_images"],
        test_masks=arrays["test_masks"][..., None].astype(np.float32),
        train_names=arrays["train_names"].tolist(),
        test_names=arrays["test_names"].tolist(),
        val_images=val_images,
        val_masks=val_masks[..., None].astype(np.float32),
        val_names=arrays["val_names"].tolist() if "val_names" in arrays else [],
    )
