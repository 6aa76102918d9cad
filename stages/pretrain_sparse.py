"""DVC stage: sparse-filtering pretraining of encoder + bottleneck (sparse variants only).

Other variants get their seeded initial weights written unchanged, so every variant's
finetune stage starts from this stage's weights file.
"""

import time

import numpy as np
from dvclive import Live

from sfae.atomic import staged_outputs
from sfae.config import load_config
from sfae.data.prepared import load_pennfudan
from sfae.errors import run_stage
from sfae.nn.model import build_model, encoder_model
from sfae.nn.sparse_filtering import sparse_filtering_loss
from sfae.nn.training import configure_determinism, pretrain
from sfae.paths import ProjectPaths


def main() -> None:
    paths = ProjectPaths.here()
    config = load_config(paths.params)
    configure_determinism(config.seed)
    images = load_pennfudan(paths.pennfudan_prepared).train_images
    model = build_model(config)
    sparse = config.variant.sparse
    activation, epsilon = (sparse.activation, sparse.epsilon) if sparse else ("softabs", 1e-8)
    # The log is staged with the weights: a killed or failed run leaves neither.
    with (
        staged_outputs(paths.pretrained_weights, paths.pretrain_log) as (weights, log_dir),
        Live(str(log_dir), save_dvc_exp=False, dvcyaml=False) as live,
    ):
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
        history = pretrain(model, config, images, on_epoch_end=log)
        live.summary["pretrain_epochs"] = len(history)
        live.summary["seconds"] = round(time.perf_counter() - started, 1)
        model.save_weights(weights)


if __name__ == "__main__":
    run_stage(main)
