"""The one prediction path: images at the network's input size, or of any size (`Segmenter`)."""

import zipfile
from pathlib import Path

import keras
import numpy as np

import sfae.nn.model  # noqa: F401  (registers the custom layers for loading)
from sfae.data.image_io import resize_image, resize_probability
from sfae.errors import SfaeError
from sfae.nn.saving import check_saved


def load_trained(path: Path) -> keras.Model:
    """The trained model at path; a missing, truncated or damaged file is an SfaeError."""
    remedy = "run `dvc repro` to make it again"
    if not zipfile.is_zipfile(check_saved(path)):  # Keras would call it "File not found"
        raise SfaeError(f"{path}: truncated or damaged, not a .keras zip archive; {remedy}")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # Keras seeks in the weights: check every CRC first
        if damaged is None:
            return keras.models.load_model(path)
    except Exception as error:  # zipfile, json, h5py and Keras each raise their own kinds
        detail = " ".join(str(error).split())[:200]
        problem = f"damaged or not a model sfae can load ({type(error).__name__}: {detail})"
        raise SfaeError(f"{path}: {problem}; {remedy}") from error
    raise SfaeError(f"{path}: damaged ({damaged} fails its checksum); {remedy}")


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 100):
    chunks = []
    for start in range(0, len(images), batch_size):
        outputs = model.predict_on_batch(images[start : start + batch_size])
        outputs = outputs[0] if isinstance(outputs, list | tuple) else outputs  # sfae's: mask first
        chunks.append(np.asarray(outputs, dtype=np.float32)[..., 0])
    return np.concatenate(chunks)


def to_mask(probability: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(probability >= threshold, np.uint8(255), np.uint8(0))


class Segmenter:
    """A model checked to be a segmentation model; RGB uint8 images in (resized as prepare.py
    does), maps out at their size."""

    def __init__(self, model: keras.Model, source: str | Path = "model", batch_size=64):
        inputs, outputs = model.inputs or [], model.outputs or []
        shape = tuple(inputs[0].shape) if len(inputs) == 1 else None
        if shape is None or len(shape) != 4 or shape[3] != 3 or not all(shape[1:3]):
            found = [tuple(tensor.shape) for tensor in inputs]
            raise SfaeError(
                f"{source}: not a segmentation model: it takes {found}, not one batch of "
                "fixed-size RGB images (None, height, width, 3)"
            )
        height, width = int(shape[1]), int(shape[2])
        mask = tuple(outputs[0].shape) if outputs else None
        if mask is None or len(mask) != 4 or tuple(mask[1:]) != (height, width, 1):
            raise SfaeError(
                f"{source}: not a segmentation model: its output is {mask}, not a mask "
                f"(None, {height}, {width}, 1) at its input size"
            )
        self.size = (width, height)  # of the network's input, from the model, not params.yaml
        self.model, self.batch_size = model, batch_size

    @classmethod
    def load(cls, path: str | Path, batch_size: int = 64) -> "Segmenter":
        return cls(load_trained(Path(path)), Path(path), batch_size)

    def probabilities(self, frames: list[np.ndarray], bgr=False) -> list[np.ndarray]:
        """One float32 map per image; bgr=True: frames in BGR order, as a video decoder's."""
        for index, frame in enumerate(frames):
            array = isinstance(frame, np.ndarray)
            if not array or frame.dtype != np.uint8 or frame.ndim != 3:
                got = f"{frame.dtype} {frame.shape}" if array else type(frame)
            elif frame.shape[2] != 3 or 0 in frame.shape:
                got = frame.shape
            else:
                continue
            raise SfaeError(f"image {index}: expected uint8 (height, width, 3) RGB, got {got}")
        if len(frames) == 0:
            return []
        order = slice(None, None, -1 if bgr else 1)  # resizing works on each channel alone
        batch = np.stack([resize_image(frame, self.size)[..., order] for frame in frames])
        probabilities = predict_probabilities(self.model, batch, self.batch_size)
        return [
            resize_probability(probability, (frame.shape[1], frame.shape[0]))
            for probability, frame in zip(probabilities, frames, strict=True)
        ]

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        return self.probabilities([rgb])[0]

    def mask(self, rgb: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return to_mask(self.probability(rgb), threshold)
