"""DVC stage: score the trained model. A final run: the Penn-Fudan test split and the Mall
frames. A selection run (validation images held out) is read for its validation IoU alone."""

import json

from sfae.atomic import staged_outputs
from sfae.data.image_io import write_png
from sfae.errors import SfaeError, run_stage
from sfae.nn.regularisers.registry import load_config
from sfae.paths import ProjectPaths
from sfae.scoring.metrics import write_table

NOT_SCORED = "a selection run: the test split and Mall are scored in final runs only"


def selection_scores(paths: ProjectPaths, val_count: int) -> dict:
    """The validation IoU that `train` logged after its last epoch: the IoU of the weights it
    saved (tests/test_pipeline_training.py recomputes it from the file). Reading it spares each
    of hundreds of selection runs a TensorFlow start-up and predictions, and leaves no test
    score beside it to peek at."""
    logged = paths.finetune_log / "metrics.json"
    try:
        pooled = float(json.loads(logged.read_text())["iou"]["val"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SfaeError(f"{logged}: no validation IoU (iou.val) logged by train") from error
    return {"val": {"iou_pooled": pooled, "n_images": val_count}}


def final_scores(config, paths: ProjectPaths):
    """(evaluate.json, per-image rows, mall.json, pictures) of the model on test and Mall."""
    import sfae.startup  # noqa: F401, I001  (first: TensorFlow loads quietly)

    from sfae.data.prepared import load_mall, load_pennfudan
    from sfae.inference.predict import load_trained
    from sfae.scoring.evaluation import (
        mall_generalisation,
        penn_fudan_scores,
        prediction_pictures,
    )

    settings = config.evaluate
    model = load_trained(paths.final_model)
    data = load_pennfudan(paths.pennfudan_prepared)
    scores, rows, probability = penn_fudan_scores(
        model, data, settings.threshold, settings.boundary_tolerance
    )
    frames = load_mall(paths.mall_prepared)
    mall = mall_generalisation(model, frames, settings.threshold, config.mall.person_height)
    pictures = prediction_pictures(data, probability, settings.threshold, settings.grid_images)
    return scores, rows, mall, pictures


def main() -> None:
    paths = ProjectPaths.here()
    config = load_config(paths.params)
    if config.data.val_count:
        print(
            f"evaluate: a selection run ({config.data.val_count} validation images held out): "
            "its validation IoU as train logged it; no test scores, Mall or pictures"
        )
        scores, rows, pictures = selection_scores(paths, config.data.val_count), [], ()
        mall = {"scored": False, "why": NOT_SCORED}
    else:
        scores, rows, mall, pictures = final_scores(config, paths)
    with staged_outputs(
        paths.evaluate_metrics, paths.per_image, paths.mall_metrics, paths.evaluate_plots
    ) as (scores_path, table_path, mall_path, plots):
        scores_path.write_text(json.dumps(scores, indent=2) + "\n")
        write_table(table_path, rows)
        mall_path.write_text(json.dumps(mall, indent=2) + "\n")
        plots.mkdir()
        if pictures:
            predictions, errors = pictures
            write_png(plots / "predictions.png", predictions)
            write_png(plots / "errors.png", errors)


if __name__ == "__main__":
    run_stage(main)
