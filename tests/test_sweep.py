"""The sweep's plan: selection on validation IoU alone, bracketing, and the final runs."""

from pathlib import Path

import pytest

from sfae.experiments.records import RunRecord
from sfae.experiments.runner import Spec, wanted_params
from sfae.experiments.sweep import Sweep, extended_grid
from sfae.nn.regularisers.registry import REGULARISERS
from sfae.plans import load_plans

REPO = Path(__file__).resolve().parent.parent


def record_for(sweep: Sweep, spec, val: float, test: float) -> RunRecord:
    """A run record that fulfils `spec`, with the given validation and test IoU."""
    params = wanted_params(sweep.params, spec)
    return RunRecord(
        variant=params["variant"],
        seed=params["seed"],
        name=spec.label,
        rev=spec.label,
        evaluate={"val": {"iou_pooled": val}, "test": {"pooled": {"iou": test}}},
        mall={},
        train_seconds=1.0,
        per_image_iou={},
        params=params,
    )


def selection_records(sweep, variant, val_of, test_of, points=None):
    points = points or sweep.settings.grids[variant]
    return [
        record_for(sweep, sweep.selection_spec(variant, seed, x), val_of(x), test_of(x))
        for x in points
        for seed in sweep.settings.seeds
    ]


def test_the_strength_is_selected_on_validation_iou_never_on_test(sweep):
    grid = sweep.settings.grids["l2"]
    best_val, best_test = grid[2], grid[1]
    # Validation peaks inside the grid at grid[2], test peaks at grid[1]: they disagree.
    records = selection_records(
        sweep,
        "l2",
        val_of=lambda x: 0.6 if x == best_val else 0.4,
        test_of=lambda x: 0.9 if x == best_test else 0.1,
    )
    (selection,) = [s for s in sweep.selections(records) if s.variant == "l2"]
    assert selection.selected == best_val and selection.bracketed
    assert selection.key == "variants.l2.regularizer_scale"
    assert selection.curve[best_val] == (pytest.approx(0.6), 0.0, 2)


def test_a_best_strength_at_an_end_extends_the_grid_one_step(sweep):
    grid = sweep.settings.grids["sparse_elu"]
    records = selection_records(sweep, "sparse_elu", lambda x: x, lambda x: 0.0)  # rises
    (selection,) = [s for s in sweep.selections(records) if s.variant == "sparse_elu"]
    assert selection.selected is None  # the new point is not measured yet
    step = grid[-1] * grid[1] / grid[0]
    assert selection.points[-1] == pytest.approx(step, rel=1e-2)
    planned = {s.label for s in sweep.selection_plan(records)}
    assert {
        sweep.selection_spec("sparse_elu", seed, selection.points[-1]).label
        for seed in sweep.settings.seeds
    } <= planned
    # Once the new point is measured and lower, the optimum is bracketed at the old end.
    records += selection_records(
        sweep, "sparse_elu", lambda x: 0.0, lambda x: 0.0, points=[selection.points[-1]]
    )
    (selection,) = [s for s in sweep.selections(records) if s.variant == "sparse_elu"]
    assert selection.selected == grid[-1] and selection.bracketed


def test_extension_stops_at_the_strengths_limit_and_at_interior_optima():
    assert extended_grid((0.05, 0.158, 0.5), {0.05: 1, 0.158: 2, 0.5: 3}, 0.95) == [
        0.05,
        0.158,
        0.5,
    ]
    assert extended_grid((1.0, 10.0, 100.0), {1.0: 3, 10.0: 2, 100.0: 1}, 1e9) == [
        0.1,
        1.0,
        10.0,
        100.0,
    ]
    assert extended_grid((1.0, 10.0, 100.0), {1.0: 1, 10.0: 3, 100.0: 2}, 1e9) == [1.0, 10.0, 100.0]


