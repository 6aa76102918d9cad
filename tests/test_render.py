"""render: overlay maths, and the MP4, GIF and strip read back with independent decoders."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image, ImageSequence

from sfae.errors import SfaeError
from sfae.inference.render import colormap_code, overlay, render_videos

FRAME_COUNT = 6
FRAME_WIDTH, FRAME_HEIGHT = 64, 48
GIF_WIDTH = 32
GIF_FRAME_STEP = 4
STRIP_FRAMES = 3
FPS = 10


def write_frames(folder: Path, grey_levels: list[int]) -> list[Path]:
    """One flat grey JPEG per level; JPEG keeps flat areas almost exact."""
    paths = []
    for number, level in enumerate(grey_levels, start=1):
        path = folder / f"seq_{number:06d}.jpg"
        Image.new("RGB", (FRAME_WIDTH, FRAME_HEIGHT), (level, level, level)).save(path)
        paths.append(path)
    return paths


def render(tmp_path: Path, frame_paths: list[Path], probabilities: np.ndarray, **overrides):
    outputs = (tmp_path / "overlay.mp4", tmp_path / "overlay.gif", tmp_path / "strip.png")
    settings = dict(
        fps=FPS,
        alpha=0.45,
        colormap="jet",
        gif_width=GIF_WIDTH,
        gif_frame_step=GIF_FRAME_STEP,
        strip_frames=STRIP_FRAMES,
    )
    # A namespace, not a RenderConfig: that would refuse a bad colour map before render does.
    render_videos(frame_paths, probabilities, outputs, SimpleNamespace(**settings | overrides))
    return outputs


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[Path, Path, Path]:
    # Distinct frames, because Pillow merges identical consecutive GIF frames into one.
    frame_paths = write_frames(tmp_path, [40 * i for i in range(FRAME_COUNT)])
    probabilities = np.random.default_rng(0).random((FRAME_COUNT, 8, 8), dtype=np.float32)
    return render(tmp_path, frame_paths, probabilities)


def decoded_mp4_frames(path: Path) -> tuple[int, list[np.ndarray]]:
    """(frame count the container reports, frames decoded until the stream runs out)."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return reported, frames


def test_mp4_has_every_frame_at_full_size(rendered):
    reported, frames = decoded_mp4_frames(rendered[0])
    assert reported == FRAME_COUNT
    assert len(frames) == FRAME_COUNT
    assert all(frame.shape == (FRAME_HEIGHT, FRAME_WIDTH, 3) for frame in frames)


def test_gif_keeps_every_step_th_frame_at_gif_width_and_loops(rendered):
    gif_path = rendered[1]
    expected_frames = math.ceil(FRAME_COUNT / GIF_FRAME_STEP)
    expected_height = round(FRAME_HEIGHT * GIF_WIDTH / FRAME_WIDTH)
    assert iio.imread(gif_path, index=None).shape[:3] == (
        expected_frames,
        expected_height,
        GIF_WIDTH,
    )
    with Image.open(gif_path) as gif:
        assert gif.info["loop"] == 0
        frames = list(ImageSequence.Iterator(gif))
        assert len(frames) == expected_frames
        assert [frame.info["duration"] for frame in frames] == [
            1000 * GIF_FRAME_STEP / FPS
        ] * expected_frames


def test_strip_places_frames_side_by_side_at_gif_width(rendered):
    with Image.open(rendered[2]) as strip:
        assert strip.format == "PNG"
        assert strip.size == (
            STRIP_FRAMES * GIF_WIDTH,
            round(FRAME_HEIGHT * GIF_WIDTH / FRAME_WIDTH),
        )


def test_frames_are_used_in_the_given_order(tmp_path):
    levels = [40 * i for i in range(FRAME_COUNT)]
    frame_paths = write_frames(tmp_path, levels)
    nothing = np.zeros((FRAME_COUNT, 8, 8), dtype=np.float32)

    _, frames = decoded_mp4_frames(render(tmp_path, frame_paths, nothing)[0])
    brightness = [frame.mean() for frame in frames]
    assert brightness == sorted(brightness)
    assert brightness == pytest.approx(levels, abs=4)

    _, frames = decoded_mp4_frames(render(tmp_path, frame_paths[::-1], nothing)[0])
    assert [frame.mean() for frame in frames] == pytest.approx(levels[::-1], abs=4)


