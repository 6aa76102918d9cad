"""The two datasets: where they come from, how they are laid out, how to verify them."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from tqdm import tqdm

from sfae.data.image_io import open_image, read_mask
from sfae.errors import SfaeError

MALL_FRAMES = 2000
MALL_FRAME_SIZE = (640, 480)


@dataclass(frozen=True)
class Dataset:
    name: str
    zip_name: str
    url: str
    folder: str  # top-level folder inside the zip, and its name under data/raw
    verify: Callable[[Path], None]


def pennfudan_pairs(root: Path) -> list[tuple[str, Path, Path]]:
    images = sorted((root / "PNGImages").glob("*.png"))
    return [(p.stem, p, root / "PedMasks" / f"{p.stem}_mask.png") for p in images]


def verify_pennfudan(root: Path, expected: int = 170) -> None:
    """170 RGB PNGs, each with a same-size mask `<name>_mask.png` holding ids 0..N."""
    pairs = pennfudan_pairs(root)
    if len(pairs) != expected:
        raise SfaeError(f"{root / 'PNGImages'}: expected {expected} PNG images, found {len(pairs)}")
    for _, image_path, mask_path in pairs:  # name a missing mask before counting the masks
        if not mask_path.is_file():
            raise SfaeError(f"{mask_path}: missing mask for image {image_path.name}")
    masks = sorted((root / "PedMasks").glob("*_mask.png"))
    if len(masks) != expected:
        raise SfaeError(f"{root / 'PedMasks'}: expected {expected} masks, found {len(masks)}")
    for _, image_path, mask_path in tqdm(pairs, desc="verify Penn-Fudan", unit="image"):
        (width, height), mask = open_image(image_path).size, read_mask(mask_path)
        if mask.shape != (height, width):
            size = f"{mask.shape[1]}x{mask.shape[0]}"
            raise SfaeError(f"{mask_path}: mask is {size} but its image is {width}x{height}")
        ids = np.unique(mask)
        if ids[0] != 0 or not np.array_equal(ids, np.arange(ids[-1] + 1)):
            raise SfaeError(f"{mask_path}: mask values must be 0..N, got {ids.tolist()}")


def mall_frame_path(root: Path, number: int) -> Path:
    return root / "frames" / f"seq_{number:06d}.jpg"


def _load_mat(path: Path, what: str, read: Callable):
    if not path.is_file():  # loadmat reports a missing file as a vague OSError
        raise SfaeError(f"{path}: file not found")
    try:
        return read(scipy.io.loadmat(path))
    except Exception as error:
        raise SfaeError(f"{path}: not a readable {what} ({error!r})") from error


def load_mall_annotations(root: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-frame head points (N x 2, x and y in pixels) and counts."""
    path = root / "mall_gt.mat"

    def read(gt):
        counts = np.asarray(gt["count"]).ravel().astype(np.int64)
        heads = [np.asarray(cell["loc"][0, 0], dtype=np.float64) for cell in gt["frame"].ravel()]
        return heads, counts

    heads, counts = _load_mat(path, "Mall ground-truth file", read)
    if len(heads) != len(counts):
        raise SfaeError(f"{path}: {len(heads)} frames of head points but {len(counts)} counts")
    for index, (points, count) in enumerate(zip(heads, counts, strict=True)):
        if points.shape != (count, 2):
            raise SfaeError(
                f"{path}: frame {index + 1} has {points.shape} head points for count {count}"
            )
    return heads, counts


def load_mall_geometry(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The region-of-interest mask (uint8) and the perspective map (float), both 480x640."""
    path = root / "perspective_roi.mat"

    def read(mat):
        roi = np.asarray(mat["roi"]["mask"][0, 0]).astype(np.uint8)
        return roi, np.asarray(mat["pMapN"], dtype=np.float64)

    roi, perspective = _load_mat(path, "ROI/perspective file", read)
    if roi.shape != (shape := MALL_FRAME_SIZE[::-1]) or perspective.shape != shape:
        shapes = f"ROI {roi.shape} and perspective {perspective.shape}"
        raise SfaeError(f"{path}: {shapes} must be {shape}")
    return roi, perspective


def verify_mall(root: Path, expected: int = MALL_FRAMES) -> None:
    """Frames seq_000001..seq_002000 decode as 640x480; annotations and geometry load."""
    for number in tqdm(range(1, expected + 1), desc="verify Mall", unit="frame"):
        path = mall_frame_path(root, number)
        if not path.is_file():
            raise SfaeError(f"{path}: missing frame {number} of {expected}")
        if (size := open_image(path).size) != MALL_FRAME_SIZE:
            raise SfaeError(f"{path}: frame is {size[0]}x{size[1]}, expected 640x480")
    heads, _ = load_mall_annotations(root)
    if len(heads) < expected:
        raise SfaeError(f"{root / 'mall_gt.mat'}: {len(heads)} annotated frames, need {expected}")
    load_mall_geometry(root)


PENNFUDAN_URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"
MALL_URL = "http://personal.ie.cuhk.edu.hk/~ccloy/files/datasets/mall_dataset.zip"
PENNFUDAN = Dataset(
    "pennfudan", "PennFudanPed.zip", PENNFUDAN_URL, "PennFudanPed", verify_pennfudan
)
MALL = Dataset("mall", "mall_dataset.zip", MALL_URL, "mall_dataset", verify_mall)
DATASETS = {dataset.name: dataset for dataset in (PENNFUDAN, MALL)}
