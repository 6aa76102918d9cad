"""DVC stage: supervised training of the chosen variant from the pretrain stage's weights."""

import time

from dvclive import Live

from sfae.atomic import staged_outputs
from sfae.config import load_config
from sfae.data.prepared import load_pennfudan
from sfae.errors import run_stage
from sfae.inference.predict import predict_probabilities
from sfae.machine import machine_description
from sfae.nn.model import build_model
from sfae.nn.saving import load_weights, save_model_deterministic
from sfae.nn.training import configure_determinism, finetune
from sfae.paths import ProjectPaths
from sfae.scoring.metrics import pooled_iou


def split_iou(model, images, masks, threshold) -> float:
    return pooled_iou(masks[..., 0] > 0.5, predict_probabilities(model, images) >= threshold)


def main() -> None:
    paths = ProjectPaths.here()
    config = load_config(paths.params)
    configure_determinism(config.seed)
    data = load_pennfudan(paths.pennfudan_prepared)
    model = build_model(config)
    load_weights(model, paths.pretrained_weights)
    threshold = config.evaluate.threshold
    last_epoch = config.finetune_epochs() - 1  # logged too, so the last IoU is the model's
    # The log is staged with the model: a killed or failed run leaves neither (no half-written
    # metrics.json for `dvc metrics show` to present as a result).
    with (
        staged_outputs(paths.final_model, paths.finetune_log) as (saved, log_dir),
        Live(str(log_dir), save_dvc_exp=False, dvcyaml=False) as live,
    ):

        def log(entry):
            for name, value in entry.terms.items():
                live.log_metric(f"train/{name}", value)
            if entry.epoch in (0, last_epoch) or (entry.epoch + 1) % config.train.iou_every == 0:
                # Logged only: nothing is selected on the test split.
                live.log_metric(
                    "iou/train", split_iou(model, data.train_images, data.train_masks, threshold)
                )
                live.log_metric(
                    "iou/test", split_iou(model, data.test_images, data.test_masks, threshold)
                )
                if data.val_names:  # what selection looks at: never the test split
                    live.log_metric(
                        "iou/val", split_iou(model, data.val_images, data.val_masks, threshold)
                    )
            live.next_step()

        started = time.perf_counter()
        finetune(model, config, data.train_images, data.train_masks, on_epoch_end=log)
        live.summary["seconds"] = round(time.perf_counter() - started, 1)
        live.summary["machine"] = machine_description()  # rounding differs between CPUs
        save_model_deterministic(model, saved)  # same weights, same bytes: no needless re-runs


if __name__ == "__main__":
    run_stage(main)