def test_strip_takes_evenly_spaced_frames_first_to_last(tmp_path):
    levels = [40 * i for i in range(FRAME_COUNT)]
    frame_paths = write_frames(tmp_path, levels)
    nothing = np.zeros((FRAME_COUNT, 8, 8), dtype=np.float32)
    strip = np.asarray(Image.open(render(tmp_path, frame_paths, nothing)[2]))
    tiles = np.split(strip, STRIP_FRAMES, axis=1)
    # linspace(0, 5, 3) rounds to frames 0, 2 (2.5 rounds to even) and 5.
    assert [tile.mean() for tile in tiles] == pytest.approx([0, 80, 200], abs=2)


def test_overlay_with_zero_probability_leaves_the_frame_unchanged():
    frame = np.random.default_rng(1).integers(0, 256, (FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
    nothing = np.zeros((8, 8), dtype=np.float32)
    np.testing.assert_array_equal(overlay(frame, nothing, 0.45, "jet"), frame)


@pytest.mark.parametrize("colormap", ["jet", "viridis", "inferno"])
def test_overlay_with_full_probability_and_opacity_is_the_colour_map_colour(colormap):
    frame = np.random.default_rng(2).integers(0, 256, (FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
    certain = np.ones((8, 8), dtype=np.float32)
    top_bgr = cv2.applyColorMap(np.full((1, 1), 255, np.uint8), colormap_code(colormap))[0, 0]
    expected = np.broadcast_to(top_bgr[::-1], frame.shape)
    np.testing.assert_array_equal(overlay(frame, certain, 1.0, colormap), expected)


def test_overlay_weights_the_colour_by_alpha_times_probability():
    frame = np.full((4, 4, 3), 100, np.uint8)
    half = np.full((2, 2), 0.5, dtype=np.float32)
    colour = cv2.applyColorMap(np.full((1, 1), 128, np.uint8), cv2.COLORMAP_JET)[0, 0, ::-1]
    weight = 0.4 * 0.5
    expected = np.round(100 * (1 - weight) + colour.astype(np.float64) * weight)
    np.testing.assert_allclose(overlay(frame, half, 0.4, "jet")[0, 0], expected, atol=1)


def test_colormap_code_knows_common_names():
    assert colormap_code("jet") == cv2.COLORMAP_JET
    assert colormap_code("Viridis") == cv2.COLORMAP_VIRIDIS
    assert colormap_code("inferno") == cv2.COLORMAP_INFERNO


def test_unknown_colormap_is_a_user_error_listing_valid_names():
    with pytest.raises(SfaeError, match="no_such_map.*jet.*viridis"):
        colormap_code("no_such_map")


def test_unknown_colormap_in_render_is_a_user_error(tmp_path):
    frame_paths = write_frames(tmp_path, [10, 20])
    with pytest.raises(SfaeError, match="unknown colour map"):
        render(tmp_path, frame_paths, np.zeros((2, 8, 8), np.float32), colormap="nope")


def test_mismatched_frame_and_probability_counts_are_a_user_error(tmp_path):
    frame_paths = write_frames(tmp_path, [10, 20, 30])
    with pytest.raises(SfaeError, match="3 frames but 2 probability maps"):
        render(tmp_path, frame_paths, np.zeros((2, 8, 8), np.float32))


def test_frames_of_different_sizes_are_a_user_error(tmp_path):
    frame_paths = write_frames(tmp_path, [10, 20])
    Image.new("RGB", (FRAME_WIDTH * 2, FRAME_HEIGHT)).save(frame_paths[1])
    with pytest.raises(SfaeError, match=frame_paths[1].name):
        render(tmp_path, frame_paths, np.zeros((2, 8, 8), np.float32))


def test_a_video_with_missing_frames_is_an_error(tmp_path):
    from sfae.inference.render import check_video, open_mp4_writer

    path = tmp_path / "short.mp4"
    writer = open_mp4_writer(path, 10, 32, 24)
    for _ in range(3):
        writer.write(np.zeros((24, 32, 3), np.uint8))
    writer.release()
    check_video(path, 3)
    with pytest.raises(SfaeError, match="wrote 3 of 4 frames"):
        check_video(path, 4)


def test_the_configs_colour_maps_are_exactly_opencvs() -> None:
    """params.yaml's colour map is checked against a list in sfae.config (no OpenCV there):
    it must name what this OpenCV has, no more, no less."""
    from sfae.config import COLORMAPS

    installed = {n.removeprefix("COLORMAP_").lower() for n in dir(cv2) if n.startswith("COLORMAP_")}
    assert set(COLORMAPS) == installed
    for name in COLORMAPS:
        assert colormap_code(name) == getattr(cv2, f"COLORMAP_{name.upper()}")
