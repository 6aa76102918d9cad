"""Overlay predicted foreground probabilities on video frames and write MP4, GIF and PNG strip."""

from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
from tqdm import tqdm

from sfae.config import COLORMAPS, RenderConfig
from sfae.data.image_io import open_image, read_rgb, resize_probability, write_png
from sfae.errors import SfaeError


def colormap_code(name: str) -> int:
    code = getattr(cv2, f"COLORMAP_{name.upper()}", None) if isinstance(name, str) else None
    if not isinstance(code, int):
        raise SfaeError(f"unknown colour map {name!r}; valid names: {', '.join(COLORMAPS)}")
    return code


def overlay(frame: np.ndarray, probability, alpha: float, colormap: str | int, bgr=False):
    """The colour-mapped probability over a uint8 frame, weighted by alpha * probability."""
    code = colormap if isinstance(colormap, int) else colormap_code(colormap)
    # Clipped: resizing can stray a hair outside [0, 1], and the blend must stay convex.
    upsampled = np.clip(resize_probability(probability, (frame.shape[1], frame.shape[0])), 0, 1)
    levels = cv2.convertScaleAbs(upsampled, alpha=255.0)  # round(255 p) as uint8
    colour = cv2.applyColorMap(levels, code)  # BGR
    if not bgr:
        colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    weight = upsampled * np.float32(alpha)
    # frame * (1 - weight) + colour * weight, rounded, in one pass (numpy's: 7x slower).
    return cv2.blendLinear(frame, colour, 1.0 - weight, weight)


def open_mp4_writer(path: Path, fps: float, width: int, height: int, shown=None):
    """An MP4 writer; its error names `shown` (a staged path's target) or path."""
    fourcc = cv2.VideoWriter.fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(path), fourcc, float(fps), (width, height))
    if not writer.isOpened():
        where = shown or path
        raise SfaeError(f"{where}: cannot open an MP4 video writer (codec mp4v, {width}x{height})")
    return writer


def check_video(path: Path, frames: int) -> None:
    """Count the frames written: OpenCV's writer drops those it cannot write with a warning."""
    capture = cv2.VideoCapture(str(path))
    written = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    if written != frames:
        raise SfaeError(f"{path}: wrote {written} of {frames} frames (disk full or not writable?)")


def render_videos(frame_paths: list[Path], probabilities, outputs, settings: RenderConfig):
    """probabilities[i] over frame_paths[i]: an MP4 of every frame, a GIF of every
    `gif_frame_step`-th and a strip of `strip_frames` evenly spaced frames, at `gif_width`."""
    mp4_path, gif_path, strip_path = outputs
    if len(frame_paths) != probabilities.shape[0]:
        raise SfaeError(
            f"{len(frame_paths)} frames but {probabilities.shape[0]} probability maps; "
            "they must match one to one"
        )
    code = colormap_code(settings.colormap)
    step, width = settings.gif_frame_step, settings.gif_width
    strip = np.linspace(0, len(frame_paths) - 1, settings.strip_frames).round().astype(int)
    strip_wanted = strip.tolist()  # repeats if there are too few frames
    gif_wanted = range(0, len(frame_paths), step)
    small: dict[int, np.ndarray] = {}  # the frames of either, downscaled
    # A video has one frame size, the first frame's: the writer would silently drop others.
    frame_size = open_image(frame_paths[0]).size
    writer = open_mp4_writer(mp4_path, settings.fps, *frame_size)
    try:
        for index, frame_path in enumerate(tqdm(frame_paths, desc="render MP4", unit="frame")):
            frame = read_rgb(frame_path)
            if (size := (frame.shape[1], frame.shape[0])) != frame_size:
                raise SfaeError(
                    f"{frame_path}: frame is {size[0]}x{size[1]} but earlier "
                    f"frames are {frame_size[0]}x{frame_size[1]}"
                )
            overlaid = overlay(frame, probabilities[index], settings.alpha, code)
            writer.write(cv2.cvtColor(overlaid, cv2.COLOR_RGB2BGR))
            if index in gif_wanted or index in strip_wanted:
                height = max(1, round(overlaid.shape[0] * width / overlaid.shape[1]))
                small[index] = cv2.resize(overlaid, (width, height), interpolation=cv2.INTER_AREA)
    finally:
        writer.release()
    check_video(mp4_path, len(frame_paths))
    # In memory: imageio's file writer flushed again when collected (a full disk: a traceback).
    gif = np.stack([small[i] for i in gif_wanted])
    options = dict(plugin="pillow", extension=".gif", duration=1000.0 * step / settings.fps, loop=0)
    gif_path.write_bytes(iio.imwrite("<bytes>", gif, **options))
    write_png(strip_path, np.concatenate([small[i] for i in strip_wanted], axis=1))
