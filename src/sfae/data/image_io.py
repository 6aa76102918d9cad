"""The one module that reads, resizes and writes images and masks."""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from sfae.errors import SfaeError


def open_image(path: Path) -> Image.Image:
    """The image, decoded fully: a truncated file fails here, not later."""
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError as error:
        raise SfaeError(f"{path}: file not found") from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise SfaeError(f"{path}: cannot decode image ({error})") from error
    return image


def read_rgb(path: Path) -> np.ndarray:
    return np.asarray(open_image(path).convert("RGB"))


def read_mask(path: Path) -> np.ndarray:
    image = open_image(path)
    if image.mode not in ("L", "P", "I", "I;16", "1"):
        raise SfaeError(f"{path}: a mask must be a single-channel image, got mode {image.mode}")
    return np.asarray(image).astype(np.int32)


# Sizes are (width, height), as cv2 takes them.
def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (height, width, channels), area-averaged, as float32 in [0, 1]."""
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(values.astype(np.float32), size, interpolation=cv2.INTER_AREA)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return (resize_map(mask, size) >= 0.5).astype(np.uint8)


def resize_probability(probability: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (it stays in [0, 1]); unchanged at that size."""
    probability = np.asarray(probability, dtype=np.float32)
    if probability.shape == (size[1], size[0]):
        return probability
    return cv2.resize(probability, size, interpolation=cv2.INTER_LINEAR)


def write_png(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path, format="PNG")
