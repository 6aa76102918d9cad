"""Pictures (grids, error overlays) and the all-or-nothing output staging."""

import re

import numpy as np
import pytest

from sfae.atomic import staged_outputs
from sfae.scoring.evaluation import (
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    TRUE_POSITIVE,
    error_overlay,
    fixed_indices,
    grid,
    tint,
)


def test_error_overlay_colours_each_outcome():
    image = np.full((2, 2, 3), 0.8, np.float32)
    truth = np.array([[True, True], [False, False]])
    predicted = np.array([[True, False], [True, False]])
    canvas = error_overlay(image, truth, predicted)
    assert (canvas[0, 0] == TRUE_POSITIVE).all()
    assert (canvas[0, 1] == FALSE_NEGATIVE).all()
    assert (canvas[1, 0] == FALSE_POSITIVE).all()
    assert (canvas[1, 1] == 102).all()  # true negative: the image, dimmed to half


def test_tint_leaves_background_and_reddens_foreground():
    image = np.full((1, 2, 3), 0.5, np.float32)
    tinted = tint(image, np.array([[0.0, 1.0]], np.float32), alpha=0.5)
    assert (tinted[0, 0] == 128).all()
    assert tinted[0, 1, 0] > 128 and tinted[0, 1, 1] < 128


def test_grid_places_enlarged_tiles_on_white():
    red = np.zeros((3, 4, 3), np.uint8)
    red[..., 0] = 255
    canvas = grid([[red, red], [red]], scale=2, gap=1)
    assert canvas.shape == (2 * (6 + 1) + 1, 2 * (8 + 1) + 1, 3)
    assert (canvas[1:7, 1:9] == red[0, 0]).all()
    assert (canvas[8:14, 10:18] == 255).all()  # the missing tile of row 2 stays white


def test_fixed_indices_are_even_and_stable():
    assert fixed_indices(85, 6) == [0, 17, 34, 50, 67, 84]
    assert fixed_indices(3, 6) == [0, 1, 2]


def test_staged_outputs_appear_only_on_success(tmp_path):
    target = tmp_path / "out" / "scores.json"
    with staged_outputs(target) as (staged,):
        staged.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["scores.json"]


def test_staged_outputs_keep_the_old_file_and_leave_nothing_on_failure(tmp_path):
    old = tmp_path / "scores.json"
    old.write_text("old")
    fresh = tmp_path / "new" / "deeper" / "plots"
    with pytest.raises(RuntimeError), staged_outputs(old, fresh) as (first, second):
        first.write_text("half")
        second.mkdir()
        raise RuntimeError("stage failed")
    assert old.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]  # no temp, no parents


def test_an_output_the_body_left_unwritten_replaces_none_and_keeps_every_old_one(tmp_path):
    """Every temporary must exist before the first rename: else the old outputs would be
    deleted for a rename that cannot happen, or replaced one of two."""
    scores, plots = tmp_path / "scores.json", tmp_path / "plots"
    scores.write_text("old")
    plots.mkdir()
    (plots / "errors.png").write_text("old")
    unwritten = re.escape(f"{plots}: the stage wrote nothing there")
    with (
        pytest.raises(FileNotFoundError, match=unwritten),
        staged_outputs(scores, plots) as (new_scores, _),
    ):
        new_scores.write_text("new")  # and nothing where plots belongs
    assert scores.read_text() == "old" and (plots / "errors.png").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots", "scores.json"]
