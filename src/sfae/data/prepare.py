"""Turn the raw datasets into small arrays at model resolution (data/prepared/)."""

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sfae.data.image_io import read_mask, read_rgb, resize_image, resize_map, resize_mask
from sfae.data.sources import (
    MALL_FRAME_SIZE,
    MALL_FRAMES,
    load_mall_annotations,
    load_mall_geometry,
    mall_frame_path,
    pennfudan_pairs,
)
from sfae.errors import SfaeError


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
    """(fit, val): val_count training names drawn with the split's seed for validation. The
    names left to fit keep their order: val_count 0 gives the same training run as before."""
    if not 0 <= val_count < len(train):
        raise SfaeError(f"val_count {val_count} must leave images to train on of {len(train)}")
    picked = set(np.random.default_rng([seed, 1]).permutation(len(train))[:val_count].tolist())
    fit = [name for i, name in enumerate(train) if i not in picked]
    val = [name for i, name in enumerate(train) if i in picked]
    return fit, val


def prepare_pennfudan(
    raw: Path, image_size: int, train_count: int, seed: int, val_count: int = 0
) -> dict:
    """Images in [0, 1] and binary masks at image_size, split into train, val and test. The
    val arrays exist only when val_count > 0: the file is then as before validation existed."""
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
    images = _mall_frames(raw, range(1, frames + 1), size, "prepare Mall")
    points = [heads[i] * scale for i in range(frames)]
    return {
        "frames": images,
        "frame_numbers": np.arange(1, frames + 1),
        "head_points": np.concatenate(points).astype(np.float32),
        "head_offsets": np.cumsum([0] + [len(p) for p in points]),
        "counts": counts[:frames],
        "roi": resize_mask(roi > 0, size),
        # Values stay in the dataset's own units: relative per-pixel weights.
        "perspective": resize_map(perspective, size),
        "frame_size": np.array(MALL_FRAME_SIZE),
    }


def prepare_unlabeled(raw: Path, image_size: int, count: int, total: int = MALL_FRAMES) -> dict:
    """The last `count` Mall frames (config: none of them scored; they have no masks), at
    image_size, as uint8: resize_image's values are k / 255, so the bytes hold them exactly,
    at a quarter of the size (1500 frames at 96x96: 41 MB). A run takes the last N of them."""
    numbers = range(total - count + 1, total + 1)
    size = (image_size, image_size)
    frames = _mall_frames(raw, numbers, size, "prepare unlabeled Mall frames")
    return {"frames": np.round(frames * 255.0).astype(np.uint8), "frame_numbers": np.array(numbers)}


def _mall_frames(raw: Path, numbers: range, size: tuple[int, int], desc: str) -> np.ndarray:
    frames = tqdm(numbers, desc=desc, unit="frame")
    return np.stack(
        [resize_image(read_rgb(mall_frame_path(raw, number)), size) for number in frames]
    )


def save_arrays(path: Path, arrays: dict) -> None:
    """Write arrays as an uncompressed .npz (path must end in .npz)."""
    with path.open("wb") as out:
        np.savez(out, **arrays)


def split_record(arrays: dict) -> str:
    """The split as reviewable JSON: the image names of each split (val may be empty)."""
    record = {split: arrays.get(f"{split}_names", []) for split in ("train", "val", "test")}
    return json.dumps({split: list(names) for split, names in record.items()}, indent=2) + "\n"
