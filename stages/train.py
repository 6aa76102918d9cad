"""DVC stage: train the chosen variant. Sparse variants first pretrain encoder + bottleneck
with sparse filtering alone; then every variant trains on the masks (the supervised phase).

One process for both phases: a TensorFlow start-up costs ~5 s, more than a short run trains.
The supervised phase starts as a fresh process would: the session cleared and the seeds set
again, the network built anew and given the first phase's weights, so its numbers do not
depend on what the first phase drew from the generators.
"""

import sfae.startup  # noqa: F401, I001  (first: TensorFlow loads quietly)

import time

import keras
import numpy as np
from dvclive import Live

from sfae.atomic import staged_outputs
from sfae.nn.regularisers.registry import load_config
from sfae.data.prepared import load_pennfudan, load_unlabeled
from sfae.errors import run_stage
from sfae.inference.predict import predict_probabilities
from sfae.machine import machine_kind
from sfae.nn.model import build_model, encoder_model
from sfae.nn.saving import save_model_deterministic
from sfae.nn.sparse_filtering import sparse_filtering_loss
from sfae.nn.training import configure_determinism, finetune, pretrain
from sfae.paths import ProjectPaths
from sfae.scoring.metrics import pooled_iou


def split_iou(model, images, masks, threshold) -> float:
    return pooled_iou(masks[..., 0] > 0.5, predict_probabilities(model, images) >= threshold)


def unlabeled_frames(config, paths):
    """The Mall frames without masks that sparse filtering also learns from (None: none)."""
    count = config.variant.sparse.unlabeled_frames if config.variant.sparse else 0
    return load_unlabeled(paths.unlabeled_prepared, count) if count else None


def pretrain_phase(config, images, live, frames=None) -> tuple[list, float]:
    """Sparse pretraining (none for other variants); the weights it ends with, and seconds."""
    configure_determinism(config.seed)
    model = build_model(config)
    sparse = config.variant.sparse
    activation, epsilon = (sparse.activation, sparse.epsilon) if sparse else ("softabs", 1e-8)
    # Step 0 is the untrained encoder, so every variant has a reference point.
    initial = sparse_filtering_loss(
        encoder_model(model).predict_on_batch(images), activation, epsilon
    )
    live.log_metric("sparse_cost", float(np.asarray(initial)))
    live.next_step()

    def log(entry):
        live.log_metric("sparse_cost", entry.terms["sparse"])
        live.next_step()

    started = time.perf_counter()
    history = pretrain(model, config, images, on_epoch_end=log, unlabeled=frames)
    live.summary["pretrain_epochs"] = len(history)
    return model.get_weights(), time.perf_counter() - started


def supervised_phase(config, data, weights, live, frames=None) -> tuple[keras.Model, float]:
    keras.backend.clear_session()  # layer names and seeds as in a process of its own
    configure_determinism(config.seed)
    model = build_model(config)
    model.set_weights(weights)
    threshold = config.evaluate.threshold
    last_epoch = config.finetune_epochs() - 1  # logged too, so the last IoU is the model's

    def log(entry):
        for name, value in entry.terms.items():
            live.log_metric(f"train/{name}", value)
        if entry.epoch in (0, last_epoch) or (entry.epoch + 1) % config.train.iou_every == 0:
            # Logged only: nothing is selected on the test split.
            for split in ("train", "test", "val"):
                images, masks = getattr(data, f"{split}_images"), getattr(data, f"{split}_masks")
                if len(images):  # val: what selection looks at, when images are held out
                    live.log_metric(f"iou/{split}", split_iou(model, images, masks, threshold))
        live.next_step()

    started = time.perf_counter()
    finetune(model, config, data.train_images, data.train_masks, on_epoch_end=log, unlabeled=frames)
    return model, time.perf_counter() - started


def main() -> None:
    paths = ProjectPaths.here()
    config = load_config(paths.params)
    data = load_pennfudan(paths.pennfudan_prepared)
    frames = unlabeled_frames(config, paths)
    # The logs are staged with the model: a killed or failed run leaves none of them (no
    # half-written metrics.json for `dvc metrics show` to present as a result).
    targets = (paths.final_model, paths.pretrain_log, paths.finetune_log)
    with staged_outputs(*targets) as (saved, pretrain_dir, finetune_dir):
        with Live(str(pretrain_dir), save_dvc_exp=False, dvcyaml=False) as live:
            weights, pretrain_seconds = pretrain_phase(config, data.train_images, live, frames)
        with Live(str(finetune_dir), save_dvc_exp=False, dvcyaml=False) as live:
            model, finetune_seconds = supervised_phase(config, data, weights, live, frames)
            # Where it trained, as a kind (the rounding differs between kinds); the clock
            # stays out of tracked outputs, so an identical re-run changes no file.
            live.summary["machine"] = machine_kind()
        save_model_deterministic(model, saved)  # same weights, same bytes: no needless re-runs
    # The queue's log keeps this line; the run records take the training time from it.
    print(f"sfae train: {pretrain_seconds:.1f} s pretraining, {finetune_seconds:.1f} s training")


if __name__ == "__main__":
    run_stage(main)