def test_the_final_runs_use_the_selected_strength_all_training_images_and_final_seeds(sweep):
    records = []
    for variant, grid in sweep.settings.grids.items():
        middle = grid[len(grid) // 2]
        records += selection_records(
            sweep, variant, lambda x, m=middle: 1.0 - abs(x - m), lambda x: 0
        )
    finals = [spec.as_dict() for spec in sweep.final_plan(records)]
    variants = {*sweep.settings.grids, *sweep.settings.references}
    assert {f["variant"] for f in finals} == variants
    assert len(finals) == len(variants) * len(sweep.settings.final_seeds)
    assert {f["seed"] for f in finals} == set(sweep.settings.final_seeds)
    assert all(f["data.val_count"] == 0 for f in finals)
    for variant, grid in sweep.settings.grids.items():
        key = sweep.key(variant)
        assert {f[key] for f in finals if f["variant"] == variant} == {grid[len(grid) // 2]}


def test_selection_runs_hold_out_the_validation_images(sweep):
    spec = sweep.selection_spec("dropout", 1, 0.05).as_dict()
    assert spec == {
        "variant": "dropout",
        "seed": 1,
        "data.val_count": 17,
        "variants.dropout.dropout": 0.05,
    }


def test_the_unet_sweep_runs_the_unet_on_its_own_grids_and_seeds(sweep, unet_sweep):
    settings = unet_sweep.settings
    assert settings == sweep.config.sweep.unet and settings.val_count == 17
    specs = [spec.as_dict() for spec in unet_sweep.selection_plan([])]
    assert all(spec["model.arch"] == "unet" for spec in specs)
    assert {spec["seed"] for spec in specs} == set(settings.seeds)
    assert len(specs) == len(settings.seeds) * (
        sum(map(len, settings.grids.values())) + len(settings.references)
    )
    # A paper run with the same overrides does not count as the U-Net's.
    paper_runs = [
        record_for(sweep, sweep.selection_spec(v, seed, x), 0.5, 0.5)
        for v, grid in settings.grids.items()
        for x in grid
        for seed in settings.seeds
    ]
    assert unet_sweep.selection_plan(paper_runs) == unet_sweep.selection_plan([])
    assert all(s.selected is None for s in unet_sweep.selections(paper_runs))


def test_the_unet_finals_use_its_final_seeds(unet_sweep):
    records = []
    for variant, grid in unet_sweep.settings.grids.items():
        records += selection_records(
            unet_sweep, variant, lambda x, m=grid[1]: 1.0 - abs(x - m), lambda x: 0
        )
    finals = [spec.as_dict() for spec in unet_sweep.final_plan(records)]
    assert {f["seed"] for f in finals} == set(unet_sweep.settings.final_seeds) == {6278, 1, 2, 3, 4}
    assert all(f["model.arch"] == "unet" and f["data.val_count"] == 0 for f in finals)


def test_a_network_without_a_sweep_section_is_refused(sweep):
    from dataclasses import replace

    from sfae.errors import SfaeError

    config = replace(sweep.config, sweep=replace(sweep.config.sweep, unet=None))
    with pytest.raises(SfaeError, match="no sweep.unet section"):
        Sweep(config, sweep.params, "unet")


def selected_unet(unet_sweep, lead="l2", lead_val=0.9):
    """Selection records of every U-Net grid (peak at grid[1]) and reference, `lead` on top."""
    records = []
    for variant, grid in unet_sweep.settings.grids.items():
        top = lead_val if variant == lead else 0.6

        def val(x, m=grid[1], top=top):
            return top - abs(x - m) * 1e-3

        records += selection_records(unet_sweep, variant, val, lambda x: 0.99)
    for index, variant in enumerate(unet_sweep.settings.references):
        records += [
            record_for(unet_sweep, unet_sweep.selection_spec(variant, seed), 0.7 + index / 50, 0.99)
            for seed in unet_sweep.settings.seeds
        ]
    return records


WIDER, ZOOM, LONGER = (
    {"model.unet.width": 12},
    {"variants.augment.augment.zoom": 0.3},
    {"model.unet.epochs": 250},
)


@pytest.fixture(scope="module")
def candidates_sweep(unet_sweep) -> Sweep:
    """The U-Net sweep with known candidates: two read by every variant, one by augment."""
    from dataclasses import replace

    settings = replace(unet_sweep.settings, candidates=(WIDER, ZOOM, {**WIDER, **ZOOM}, LONGER))
    config = replace(unet_sweep.config, sweep=replace(unet_sweep.config.sweep, unet=settings))
    return Sweep(config, unet_sweep.params, "unet")


def test_candidates_change_the_variant_that_leads_on_validation(candidates_sweep):
    sweep = candidates_sweep
    records = selected_unet(sweep, lead="l2")
    grid = sweep.settings.grids["l2"]
    assert sweep.leader(records) == ("l2", {"variants.l2.regularizer_scale": grid[1]})
    base = {
        "variant": "l2",
        "seed": sweep.settings.seeds[0],
        "data.val_count": 17,
        "model.arch": "unet",
        "variants.l2.regularizer_scale": grid[1],
    }
    # Augment's settings change no l2 run: those candidates are the same runs, run once.
    assert [s.as_dict() for s in sweep.candidate_plan(records)] == [
        {**base, **WIDER},
        {**base, **LONGER},
    ]
    # A reference that leads on validation is taken as it is (no strength), every setting.
    records = selected_unet(sweep, lead="l2", lead_val=0.65)
    last = sweep.settings.references[-1]
    assert last == "augment" and sweep.leader(records) == (last, {})
    plan = [s.as_dict() for s in sweep.candidate_plan(records)]
    assert len(plan) == len(sweep.settings.candidates) and all(
        spec["variant"] == last and "variants.l2.regularizer_scale" not in spec for spec in plan
    )


def test_no_candidate_runs_before_every_selection_is_complete(candidates_sweep):
    records = selected_unet(candidates_sweep)
    missing_one = records[1:]  # one selection run of the first grid is gone
    assert candidates_sweep.leader(missing_one) is None
    assert candidates_sweep.candidate_plan(missing_one) == []


def test_the_best_candidate_on_validation_runs_the_final_seeds(candidates_sweep):
    sweep = candidates_sweep
    records = selected_unet(sweep)
    leader = sweep.leader(records)
    # Validation prefers LONGER; test IoU would prefer WIDER: validation wins.
    for candidate, val, test in ((WIDER, 0.5, 0.99), (LONGER, 0.95, 0.1)):
        for seed in sweep.settings.seeds:
            spec = sweep.candidate_spec(leader, candidate, seed)
            records.append(record_for(sweep, spec, val, test))
    assert sweep.best_candidate(records).overrides == LONGER
    finals = [s.as_dict() for s in sweep.candidate_plan(records)][-5:]
    assert {f["seed"] for f in finals} == set(sweep.final_seeds) == {6278, 1, 2, 3, 4}
    assert all(f["data.val_count"] == 0 and f.items() >= LONGER.items() for f in finals)
    assert sweep.candidate_finals(records) == []
    records += [record_for(sweep, Spec.from_dict(f), 0.0, 0.7) for f in finals]
    assert len(sweep.candidate_finals(records)) == 5
    # Were the variant as swept best on validation, its own finals would do: no new run.
    worse = [r for r in records if r.evaluate["val"]["iou_pooled"] != 0.95]
    for seed in sweep.settings.seeds:
        spec = sweep.candidate_spec(leader, LONGER, seed)
        worse.append(record_for(sweep, spec, 0.1, 0.99))
    assert sweep.best_candidate(worse).overrides == {}
    assert len(sweep.candidate_plan(worse)) == 2 * len(sweep.settings.seeds)


def test_a_candidate_with_an_unknown_or_a_sweep_key_is_refused(unet_sweep, tmp_path):
    from dataclasses import replace

    from sfae.errors import SfaeError

    settings = replace(unet_sweep.settings, candidates=({"model.unet.widht": 12},))
    config = replace(unet_sweep.config, sweep=replace(unet_sweep.config.sweep, unet=settings))
    with pytest.raises(SfaeError, match="model.unet.widht is not a setting"):
        Sweep(config, unet_sweep.params, "unet")
    text = (REPO / "params.yaml").read_text()
    assert "    candidates:\n      - {model.unet.width: 12}" in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("- {model.unet.width: 12}", "- {seed: 3}"))
    with pytest.raises(SfaeError, match=r"candidates.*may not set seed"):
        load_plans(path, REGULARISERS)
    path.write_text(text.replace("- {model.unet.width: 12}", "- model.unet.width"))
    with pytest.raises(SfaeError, match="candidates.*must be a list of"):
        load_plans(path, REGULARISERS)
