"""End to end through DVC: the training stages in a copy of the repo, on tiny settings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio.v3 as iio
import keras
import numpy as np
import pytest
import yaml
from conftest import EPOCHS, dvc, environment, output, tiny_params

import sfae.nn.model  # also registers PoolMix and SoftAbsolute for load_model

pytestmark = pytest.mark.slow

DATA_STAGES = ("download_pennfudan", "download_mall", "preprocess_pennfudan", "preprocess_mall")


def ran_stages(result: subprocess.CompletedProcess) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output(result))


def tsv_rows(path: Path) -> list[dict[str, str]]:
    header, *rows = path.read_text().splitlines()
    names = header.split("\t")
    return [dict(zip(names, row.split("\t"), strict=True)) for row in rows]


@dataclass
class Pipeline:
    root: Path
    mirror: Path
    repro: subprocess.CompletedProcess
    repro_metrics: dict
    repro_loss_rows: list[dict[str, str]]
    repro_lock: dict
    again: subprocess.CompletedProcess  # `dvc repro --force --downstream train` after repro
    status_after_again: str  # `git status --porcelain` after it
    experiment: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def pipeline(make_repo_copy, mirror: Path) -> Pipeline:
    """`dvc repro` of the default variant, then `dvc exp run` of sparse_softabs, in one copy."""
    root = make_repo_copy()
    tiny_params(root)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    for command in (["add", "params.yaml"], ["commit", "-qm", "tiny params"]):
        subprocess.run([*git, *command], cwd=root, check=True, capture_output=True)
    repro = dvc(root, mirror, "repro")
    # Read what the experiment will overwrite before running it.
    finetune_log = root / "metrics" / "finetune"
    repro_metrics = json.loads((finetune_log / "metrics.json").read_text())
    repro_loss_rows = tsv_rows(finetune_log / "plots" / "metrics" / "train" / "loss.tsv")
    repro_lock = yaml.safe_load((root / "dvc.lock").read_text())
    model_path = root / "models" / "model.keras"
    assert model_path.is_file(), output(repro)
    model = keras.models.load_model(model_path)
    masks, features = model.predict_on_batch(np.zeros((2, 32, 32, 3), np.float32))
    assert masks.shape == (2, 32, 32, 1) and features.shape == (2, 9)
    assert model.name == "sfae_pure"
    # An identical re-run (training and everything after it) must leave git status clean:
    # no clock, nor anything else of the moment, in what DVC tracks or git commits.
    for command in (["add", "-A"], ["commit", "-qm", "the pipeline's outputs"]):
        subprocess.run([*git, *command], cwd=root, check=True, capture_output=True)
    again = dvc(root, mirror, "repro", "--force", "--downstream", "train")
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    experiment = dvc(root, mirror, "exp", "run", "-S", "variant=sparse_softabs")
    return Pipeline(
        root, mirror, repro, repro_metrics, repro_loss_rows, repro_lock, again, status, experiment
    )


def test_repro_trains_the_default_variant(pipeline: Pipeline) -> None:
    ran = ran_stages(pipeline.repro)
    assert {*DATA_STAGES, "train"} <= set(ran), output(pipeline.repro)
    assert ran.index("train") < ran.index("evaluate")
    # Training reads its settings from what check_params resolved of params.yaml.
    assert ran.index("check_params") < ran.index("train")
    stages = pipeline.repro_lock["stages"]
    assert "metrics/settings.json" in {dep["path"] for dep in stages["train"]["deps"]}
    checked = stages["check_params"]["params"]["params.yaml"]
    assert checked["variant"] == "pure" and checked["train"]["epochs"] == EPOCHS


def test_repro_finetune_metrics_and_plots(pipeline: Pipeline) -> None:
    metrics = pipeline.repro_metrics
    assert np.isfinite(metrics["train"]["loss"])
    assert {"loss", "segmentation", "penalty"} <= set(metrics["train"])
    assert "sparse" not in metrics["train"]  # pure has no sparse term
    for split in ("train", "test"):
        assert 0.0 <= metrics["iou"][split] <= 1.0
    rows = pipeline.repro_loss_rows
    assert len(rows) == EPOCHS
    assert [int(row["step"]) for row in rows] == list(range(EPOCHS))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])


def test_experiment_reuses_the_data_stages(pipeline: Pipeline) -> None:
    text = output(pipeline.experiment)
    ran = ran_stages(pipeline.experiment)
    assert not set(ran) & set(DATA_STAGES), text
    assert "train" in ran, text
    for stage in DATA_STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in text
    assert yaml.safe_load((pipeline.root / "params.yaml").read_text())["variant"] == (
        "sparse_softabs"
    )


def test_experiment_pretrains_and_logs_the_sparse_term(pipeline: Pipeline) -> None:
    root = pipeline.root
    pretrain = tsv_rows(root / "metrics" / "pretrain" / "plots" / "metrics" / "sparse_cost.tsv")
    assert [int(row["step"]) for row in pretrain] == [0, 1, 2]  # untrained + 2 epochs
    costs = [float(row["sparse_cost"]) for row in pretrain]
    assert all(1 / 9 <= cost <= 1 / 3 for cost in costs), costs  # softabs bounds
    assert (
        json.loads((root / "metrics" / "pretrain" / "metrics.json").read_text())["pretrain_epochs"]
        == 2
    )

    metrics = json.loads((root / "metrics" / "finetune" / "metrics.json").read_text())
    assert {"loss", "segmentation", "penalty", "sparse"} <= set(metrics["train"])
    assert np.isfinite(metrics["train"]["sparse"])
    loss = tsv_rows(root / "metrics" / "finetune" / "plots" / "metrics" / "train" / "loss.tsv")
    assert len(loss) == 2  # finetune_epochs of the sparse variant
    model = keras.models.load_model(root / "models" / "model.keras")
    assert model.name == "sfae_sparse_softabs"
    assert not any(isinstance(layer, sfae.nn.model.SoftAbsolute) for layer in model.layers)


def test_experiment_evaluates_and_renders(pipeline: Pipeline) -> None:
    root = pipeline.root
    assert {"evaluate", "render_videos"} <= set(ran_stages(pipeline.experiment))
    scores = json.loads((root / "metrics" / "evaluate.json").read_text())
    for summary in ("pooled", "mean"):
        assert set(scores["test"][summary]) >= {"iou", "dice", "boundary_f1", "recall"}
        assert all(0.0 <= value <= 1.0 for value in scores["test"][summary].values())
    assert scores["gap"]["iou_pooled"] == pytest.approx(
        scores["train"]["iou_pooled"] - scores["test"]["pooled"]["iou"]
    )
    rows = tsv_rows(root / "metrics" / "per_image.tsv")
    assert len(rows) == 85 and len({row["name"] for row in rows}) == 85
    mall = json.loads((root / "metrics" / "mall.json").read_text())
    assert mall["frames"] == 20 and mall["heads_in_roi"] > 0
    for key in ("head_hit_rate", "false_foreground", "foreground_share"):
        assert 0.0 <= mall[key] <= 1.0
    for name in ("predictions.png", "errors.png"):
        assert (root / "plots" / "evaluate" / name).stat().st_size > 0

    video = cv2.VideoCapture(str(root / "renders" / "mall_overlay.mp4"))
    frames = 0
    while True:
        ok, frame = video.read()
        if not ok:
            break
        assert frame.shape == (480, 640, 3)
        frames += 1
    assert frames == 20
    gif = iio.imread(root / "renders" / "mall_overlay.gif", index=None)
    step = yaml.safe_load((root / "params.yaml").read_text())["render"]["gif_frame_step"]
    assert len(gif) == -(-20 // step)
    probability = np.load(root / "renders" / "mall_probability.npy")
    assert probability.shape == (20, 32, 32)

    # HEAD holds pure's outputs (committed for the identical re-run); tiny runs may score alike.
    diff = dvc(root, pipeline.mirror, "metrics", "diff", "HEAD", "--all")
    assert "test.pooled.iou" in diff.stdout and "train.sparse" in diff.stdout, diff.stdout


def test_evaluate_and_render_rerun_only_for_their_own_params(pipeline: Pipeline) -> None:
    root = pipeline.root
    params = root / "params.yaml"
    original = params.read_text()
    try:
        for key, value, expected in (
            ("render", {"fps": 5}, "render_videos"),
            ("evaluate", {"boundary_tolerance": 3}, "evaluate"),
        ):
            document = yaml.safe_load(original)
            document[key].update(value)
            params.write_text(yaml.safe_dump(document, sort_keys=False))
            status = json.loads(dvc(root, pipeline.mirror, "status", "--json").stdout)
            # check_params reads the whole file; training, on its settings, stays put.
            assert set(status) == {"check_params", expected}, status
    finally:
        params.write_text(original)


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        (
            "+data.imagesize=64",
            "data.imagesize is not a known setting; did you mean data.image_size?",
        ),
        ("+foo=1", "foo is not a known setting"),
    ],
)
def test_a_typo_in_a_new_key_stops_the_run(pipeline: Pipeline, setting: str, said: str) -> None:
    """No stage depends on a key that did not exist, so only the check of the whole file
    can notice it: the run fails, with one line naming the key, and trains nothing."""
    params = pipeline.root / "params.yaml"
    original = params.read_text()
    try:  # a failed workspace run leaves DVC's edit of params.yaml in place
        result = dvc(pipeline.root, pipeline.mirror, "exp", "run", "-S", setting, check=False)
    finally:
        params.write_text(original)
    text = output(result)
    assert result.returncode != 0, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].endswith(said), text
    assert "Running stage 'train'" not in text


def test_an_unknown_variant_fails_without_a_traceback(pipeline: Pipeline) -> None:
    root = pipeline.root
    params = root / "params.yaml"
    original = params.read_text()
    try:
        _unknown_variant(pipeline)
    finally:
        params.write_text(original)


def _unknown_variant(pipeline: Pipeline) -> None:
    root = pipeline.root
    result = dvc(root, pipeline.mirror, "exp", "run", "-S", "variant=nonsense", check=False)
    text = output(result)
    assert result.returncode != 0, text
    assert "Traceback" not in text
    assert "params.yaml" in text and "nonsense" in text, text
    assert "must be one of pure, l1, l2" in text, text  # the valid ones, named

    # The stage itself, run on a bad params.yaml: one "error:" line naming the file.
    params = root / "params.yaml"
    document = yaml.safe_load(params.read_text())
    for stage in ("train",):
        params.write_text(yaml.safe_dump({**document, "variant": "nonsense"}, sort_keys=False))
        result = subprocess.run(
            [sys.executable, f"stages/{stage}.py"],
            cwd=root,
            env=environment(root, pipeline.mirror),
            capture_output=True,
            text=True,
            timeout=120,
        )
        text = output(result)
        assert result.returncode == 1, text
        assert "Traceback" not in text, text
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, text
        assert str(params) in errors[0] and "variant" in errors[0] and "nonsense" in errors[0]


@dataclass
class Scored:
    result: subprocess.CompletedProcess
    params_text: str
    files: dict[str, dict]  # metrics/*.json as the run left them
    model: Path  # the model it saved, kept apart from the runs after it
    loss_rows: list[dict[str, str]]
    split: Path  # the prepared Penn-Fudan arrays it trained on, kept apart likewise
    per_image: str  # metrics/per_image.tsv as it left it
    pictures: list[str]  # what plots/evaluate held


@pytest.fixture(scope="module")
def selection_run(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Scored:
    """A sweep's selection run of the U-Net (one run for both: each costs half a minute): a
    small strength, validation images held out, up to evaluate."""
    root = pipeline.root
    settings = ["variant=l2", "variants.l2.regularizer_scale=1e-5", "data.val_count=17"]
    settings += ["model.arch=unet", "model.unet.width=4", "model.unet.groups=2"]
    settings += ["model.unet.epochs=3", "model.unet.pretrain_epochs=1"]
    setting_args = [arg for setting in settings for arg in ("-S", setting)]
    result = dvc(root, pipeline.mirror, "exp", "run", "evaluate", *setting_args, check=False)
    assert result.returncode == 0, output(result)
    names = ("split.json", "evaluate.json", "mall.json", "finetune/metrics.json")
    files = {name: json.loads((root / "metrics" / name).read_text()) for name in names}
    kept = tmp_path_factory.mktemp("selection-run")
    model, split = kept / "model.keras", kept / "pennfudan.npz"
    shutil.copy2(root / "models" / "model.keras", model)
    shutil.copy2(root / "data" / "prepared" / "pennfudan.npz", split)
    rows = tsv_rows(root / "metrics" / "finetune" / "plots" / "metrics" / "train" / "loss.tsv")
    table = (root / "metrics" / "per_image.tsv").read_text()
    pictures = sorted(path.name for path in (root / "plots" / "evaluate").iterdir())
    return Scored(
        result, (root / "params.yaml").read_text(), files, model, rows, split, table, pictures
    )


def test_a_small_strength_and_held_out_validation_images_through_exp_run(
    selection_run: Scored,
) -> None:
    """DVC writes `1e-05` for -S ...=1e-5: a float in YAML 1.2, as our loader must read it.
    The run stops at evaluate (as sweep runs do) and gives the validation IoU alone: no test
    scores, Mall scores or pictures, and no TensorFlow start-up for them."""
    assert "regularizer_scale: 1e-05" in selection_run.params_text
    assert "render_videos" not in ran_stages(selection_run.result)
    split = selection_run.files["split.json"]
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (68, 17, 85)
    scores = selection_run.files["evaluate.json"]
    logged = selection_run.files["finetune/metrics.json"]
    assert scores == {"val": {"iou_pooled": logged["iou"]["val"], "n_images": 17}}
    assert selection_run.files["mall.json"]["scored"] is False
    assert selection_run.per_image == "name\tiou\tdice\tprecision\trecall\taccuracy\tboundary_f1\n"
    assert selection_run.pictures == []


def test_a_selection_runs_validation_iou_is_the_saved_models(selection_run: Scored) -> None:
    """What train logged after its last epoch is the IoU of the model it saved, recomputed from
    the file on the validation images: the score selection reads is the final weights'."""
    from sfae.data.prepared import load_pennfudan
    from sfae.inference.predict import load_trained, predict_probabilities
    from sfae.scoring.metrics import pooled_iou

    data = load_pennfudan(selection_run.split)
    model = load_trained(selection_run.model)
    predicted = predict_probabilities(model, data.val_images) >= 0.5
    recomputed = pooled_iou(data.val_masks[..., 0] > 0.5, predicted)
    assert len(data.val_names) == 17
    assert selection_run.files["evaluate.json"]["val"]["iou_pooled"] == recomputed


