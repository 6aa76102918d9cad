"""Turn the raw datasets into small arrays at model resolution (data/prepared/)."""

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sfae.data import sources
from sfae.data.image_io import read_mask, read_rgb, resize_image, resize_map, resize_mask
from sfae.errors import SfaeError


def split_names(names: list[str], train_count: int, seed: int) -> tuple[list[str], list[str]]:
    """Seeded shuffle of the sorted names; the first train_count are train, the rest test."""
    ordered, count = sorted(names), len(names)
    if not 0 < train_count < count:
        raise SfaeError(f"train_count {train_count} must leave images in both splits of {count}")
    shuffled = [ordered[i] for i in np.random.default_rng(seed).permutation(count)]
    return shuffled[:train_count], shuffled[train_count:]


def hold_out(train: list[str], val_count: int, seed: int) -> tuple[list[str], list[str]]:
    """(fit, val): the names left to fit keep their order, so val_count 0 trains as before."""
    if not 0 <= val_count < len(train):
        raise SfaeError(f"val_count {val_count} must leave images to train on of {len(train)}")
    picked = set(np.random.default_rng([seed, 1]).permutation(len(train))[:val_count].tolist())
    return [n for i, n in enumerate(train) if i not in picked], [train[i] for i in sorted(picked)]


def prepare_pennfudan(raw: Path, image_size: int, train_count: int, seed: int, val_count=0) -> dict:
    """Images in [0, 1] and binary masks at image_size, split into train, val (only when
    val_count > 0: the file is then as before validation existed) and test."""
    pairs = sources.pennfudan_pairs(raw)
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
        if names:
            arrays[f"{split}_images"] = np.stack([images[n] for n in names])
            arrays[f"{split}_masks"] = np.stack([masks[n] for n in names])
            arrays[f"{split}_names"] = np.array(names)
    return arrays


def prepare_mall(raw: Path, image_size: int, frames: int) -> dict:
    """The first `frames` frames at image_size, head points in resized pixels, ROI, perspective."""
    heads, counts = sources.load_mall_annotations(raw)
    if frames > (count := len(heads)):
        raise SfaeError(f"{raw / 'mall_gt.mat'}: asked for {frames} frames, it annotates {count}")
    roi, perspective = sources.load_mall_geometry(raw)
    size = (image_size, image_size)
    width, height = sources.MALL_FRAME_SIZE
    scale = np.array([image_size / width, image_size / height])
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
        "frame_size": np.array(sources.MALL_FRAME_SIZE),
    }


def prepare_unlabeled(raw: Path, image_size: int, count: int, total=sources.MALL_FRAMES) -> dict:
    """The last `count` Mall frames (none scored, no masks) at image_size, as uint8: exact, as
    resize_image's values are k / 255, at a quarter of the size. A run takes the last N."""
    numbers = range(total - count + 1, total + 1)
    size = (image_size, image_size)
    frames = _mall_frames(raw, numbers, size, "prepare unlabeled Mall frames")
    return {"frames": np.round(frames * 255.0).astype(np.uint8), "frame_numbers": np.array(numbers)}


def _mall_frames(raw: Path, numbers: range, size: tuple[int, int], desc: str) -> np.ndarray:
    paths = (sources.mall_frame_path(raw, n) for n in tqdm(numbers, desc=desc, unit="frame"))
    return np.stack([resize_image(read_rgb(path), size) for path in paths])


def save_arrays(path: Path, arrays: dict) -> None:
    with path.open("wb") as out:
        np.savez(out, **arrays)


def split_record(arrays: dict) -> str:
    record = {split: list(arrays.get(f"{split}_names", [])) for split in ("train", "val", "test")}
    return json.dumps(record, indent=2) + "\n"
