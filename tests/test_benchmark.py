"""The benchmark's three loops do the same math: same losses, epoch by epoch."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from fit_loops import (
    FitRun,
    plain_fit,
    project_fit,
    seconds_per_epoch,
    steps_per_epoch,
    tuned_fit,
)

from sfae.nn.regularisers.registry import load_config

LOOPS = ("plain", "tuned", "project")


@pytest.fixture(scope="module")
def tiny_set():
    rng = np.random.default_rng(3)
    images = rng.random((10, 32, 32, 3), dtype=np.float32)
    masks = np.zeros((10, 32, 32, 1), np.float32)
    masks[:, 8:24, 12:20] = 1.0
    return images, masks


# pure would add seconds, no code path: l2 has no sparse term, sparse_elu no penalty.
@pytest.mark.parametrize("variant", ["l2", "sparse_elu"])
def test_project_loop_and_plain_fits_have_the_same_loss_curve(repo_root, tiny_set, variant):
    config = load_config(repo_root / "params.yaml")
    config = dataclasses.replace(
        config,
        variant=config.variants[variant],
        data=dataclasses.replace(config.data, image_size=32),
    )
    images, masks = tiny_set
    project = project_fit(config, images, masks, epochs=3, shuffle=False)
    assert project.losses[-1] < project.losses[0]
    for plain in (
        plain_fit(config, images, masks, epochs=3, shuffle=False),
        tuned_fit(config, images, masks, epochs=3, shuffle=False),
    ):
        assert isinstance(plain, FitRun) and len(plain.stamps) == 4
        np.testing.assert_allclose(project.losses, plain.losses, rtol=2e-4)
        for ours, theirs in zip(
            project.model.get_weights(), plain.model.get_weights(), strict=True
        ):
            # Adam divides by sqrt(v): a weight whose gradient is near zero moves by up to
            # the learning rate (5e-3) whatever its size, so rounding differences in the
            # summation order show as ~1e-5 there. A different update would be ~1e-3.
            np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)


def test_tuned_fit_runs_a_whole_epoch_per_call(repo_root, tiny_set):
    config = load_config(repo_root / "params.yaml")
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, image_size=32))
    images, masks = tiny_set
    tuned = tuned_fit(config, images, masks, epochs=1, shuffle=False)
    assert tuned.model.steps_per_execution == steps_per_epoch(config, len(images))
    paper = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=5))
    assert steps_per_epoch(paper, 85) == 17
    assert steps_per_epoch(paper, 86) == 18


def test_seconds_per_epoch_is_the_median_after_the_first_epoch():
    # epochs took 5 (tracing), 1, 1.2, 9 (a noisy neighbour) and 1.1 seconds
    assert seconds_per_epoch([0.0, 5.0, 6.0, 7.2, 16.2, 17.3]) == pytest.approx(1.15)
    assert seconds_per_epoch([0.0, 5.0, 6.0]) == pytest.approx(1.0)


def test_benchmark_script_prints_the_speedup_last(repo_root, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(repo_root / "bench" / "train_speed.py"),
            "--epochs",
            "3",
            "--synthetic",
            "--set=data.image_size=32",  # what is printed, not how fast: small images do
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("speedup: ")
    assert float(lines[-1].split()[1]) > 0
    assert lines[-2].startswith("speedup vs default fit: ")
    assert float(lines[-2].split()[-1]) > 0
    rows = {line.split()[0]: line for line in lines if line.split()[0] in LOOPS}
    assert set(rows) == set(LOOPS)
    assert "intra-op threads default, steps_per_execution 1" in rows["plain"]
    config = load_config(repo_root / "params.yaml")
    steps = steps_per_epoch(config, 85)
    assert f"intra-op threads 1, steps_per_execution {steps}" in rows["tuned"]
    assert "intra-op threads 1" in rows["project"]
    assert f"for {config.train.epochs} epochs" in rows["project"]
    assert "85 random images" in done.stdout


def test_the_benchmark_times_the_network_and_settings_it_is_told(repo_root):
    import importlib.util

    from sfae.errors import SfaeError

    spec = importlib.util.spec_from_file_location("train_speed", repo_root / "bench/train_speed.py")
    train_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_speed)
    plain = load_config(repo_root / "params.yaml")
    assert train_speed.load_params() == plain
    unet = train_speed.load_params("unet", ("model.unet.width=12", "model.unet.epochs=250"))
    assert unet.model.arch == "unet" and unet.model.unet.width == 12
    assert unet.train.epochs == 250 != plain.train.epochs  # the U-Net's own schedule
    with pytest.raises(SfaeError, match="widht"):
        train_speed.load_params("unet", ("model.unet.widht=12",))
    augment = dataclasses.replace(plain, variant=plain.variants["augment"])
    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    masks = (images[..., :1] > 0.5).astype(np.float32)
    assert train_speed.augment_seconds(augment, images, masks, epochs=3) > 0
