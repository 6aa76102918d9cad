"""The one module that reads, resizes and writes images and masks."""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from sfae.errors import SfaeError


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()  # decode fully, so truncated files fail here and not later
    except FileNotFoundError as error:
        raise SfaeError(f"{path}: file not found") from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise SfaeError(f"{path}: cannot decode image ({error})") from error
    return image


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, decoding it fully to prove it is intact."""
    return _open(path).size


def read_rgb(path: Path) -> np.ndarray:
    """An image as uint8 (height, width, 3) RGB."""
    return np.asarray(_open(path).convert("RGB"))


def read_mask(path: Path) -> np.ndarray:
    """An instance mask as an integer (height, width) array of ids, 0 = background."""
    image = _open(path)
    if image.mode not in ("L", "P", "I", "I;16", "1"):
        raise SfaeError(f"{path}: a mask must be a single-channel image, got mode {image.mode}")
    return np.asarray(image).astype(np.int32)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (height, width, channels) uint8 to size=(width, height) as float32 in [0, 1]."""
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return resized.astype(np.float32) / 255.0


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a binary mask to size=(width, height): area-average, then threshold at 1/2."""
    return (resize_map(mask, size) >= 0.5).astype(np.uint8)


def resize_probability(probability: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A probability map resized to size=(width, height) as float32, bilinear (convex weights:
    the values stay in [0, 1]); unchanged when it has that size."""
    probability = np.asarray(probability, dtype=np.float32)
    if probability.shape == (size[1], size[0]):
        return probability
    return cv2.resize(probability, size, interpolation=cv2.INTER_LINEAR)


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a real-valued map (e.g. a perspective map) to size=(width, height)."""
    return cv2.resize(values.astype(np.float32), size, interpolation=cv2.INTER_AREA)


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 RGB or grey image as PNG."""
    Image.fromarray(image).save(path, format="PNG")
