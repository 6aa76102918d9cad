"""DVC stage: score the trained model on the Penn-Fudan test split and (final runs) the Mall
frames."""

import sfae.startup  # noqa: F401, I001  (first: TensorFlow loads quietly)

import json

from sfae.atomic import staged_outputs
from sfae.nn.regularisers.registry import load_config
from sfae.data.image_io import write_png
from sfae.data.prepared import load_mall, load_pennfudan
from sfae.errors import run_stage
from sfae.inference.predict import load_trained
from sfae.paths import ProjectPaths
from sfae.scoring.evaluation import (
    mall_generalisation,
    penn_fudan_scores,
    prediction_pictures,
    write_table,
)


def main() -> None:
    paths = ProjectPaths.here()
    config = load_config(paths.params)
    settings = config.evaluate
    model = load_trained(paths.final_model)
    data = load_pennfudan(paths.pennfudan_prepared)
    scores, rows, probability = penn_fudan_scores(
        model, data, settings.threshold, settings.boundary_tolerance
    )
    # A selection run (validation images held out) is read for its validation IoU alone:
    # scoring the 500 Mall frames would add seconds to each of hundreds of runs.
    mall = {"scored": False, "why": "a selection run: Mall is scored in final runs only"}
    if not data.val_names:
        frames = load_mall(paths.mall_prepared)
        mall = mall_generalisation(model, frames, settings.threshold, config.mall.person_height)
    predictions, errors = prediction_pictures(
        data, probability, settings.threshold, settings.grid_images
    )
    with staged_outputs(
        paths.evaluate_metrics, paths.per_image, paths.mall_metrics, paths.evaluate_plots
    ) as (scores_path, table_path, mall_path, plots):
        scores_path.write_text(json.dumps(scores, indent=2) + "\n")
        write_table(table_path, rows)
        mall_path.write_text(json.dumps(mall, indent=2) + "\n")
        plots.mkdir()
        write_png(plots / "predictions.png", predictions)
        write_png(plots / "errors.png", errors)


if __name__ == "__main__":
    run_stage(main)
