"""End to end on the real data: `dvc repro` of the four data stages in a copy of the repo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from sfae.data.prepared import load_arrays

pytestmark = pytest.mark.slow

DATA_STAGES = ("download_pennfudan", "download_mall", "preprocess_pennfudan", "preprocess_mall")
IMPORT_MARKER = '\n__import__("pathlib").Path(__file__).with_name("imported").touch()\n'


def dvc(root: Path, mirror: Path, *args: str) -> subprocess.CompletedProcess:
    """Run dvc in root with the venv's tools first on PATH (dvc.yaml picks the sources)."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "SFAE_DATA_MIRROR": str(mirror),
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(root.parent / f"{root.name}-dvc-site-cache"),
    }
    result = subprocess.run(
        [str(Path(bin_dir) / "dvc"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def ran_stages(result: subprocess.CompletedProcess) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", result.stdout + result.stderr)


@dataclass
class Reproduced:
    root: Path
    mirror: Path
    output: str
    stages_run: list[str]
    pennfudan: dict[str, np.ndarray]
    mall: dict[str, np.ndarray]
    split: dict[str, list[str]]


@pytest.fixture(scope="module")
def reproduced(make_repo_copy, mirror: Path) -> Reproduced:
    """One `dvc repro` of the data stages; the arrays are read at once, before any test edits."""
    root = make_repo_copy()
    # Tell apart the copy's own package from the installed one (the development checkout).
    package = root / "src" / "sfae" / "__init__.py"
    package.write_text(package.read_text() + IMPORT_MARKER)
    result = dvc(root, mirror, "repro", *DATA_STAGES)
    return Reproduced(
        root=root,
        mirror=mirror,
        output=result.stdout + result.stderr,
        stages_run=ran_stages(result),
        pennfudan=load_arrays(root / "data" / "prepared" / "pennfudan.npz"),
        mall=load_arrays(root / "data" / "prepared" / "mall.npz"),
        split=json.loads((root / "metrics" / "split.json").read_text()),
    )


def test_repro_runs_the_four_data_stages(reproduced: Reproduced) -> None:
    assert sorted(reproduced.stages_run) == sorted(DATA_STAGES), reproduced.output
    raw = reproduced.root / "data" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["PennFudanPed", "mall_dataset"]
    assert len(list((raw / "mall_dataset" / "frames").glob("seq_*.jpg"))) == 2000
    lock = yaml.safe_load((reproduced.root / "dvc.lock").read_text())
    assert set(DATA_STAGES) <= set(lock["stages"])


def test_stages_run_the_sources_of_their_own_checkout(reproduced: Reproduced) -> None:
    # Not the installed package: a queued experiment must run its commit's code even
    # while the workspace it was queued from is being edited.
    assert (reproduced.root / "src" / "sfae" / "imported").is_file()


def test_pennfudan_arrays(reproduced: Reproduced) -> None:
    arrays = reproduced.pennfudan
    for split in ("train", "test"):
        images, masks = arrays[f"{split}_images"], arrays[f"{split}_masks"]
        assert images.shape == (85, 96, 96, 3) and images.dtype == np.float32
        assert masks.shape == (85, 96, 96) and masks.dtype == np.uint8
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert images.max() > 0.9, "images are scaled to [0, 1], not left at [0, 1/255]"
        assert set(np.unique(masks)) == {0, 1}
        assert len(arrays[f"{split}_names"]) == 85
    train, test = set(arrays["train_names"]), set(arrays["test_names"])
    assert not train & test
    all_names = {p.stem for p in (reproduced.root / "data/raw/PennFudanPed/PNGImages").iterdir()}
    assert len(all_names) == 170 and train | test == all_names
    # Every mask has some foreground: each image shows at least one pedestrian.
    for split in ("train", "test"):
        assert (arrays[f"{split}_masks"].reshape(85, -1).sum(axis=1) > 0).all()


def test_split_record_matches_the_arrays(reproduced: Reproduced) -> None:
    assert reproduced.split == {
        "train": reproduced.pennfudan["train_names"].tolist(),
        "val": [],  # data.val_count 0: the 85/85 split of the post
        "test": reproduced.pennfudan["test_names"].tolist(),
    }


@pytest.mark.parametrize("name", ["FudanPed00001", "PennPed00096"])
def test_a_prepared_mask_equals_its_raw_mask_resized(reproduced: Reproduced, name: str) -> None:
    arrays = reproduced.pennfudan
    raw = reproduced.root / "data" / "raw" / "PennFudanPed"
    split = "train" if name in arrays["train_names"] else "test"
    index = arrays[f"{split}_names"].tolist().index(name)
    instances = np.asarray(Image.open(raw / "PedMasks" / f"{name}_mask.png"))
    covered = cv2.resize((instances > 0).astype(np.float32), (96, 96), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(arrays[f"{split}_masks"][index], covered >= 0.5)
    rgb = np.asarray(Image.open(raw / "PNGImages" / f"{name}.png").convert("RGB"))
    expected = cv2.resize(rgb, (96, 96), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    np.testing.assert_allclose(arrays[f"{split}_images"][index], expected, atol=1e-6)


def test_mall_arrays(reproduced: Reproduced) -> None:
    arrays = reproduced.mall
    assert arrays["frames"].shape == (500, 96, 96, 3) and arrays["frames"].dtype == np.float32
    assert arrays["frames"].min() >= 0.0 and arrays["frames"].max() <= 1.0
    assert arrays["frame_numbers"].tolist() == list(range(1, 501))
    counts, offsets = arrays["counts"], arrays["head_offsets"]
    assert counts.shape == (500,) and offsets.shape == (501,)
    assert offsets[0] == 0 and offsets[-1] == len(arrays["head_points"])
    np.testing.assert_array_equal(np.diff(offsets), counts)
    assert counts.min() >= 13 and counts.max() <= 53  # the range SOURCES.md gives
    points = arrays["head_points"]
    assert points.shape[1] == 2
    assert (points >= 0).all() and (points < 96).all()
    assert arrays["roi"].shape == arrays["perspective"].shape == (96, 96)
    assert set(np.unique(arrays["roi"])) == {0, 1}
    assert arrays["frame_size"].tolist() == [640, 480]


def test_repro_is_incremental(reproduced: Reproduced) -> None:
    root, mirror = reproduced.root, reproduced.mirror
    prepared = root / "data" / "prepared"
    started = time.monotonic()
    again = dvc(root, mirror, "repro", *DATA_STAGES)
    assert time.monotonic() - started < 60
    assert ran_stages(again) == [], again.stdout
    assert "Data and pipelines are up to date" in again.stdout

    pennfudan_mtime = (prepared / "pennfudan.npz").stat().st_mtime_ns
    params = root / "params.yaml"
    text = params.read_text()
    assert "  frames: 500 " in text
    params.write_text(text.replace("  frames: 500 ", "  frames: 20 "))
    status = json.loads(dvc(root, mirror, "status", "--json", *DATA_STAGES).stdout)
    assert list(status) == ["preprocess_mall"], status
    changed = dvc(root, mirror, "repro", *DATA_STAGES)
    assert ran_stages(changed) == ["preprocess_mall"], changed.stdout
    assert (prepared / "pennfudan.npz").stat().st_mtime_ns == pennfudan_mtime
    assert load_arrays(prepared / "mall.npz")["frames"].shape == (20, 96, 96, 3)
