"""Preparing arrays: the split, resizing, the Penn-Fudan and Mall arrays, the stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml
from PIL import Image

from sfae.data.image_io import read_rgb, resize_image, resize_mask
from sfae.data.prepare import (
    hold_out,
    prepare_mall,
    prepare_pennfudan,
    prepare_unlabeled,
    save_arrays,
    split_names,
    split_record,
)
from sfae.data.prepared import load_arrays, load_mall, load_pennfudan, load_unlabeled
from sfae.errors import SfaeError

# ---------------------------------------------------------------- split_names

NAMES = [f"FudanPed{i:05d}" for i in range(1, 75)] + [f"PennPed{i:05d}" for i in range(1, 97)]


def test_split_is_deterministic_for_the_seed() -> None:
    assert split_names(NAMES, 85, 6278) == split_names(list(NAMES), 85, 6278)
    assert split_names(NAMES, 85, 6278) != split_names(NAMES, 85, 6279)


@pytest.mark.parametrize("train_count", [1, 85, 169])
def test_split_is_disjoint_and_covers_all(train_count: int) -> None:
    train, test = split_names(NAMES, train_count, 6278)
    assert len(train) == train_count and len(test) == len(NAMES) - train_count
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(NAMES)


def test_split_does_not_depend_on_the_order_of_names() -> None:
    shuffled = list(NAMES)
    np.random.default_rng(3).shuffle(shuffled)
    assert shuffled != NAMES
    assert split_names(shuffled, 85, 6278) == split_names(NAMES, 85, 6278)
    assert split_names(list(reversed(NAMES)), 85, 6278) == split_names(NAMES, 85, 6278)


def test_split_mixes_the_two_sources() -> None:
    """A seeded shuffle, not the sorted order: both halves hold Fudan and Penn images."""
    train, test = split_names(NAMES, 85, 6278)
    for half in (train, test):
        assert {name[:4] for name in half} == {"Fuda", "Penn"}
    assert train != sorted(NAMES)[:85]


@pytest.mark.parametrize("train_count", [0, -1, 170, 171])
def test_split_must_leave_images_in_both_halves(train_count: int) -> None:
    with pytest.raises(SfaeError, match=f"train_count {train_count}"):
        split_names(NAMES, train_count, 6278)


# ---------------------------------------------------------------- resizing


def test_resize_mask_keeps_a_mask_binary() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((311, 253)) > 0.5
    resized = resize_mask(mask, (96, 96))
    assert resized.shape == (96, 96) and resized.dtype == np.uint8
    assert set(np.unique(resized)) <= {0, 1}
    assert set(np.unique(resize_mask(np.ones((50, 70), bool), (16, 16)))) == {1}
    assert set(np.unique(resize_mask(np.zeros((50, 70), bool), (16, 16)))) == {0}


def test_resize_mask_thresholds_the_covered_fraction() -> None:
    """Each output pixel of a 4x downscale covers a 4x4 block: 1 when at least half is set."""
    mask = np.zeros((8, 8), bool)
    mask[0:4, 0:4] = True  # all of block (0, 0)
    mask[0:2, 4:8] = True  # half of block (0, 1)
    mask[4:5, 0:4] = True  # a quarter of block (1, 0)
    np.testing.assert_array_equal(resize_mask(mask, (2, 2)), [[1, 1], [0, 0]])


def test_resize_mask_takes_width_then_height() -> None:
    mask = np.zeros((40, 20), bool)
    mask[:20] = True  # top half
    resized = resize_mask(mask, (10, 8))
    assert resized.shape == (8, 10)
    np.testing.assert_array_equal(resized[:4], 1)
    np.testing.assert_array_equal(resized[4:], 0)


def test_resize_image_gives_float32_in_unit_range() -> None:
    image = np.zeros((30, 60, 3), np.uint8)
    image[..., 0] = 255
    image[:, 30:, 2] = 51
    resized = resize_image(image, (16, 8))
    assert resized.shape == (8, 16, 3) and resized.dtype == np.float32
    np.testing.assert_allclose(resized[..., 0], 1.0)
    np.testing.assert_allclose(resized[:, :8, 2], 0.0)
    np.testing.assert_allclose(resized[:, 8:, 2], 0.2, atol=1e-6)


# ---------------------------------------------------------------- prepare_pennfudan

# (name, width, height, colour): one colour per image, so each image is recognisable.
RAW = [
    ("FudanPed00001", 64, 32, (255, 0, 0)),
    ("FudanPed00002", 48, 48, (0, 255, 0)),
    ("PennPed00001", 32, 64, (0, 0, 255)),
    ("PennPed00002", 40, 40, (255, 255, 255)),
]


def write_raw_pennfudan(parent: Path) -> Path:
    """Images of one colour; masks whose instances (ids 1, 2) cover the top half."""
    root = parent / "PennFudanPed"
    (root / "PNGImages").mkdir(parents=True)
    (root / "PedMasks").mkdir()
    for name, width, height, colour in RAW:
        Image.fromarray(np.full((height, width, 3), colour, np.uint8)).save(
            root / "PNGImages" / f"{name}.png"
        )
        mask = np.zeros((height, width), np.uint8)
        mask[: height // 2, : width // 2] = 1
        mask[: height // 2, width // 2 :] = 2
        Image.fromarray(mask, mode="L").save(root / "PedMasks" / f"{name}_mask.png")
    return root


def test_prepare_pennfudan_on_a_tiny_dataset(tmp_path: Path) -> None:
    arrays = prepare_pennfudan(write_raw_pennfudan(tmp_path), 16, 3, 7)
    assert arrays["train_images"].shape == (3, 16, 16, 3)
    assert arrays["test_images"].shape == (1, 16, 16, 3)
    assert arrays["train_masks"].shape == (3, 16, 16)
    assert arrays["test_masks"].shape == (1, 16, 16)
    names = list(arrays["train_names"]) + list(arrays["test_names"])
    assert sorted(names) == sorted(name for name, *_ in RAW)
    assert (list(arrays["train_names"]), list(arrays["test_names"])) == split_names(names, 3, 7)
    expected_mask = np.zeros((16, 16), np.uint8)
    expected_mask[:8] = 1  # instance ids 1 and 2 are both foreground
    colours = {name: colour for name, *_, colour in RAW}
    for split in ("train", "test"):
        images, masks = arrays[f"{split}_images"], arrays[f"{split}_masks"]
        assert images.dtype == np.float32 and masks.dtype == np.uint8
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert set(np.unique(masks)) <= {0, 1}
        for name, image, mask in zip(arrays[f"{split}_names"], images, masks, strict=True):
            np.testing.assert_allclose(image, np.broadcast_to(colours[name], (16, 16, 3)) / 255)
            np.testing.assert_array_equal(mask, expected_mask)


def test_hold_out_takes_val_count_training_names_and_keeps_the_others_in_order() -> None:
    train, _ = split_names(NAMES, 85, 6278)
    fit, val = hold_out(train, 17, 6278)
    assert len(val) == 17 and len(fit) == 68
    assert sorted(fit + val) == sorted(train)
    assert fit == [name for name in train if name not in val]  # training order unchanged
    assert hold_out(train, 17, 6278) == (fit, val)
    assert hold_out(train, 17, 6279)[1] != val
    assert hold_out(train, 0, 6278) == (train, [])


def test_hold_out_must_leave_images_to_train_on() -> None:
    with pytest.raises(SfaeError, match="val_count 3 must leave images"):
        hold_out(["a", "b", "c"], 3, 1)


def test_prepare_pennfudan_holds_out_validation_images_and_never_touches_test(
    tmp_path: Path,
) -> None:
    raw = write_raw_pennfudan(tmp_path)
    without = prepare_pennfudan(raw, 16, 3, 7)
    held = prepare_pennfudan(raw, 16, 3, 7, val_count=1)
    assert "val_names" not in without  # val_count 0: the file is as it was before
    assert list(held["test_names"]) == list(without["test_names"])
    assert len(held["val_names"]) == 1 and len(held["train_names"]) == 2
    assert sorted([*held["train_names"], *held["val_names"]]) == sorted(without["train_names"])
    assert held["val_images"].shape == (1, 16, 16, 3) and held["val_masks"].shape == (1, 16, 16)
    record = json.loads(split_record(held))
    assert record == {
        "train": list(held["train_names"]),
        "val": list(held["val_names"]),
        "test": list(held["test_names"]),
    }
    assert json.loads(split_record(without))["val"] == []


def test_loaded_splits_without_validation_images_have_empty_val_arrays(tmp_path: Path) -> None:
    path = tmp_path / "pennfudan.npz"
    save_arrays(path, prepare_pennfudan(write_raw_pennfudan(tmp_path), 16, 3, 7))
    data = load_pennfudan(path)
    assert data.val_names == [] and data.val_images.shape == (0, 16, 16, 3)
    assert data.val_masks.shape == (0, 16, 16, 1)


def test_loading_other_arrays_as_penn_fudan_names_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "pennfudan.npz"
    save_arrays(path, {"frames": np.zeros((2, 4, 4, 3), np.float32)})
    with pytest.raises(SfaeError, match="not prepared Penn-Fudan arrays.*train_images"):
        load_pennfudan(path)


def test_loading_other_arrays_as_mall_names_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "mall.npz"
    save_arrays(path, prepare_pennfudan(write_raw_pennfudan(tmp_path), 16, 3, 7))
    with pytest.raises(SfaeError, match="not prepared Mall arrays.*head_offsets"):
        load_mall(path)


def instance_ids(height: int, width: int) -> np.ndarray:
    """Ids 1 and 2 in blocks that cut across output pixels, thin 1-px stripes of id 3."""
    ids = np.zeros((height, width), np.uint8)
    ids[1:, 1 : width // 4 + 1] = 1
    ids[height // 3 :, width // 4 + 1 : width // 2 + 1] = 2
    ids[: height - 3, width // 2 + 2 :: 3] = 3  # a third of each column trio: background
    return ids


def test_prepare_pennfudan_binarises_the_instance_ids_before_resizing(tmp_path: Path) -> None:
    """A pixel is foreground when at least half of its area holds a person, whatever the ids:
    averaging the ids first would count id 3 on a third of the area as 3 / 3 = foreground."""
    root = write_raw_pennfudan(tmp_path)
    for name, width, height, _ in RAW:
        Image.fromarray(instance_ids(height, width), mode="L").save(
            root / "PedMasks" / f"{name}_mask.png"
        )
    arrays = prepare_pennfudan(root, 16, 3, 7)
    masks = dict(zip(arrays["train_names"], arrays["train_masks"], strict=True))
    masks.update(zip(arrays["test_names"], arrays["test_masks"], strict=True))
    for name, width, height, _ in RAW:
        ids = instance_ids(height, width)
        expected = resize_mask(ids > 0, (16, 16))
        # The data tell the two orders apart: resizing the ids first gives more foreground.
        assert (resize_mask(ids, (16, 16)) != expected).any()
        assert (resize_mask(ids.astype(np.float32) / 3, (16, 16)) != expected).any()
        assert 0 < expected.sum() < expected.size
        np.testing.assert_array_equal(masks[name], expected, err_msg=name)


def test_prepare_pennfudan_refuses_a_mask_of_another_size(tmp_path: Path) -> None:
    root = write_raw_pennfudan(tmp_path)
    bad = root / "PedMasks" / "PennPed00001_mask.png"
    Image.fromarray(np.zeros((64, 31), np.uint8), mode="L").save(bad)
    with pytest.raises(SfaeError, match="mask size differs from its image PennPed00001.png") as e:
        prepare_pennfudan(root, 16, 2, 7)
    assert str(e.value).startswith(f"{bad}: ")


def test_prepare_pennfudan_names_an_unreadable_image(tmp_path: Path) -> None:
    root = write_raw_pennfudan(tmp_path)
    bad = root / "PNGImages" / "FudanPed00002.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(SfaeError, match="cannot decode image") as caught:
        prepare_pennfudan(root, 16, 2, 7)
    assert str(caught.value).startswith(f"{bad}: ")


def test_prepare_pennfudan_without_images_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SfaeError, match="no PNG images") as caught:
        prepare_pennfudan(tmp_path / "PennFudanPed", 16, 2, 7)
    assert str(tmp_path / "PennFudanPed" / "PNGImages") in str(caught.value)


# ---------------------------------------------------------------- prepare_mall

HEADS = [np.array([[0.0, 0.0], [639.0, 479.0]]), np.array([[320.0, 240.0]]), np.array([[1.0, 2.0]])]


def write_raw_mall(parent: Path) -> Path:
    root = parent / "mall_dataset"
    (root / "frames").mkdir(parents=True)
    for number in range(1, len(HEADS) + 1):
        frame = np.full((480, 640, 3), 60 * number, np.uint8)
        Image.fromarray(frame).save(root / "frames" / f"seq_{number:06d}.jpg", quality=95)
    cells = np.empty((1, len(HEADS)), dtype=object)
    for index, points in enumerate(HEADS):
        cells[0, index] = {"loc": points}
    counts = np.array([[len(points)] for points in HEADS], dtype=np.uint8)
    scipy.io.savemat(root / "mall_gt.mat", {"count": counts, "frame": cells})
    roi = np.zeros((480, 640), np.uint8)
    roi[240:] = 1
    perspective = np.full((480, 640), 2.5)
    scipy.io.savemat(root / "perspective_roi.mat", {"roi": {"mask": roi}, "pMapN": perspective})
    return root


def test_prepare_mall_on_a_tiny_dataset(tmp_path: Path) -> None:
    arrays = prepare_mall(write_raw_mall(tmp_path), 16, 2)
    assert arrays["frames"].shape == (2, 16, 16, 3) and arrays["frames"].dtype == np.float32
    np.testing.assert_allclose(arrays["frames"][1], 120 / 255, atol=2 / 255)  # JPEG's error
    assert arrays["frame_numbers"].tolist() == [1, 2]
    assert arrays["counts"].tolist() == [2, 1]
    assert arrays["head_offsets"].tolist() == [0, 2, 3]
    np.testing.assert_allclose(
        arrays["head_points"], [[0, 0], [639 * 16 / 640, 479 * 16 / 480], [8, 8]], rtol=1e-6
    )
    expected_roi = np.zeros((16, 16), np.uint8)
    expected_roi[8:] = 1
    np.testing.assert_array_equal(arrays["roi"], expected_roi)
    np.testing.assert_allclose(arrays["perspective"], 2.5)
    assert arrays["frame_size"].tolist() == [640, 480]


def test_the_unlabeled_frames_are_the_last_ones_exactly(tmp_path: Path) -> None:
    """Stored as uint8 (a quarter of the bytes), they load as exactly the float32 frames
    resize_image gives, and a run takes the last N."""
    root = write_raw_mall(tmp_path)
    arrays = prepare_unlabeled(root, 16, count=2, total=3)
    assert arrays["frames"].dtype == np.uint8 and arrays["frame_numbers"].tolist() == [2, 3]
    # The last `count`, whatever comes before them: one of three frames is the third.
    assert prepare_unlabeled(root, 16, count=1, total=3)["frame_numbers"].tolist() == [3]
    path = tmp_path / "unlabeled.npz"
    save_arrays(path, arrays)
    last = load_unlabeled(path, 1)
    expected = resize_image(read_rgb(root / "frames" / "seq_000003.jpg"), (16, 16))
    assert last.dtype == np.float32 and np.array_equal(last[0], expected)
    assert load_unlabeled(path, 2).shape == (2, 16, 16, 3)
    with pytest.raises(SfaeError, match="holds 2 unlabeled frames, 3 asked for"):
        load_unlabeled(path, 3)


def test_prepare_mall_refuses_more_frames_than_annotated(tmp_path: Path) -> None:
    root = write_raw_mall(tmp_path)
    with pytest.raises(SfaeError, match="asked for 4 frames, it annotates 3") as caught:
        prepare_mall(root, 16, 4)
    assert str(root / "mall_gt.mat") in str(caught.value)


def test_prepare_mall_without_the_dataset_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SfaeError, match="file not found") as caught:
        prepare_mall(tmp_path / "mall_dataset", 16, 2)
    assert str(tmp_path / "mall_dataset" / "mall_gt.mat") in str(caught.value)


def test_mall_arrays_round_trip(tmp_path: Path) -> None:
    arrays = prepare_mall(write_raw_mall(tmp_path), 16, 3)
    save_arrays(tmp_path / "mall.npz", arrays)
    mall = load_mall(tmp_path / "mall.npz")
    assert [len(points) for points in mall.heads] == mall.counts.tolist() == [2, 1, 1]
    np.testing.assert_allclose(mall.heads[2], [[1 * 16 / 640, 2 * 16 / 480]], rtol=1e-6)
    assert mall.frame_size == (640, 480)
    np.testing.assert_array_equal(mall.frames, arrays["frames"])


def test_load_arrays_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SfaeError, match="run `dvc repro`") as caught:
        load_arrays(tmp_path / "missing.npz")
    assert str(tmp_path / "missing.npz") in str(caught.value)


def _truncate(data: bytes) -> bytes:
    return data[:300]


def _flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 8]) + data[middle + 8 :]


def _text(data: bytes) -> bytes:
    return b"not arrays at all\n"


@pytest.mark.parametrize("damage", [_truncate, _flip_middle, _text])
def test_load_arrays_names_a_broken_file(tmp_path: Path, damage) -> None:
    broken = tmp_path / "broken.npz"
    save_arrays(broken, {"a": np.arange(1000), "b": np.ones((10, 10))})
    broken.write_bytes(damage(broken.read_bytes()))
    with pytest.raises(SfaeError, match="unreadable prepared arrays") as caught:
        load_arrays(broken)
    assert str(caught.value).startswith(f"{broken}: ")


def test_split_record_lists_the_names(tmp_path: Path) -> None:
    arrays = prepare_pennfudan(write_raw_pennfudan(tmp_path), 16, 2, 7)
    record = json.loads(split_record(arrays))
    assert record == {
        "train": arrays["train_names"].tolist(),
        "val": [],
        "test": arrays["test_names"].tolist(),
    }


# ---------------------------------------------------------------- the stage


def small_params(repo_root: Path, folder: Path) -> None:
    document = yaml.safe_load((repo_root / "params.yaml").read_text())
    document["data"].update(image_size=16, train_count=3, split_seed=7)
    document["mall"]["frames"] = 2
    (folder / "params.yaml").write_text(yaml.safe_dump(document))


def run_preprocess(repo_root: Path, project: Path, dataset: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(repo_root / "stages" / "preprocess.py"), dataset],
        cwd=project,
        env={**os.environ, "SFAE_DATA_MIRROR": str(project)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_preprocess_stage_writes_both_outputs(repo_root: Path, tmp_path: Path) -> None:
    small_params(repo_root, tmp_path)
    write_raw_pennfudan(tmp_path / "data" / "raw")
    write_raw_mall(tmp_path / "data" / "raw")
    for dataset in ("pennfudan", "mall"):
        result = run_preprocess(repo_root, tmp_path, dataset)
        assert result.returncode == 0, result.stderr
    prepared = load_arrays(tmp_path / "data" / "prepared" / "pennfudan.npz")
    assert prepared["train_images"].shape == (3, 16, 16, 3)
    assert prepared["test_masks"].shape == (1, 16, 16)
    split = json.loads((tmp_path / "metrics" / "split.json").read_text())
    assert split == {
        "train": prepared["train_names"].tolist(),
        "val": [],
        "test": prepared["test_names"].tolist(),
    }
    assert load_arrays(tmp_path / "data" / "prepared" / "mall.npz")["frames"].shape == (
        2,
        16,
        16,
        3,
    )
    leftovers = [p for p in (tmp_path / "data" / "prepared").iterdir() if p.suffix != ".npz"]
    assert leftovers == [] and list((tmp_path / "metrics").iterdir()) == [
        tmp_path / "metrics" / "split.json"
    ]


def test_preprocess_stage_without_raw_data_fails_cleanly(repo_root: Path, tmp_path: Path):
    small_params(repo_root, tmp_path)
    line = error_line(run_preprocess(repo_root, tmp_path, "pennfudan"))
    assert str(tmp_path / "data" / "raw" / "PennFudanPed" / "PNGImages") in line
    line = error_line(run_preprocess(repo_root, tmp_path, "mall"))
    assert str(tmp_path / "data" / "raw" / "mall_dataset" / "mall_gt.mat") in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_preprocess_stage_with_a_broken_image_keeps_old_outputs(repo_root: Path, tmp_path: Path):
    """A failed run neither deletes nor half-writes the previous outputs."""
    small_params(repo_root, tmp_path)
    root = write_raw_pennfudan(tmp_path / "data" / "raw")
    assert run_preprocess(repo_root, tmp_path, "pennfudan").returncode == 0
    prepared = tmp_path / "data" / "prepared" / "pennfudan.npz"
    split = tmp_path / "metrics" / "split.json"
    before = prepared.read_bytes(), split.read_bytes()
    bad = root / "PNGImages" / "PennPed00001.png"
    bad.write_bytes(bad.read_bytes()[:60])
    line = error_line(run_preprocess(repo_root, tmp_path, "pennfudan"))
    assert line.startswith(f"error: {bad}: cannot decode image")
    assert (prepared.read_bytes(), split.read_bytes()) == before
    assert sorted(p.name for p in prepared.parent.iterdir()) == ["pennfudan.npz"]
    assert sorted(p.name for p in split.parent.iterdir()) == ["split.json"]
