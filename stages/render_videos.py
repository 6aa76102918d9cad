"""DVC stage: the model's Mall predictions overlaid on the full-size frames (MP4, GIF, strip)."""

import sfae.startup  # noqa: F401, I001  (first: TensorFlow loads quietly)

import numpy as np

from sfae.atomic import staged_outputs
from sfae.nn.regularisers.registry import load_config
from sfae.data.prepared import load_mall
from sfae.data.sources import MALL, mall_frame_path
from sfae.errors import run_stage
from sfae.inference.predict import load_trained, predict_probabilities
from sfae.inference.render import render_videos
from sfae.paths import ProjectPaths


def main() -> None:
    paths = ProjectPaths.here()
    config = load_config(paths.params)
    mall = load_mall(paths.mall_prepared)
    probability = predict_probabilities(load_trained(paths.final_model), mall.frames)
    frames = [mall_frame_path(paths.raw / MALL.folder, int(n)) for n in mall.frame_numbers]
    targets = (paths.mall_video, paths.mall_gif, paths.mall_strip, paths.mall_probability)
    with staged_outputs(*targets) as (*outputs, saved_probability):
        # float16 keeps the study's side-by-side GIF inputs small (~9 MB for 500 frames).
        np.save(saved_probability, probability.astype(np.float16))
        render_videos(frames, probability, tuple(outputs), config.render)


if __name__ == "__main__":
    run_stage(main)