def test_the_unet_through_exp_run_and_sfae_predict(
    pipeline: Pipeline, selection_run: Scored, tmp_path: Path
) -> None:
    """`dvc exp run -S model.arch=unet -S variant=l2` trains and scores a U-Net, and
    `sfae predict` segments a Penn-Fudan photo with the model it saved."""
    root = pipeline.root
    assert keras.models.load_model(selection_run.model).name == "sfae_unet_l2"
    assert len(selection_run.loss_rows) == 3  # the U-Net's own epochs, not train.epochs
    assert 0.0 <= selection_run.files["finetune/metrics.json"]["iou"]["test"] <= 1.0

    photo = next((root / "data" / "raw").rglob("FudanPed00001.png"))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "sfae.cli", "predict", "--model", str(selection_run.model)]
        + ["--out", str(out), str(photo)],
        cwd=root,
        env={**environment(root, pipeline.mirror), "PYTHONPATH": str(root / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, output(done)
    height, width = cv2.imread(str(photo)).shape[:2]
    mask = cv2.imread(str(out / "FudanPed00001_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (height, width) and set(np.unique(mask)) <= {0, 255}


def test_an_identical_re_run_changes_no_file(pipeline: Pipeline) -> None:
    """`dvc repro --force` of training and all after it, on the same machine, with the first
    run's outputs committed: git status stays clean."""
    assert {"train", "evaluate", "render_videos"} <= set(ran_stages(pipeline.again))
    assert pipeline.status_after_again == "", pipeline.status_after_again


def test_make_show_prints_the_experiments_in_at_most_25_columns(pipeline: Pipeline) -> None:
    """`make show`: `dvc exp show` of the params and headline scores that differ."""
    makefile = (pipeline.root / "Makefile").read_text()
    shown = re.search(r"^SHOWN := (.*)$", makefile, re.M).group(1).replace("$$", "$")
    assert "--keep '$(SHOWN)'" in makefile and "--only-changed --drop '.*'" in makefile
    result = dvc(
        pipeline.root,
        pipeline.mirror,
        "exp",
        "show",
        "--csv",
        "--only-changed",
        "--drop",
        ".*",
        "--keep",
        shown,
    )
    header = result.stdout.splitlines()[0].split(",")
    assert len(header) <= 25, header
    assert {"Experiment", "variant", "test.pooled.iou"} <= set(header)
