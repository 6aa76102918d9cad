"""The sweep's plan, read off its state: selection on validation IoU alone, bracketing, the
final runs, the candidates; named sweeps; the state computed once for plan and report."""

import ast
from pathlib import Path

import pytest

from sfae.experiments.campaign import candidate_plan, final_plan, plateau_plan, selection_plan
from sfae.experiments.records import RunRecord
from sfae.experiments.runner import Spec, wanted_params
from sfae.experiments.sweep import Sweep, extended_grid
from sfae.experiments.sweep_state import sweep_state
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
        record_for(sweep, sweep.spec(variant, seed, x), val_of(x), test_of(x))
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
    selection = sweep_state(sweep, records).selection("l2")
    assert selection.selected == best_val and selection.bracketed
    assert selection.key == "variants.l2.regularizer_scale"
    point = selection.points[best_val]
    assert (point.mean, point.std, point.validation) == (pytest.approx(0.6), 0.0, {1: 0.6, 2: 0.6})


def test_a_best_strength_at_an_end_extends_the_grid_one_step(sweep):
    grid = sweep.settings.grids["sparse_elu"]
    records = selection_records(sweep, "sparse_elu", lambda x: x, lambda x: 0.0)  # rises
    selection = sweep_state(sweep, records).selection("sparse_elu")
    assert selection.selected is None  # the new point is not measured yet
    step = grid[-1] * grid[1] / grid[0]
    new = list(selection.points)[-1]
    assert new == pytest.approx(step, rel=1e-2) and selection.added == (new,)
    planned = {s.label for s in selection_plan(sweep_state(sweep, records))}
    assert {sweep.spec("sparse_elu", seed, new).label for seed in sweep.settings.seeds} <= planned
    # Once the new point is measured and lower, the optimum is bracketed at the old end.
    records += selection_records(sweep, "sparse_elu", lambda x: 0.0, lambda x: 0.0, points=[new])
    selection = sweep_state(sweep, records).selection("sparse_elu")
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
    finals = [spec.as_dict() for spec in final_plan(sweep_state(sweep, records))]
    variants = {*sweep.settings.grids, *sweep.settings.references}
    assert {f["variant"] for f in finals} == variants
    assert len(finals) == len(variants) * len(sweep.settings.final_seeds)
    assert {f["seed"] for f in finals} == set(sweep.settings.final_seeds)
    assert all(f["data.val_count"] == 0 for f in finals)
    for variant, grid in sweep.settings.grids.items():
        key = sweep.key(variant)
        assert {f[key] for f in finals if f["variant"] == variant} == {grid[len(grid) // 2]}


def test_selection_runs_hold_out_the_validation_images(sweep):
    spec = sweep.spec("dropout", 1, 0.05).as_dict()
    assert spec == {
        "variant": "dropout",
        "seed": 1,
        "data.val_count": 17,
        "variants.dropout.dropout": 0.05,
    }


def test_the_unet_sweep_runs_the_unet_on_its_own_grids_and_seeds(sweep, unet_sweep):
    settings = unet_sweep.settings
    assert settings == sweep.config.sweep.unet and settings.val_count == 17
    specs = [spec.as_dict() for spec in selection_plan(sweep_state(unet_sweep, []))]
    assert all(spec["model.arch"] == "unet" for spec in specs)
    assert {spec["seed"] for spec in specs} == set(settings.seeds)
    assert len(specs) == len(settings.seeds) * (
        sum(map(len, settings.grids.values())) + len(settings.references)
    )
    # A paper run with the same overrides does not count as the U-Net's.
    paper_runs = [
        record_for(sweep, sweep.spec(v, seed, x), 0.5, 0.5)
        for v, grid in settings.grids.items()
        for x in grid
        for seed in settings.seeds
    ]
    state = sweep_state(unet_sweep, paper_runs)
    assert selection_plan(state) == selection_plan(sweep_state(unet_sweep, []))
    assert all(s.selected is None for s in state.selections)


def test_the_unet_finals_use_its_final_seeds(unet_sweep):
    records = []
    for variant, grid in unet_sweep.settings.grids.items():
        records += selection_records(
            unet_sweep, variant, lambda x, m=grid[1]: 1.0 - abs(x - m), lambda x: 0
        )
    finals = [spec.as_dict() for spec in final_plan(sweep_state(unet_sweep, records))]
    assert {f["seed"] for f in finals} == set(unet_sweep.settings.final_seeds) == {6278, 1, 2, 3, 4}
    assert all(f["model.arch"] == "unet" and f["data.val_count"] == 0 for f in finals)


def test_a_network_without_a_sweep_section_is_refused(sweep):
    from dataclasses import replace

    from sfae.errors import SfaeError

    config = replace(sweep.config, sweep=sweep.config.sweep.model_copy(update={"unet": None}))
    with pytest.raises(SfaeError, match="no sweep.unet section .the sweeps: paper, unet_stacked"):
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
            record_for(unet_sweep, unet_sweep.spec(variant, seed), 0.7 + index / 50, 0.99)
            for seed in unet_sweep.settings.seeds
        ]
    return records


WIDER, ZOOM, LONGER = (
    {"model.unet.width": 12},
    {"variants.augment.augment.zoom": 0.3},
    {"model.unet.epochs": 250},
)


def unet_sweep_with(unet_sweep, **settings) -> Sweep:
    """The U-Net sweep with some of its settings changed."""
    from dataclasses import replace

    unet = unet_sweep.settings.model_copy(update=settings)
    sweep = unet_sweep.config.sweep.model_copy(update={"unet": unet})
    return Sweep(replace(unet_sweep.config, sweep=sweep), unet_sweep.params, "unet")


@pytest.fixture(scope="module")
def candidates_sweep(unet_sweep) -> Sweep:
    """The U-Net sweep with known candidates: two read by every variant, one by augment."""
    return unet_sweep_with(unet_sweep, candidates=(WIDER, ZOOM, {**WIDER, **ZOOM}, LONGER))


def test_candidates_change_the_variant_that_leads_on_validation(candidates_sweep):
    sweep = candidates_sweep
    records = selected_unet(sweep, lead="l2")
    grid = sweep.settings.grids["l2"]
    leader = sweep_state(sweep, records).leader
    assert (leader.variant, leader.strength) == ("l2", {"variants.l2.regularizer_scale": grid[1]})
    base = {
        "variant": "l2",
        "seed": sweep.settings.seeds[0],
        "data.val_count": 17,
        "model.arch": "unet",
        "variants.l2.regularizer_scale": grid[1],
    }
    # Augment's settings change no l2 run: those candidates are the same runs, run once.
    assert [s.as_dict() for s in candidate_plan(sweep_state(sweep, records))] == [
        {**base, **WIDER},
        {**base, **LONGER},
    ]
    # A reference that leads on validation is taken as it is (no strength), every setting.
    records = selected_unet(sweep, lead="l2", lead_val=0.65)
    last = sweep.settings.references[-1]
    leader = sweep_state(sweep, records).leader
    assert last == "augment" and (leader.variant, leader.strength) == (last, {})
    plan = [s.as_dict() for s in candidate_plan(sweep_state(sweep, records))]
    assert len(plan) == len(sweep.settings.candidates) and all(
        spec["variant"] == last and "variants.l2.regularizer_scale" not in spec for spec in plan
    )


def test_no_candidate_runs_before_every_selection_is_complete(candidates_sweep):
    records = selected_unet(candidates_sweep)
    missing_one = records[1:]  # one selection run of the first grid is gone
    state = sweep_state(candidates_sweep, missing_one)
    assert state.leader is None and state.candidates == ()
    assert candidate_plan(state) == []


def test_the_best_candidate_on_validation_runs_the_final_seeds(candidates_sweep):
    sweep = candidates_sweep
    records = selected_unet(sweep)
    leader = sweep_state(sweep, records).leader
    # Validation prefers LONGER; test IoU would prefer WIDER: validation wins.
    for candidate, val, test in ((WIDER, 0.5, 0.99), (LONGER, 0.95, 0.1)):
        for seed in sweep.settings.seeds:
            spec = sweep.spec(leader.variant, seed, overrides={**leader.strength, **candidate})
            records.append(record_for(sweep, spec, val, test))
    state = sweep_state(sweep, records)
    assert state.best.overrides == LONGER
    finals = [s.as_dict() for s in candidate_plan(state)][-5:]
    assert {f["seed"] for f in finals} == set(sweep.final_seeds) == {6278, 1, 2, 3, 4}
    assert all(f["data.val_count"] == 0 and f.items() >= LONGER.items() for f in finals)
    assert state.best_finals.runs.records == ()
    records += [record_for(sweep, Spec.from_dict(f), 0.0, 0.7) for f in finals]
    assert len(sweep_state(sweep, records).best_finals.runs.records) == 5
    # Were the variant as swept best on validation, its own finals would do: no new run.
    worse = [r for r in records if r.evaluate["val"]["iou_pooled"] != 0.95]
    for seed in sweep.settings.seeds:
        spec = sweep.spec(leader.variant, seed, overrides={**leader.strength, **LONGER})
        worse.append(record_for(sweep, spec, 0.1, 0.99))
    state = sweep_state(sweep, worse)
    assert state.best.overrides == {} and state.best_finals is None
    assert len(candidate_plan(state)) == 2 * len(sweep.settings.seeds)


def test_a_candidate_that_ties_the_variant_as_swept_runs_no_new_finals(candidates_sweep):
    """A tie on validation goes to the variant as swept: its finals are run already."""
    sweep = candidates_sweep
    records = selected_unet(sweep)
    leader = sweep_state(sweep, records).leader
    for candidate in (WIDER, LONGER):
        for seed in sweep.settings.seeds:
            spec = sweep.spec(leader.variant, seed, overrides={**leader.strength, **candidate})
            records.append(record_for(sweep, spec, leader.validation, 0.99))
    state = sweep_state(sweep, records)
    assert [c.overrides for c in state.candidates] == [{}, WIDER, LONGER]
    assert {c.runs.mean for c in state.candidates} == {leader.validation}
    assert state.best.overrides == {} and state.best_finals is None


def test_plateau_seeds_run_after_the_selection_and_never_move_it(unet_sweep):
    sweep = unet_sweep_with(unet_sweep, plateau_seeds=(2,))
    assert plateau_plan(sweep_state(sweep, [])) == []  # nothing before the selection is fixed
    records = selected_unet(sweep, lead="l2")
    before = sweep_state(sweep, records)
    planned = plateau_plan(before)
    points = sum(len(s.points) for s in before.selections)
    assert len(planned) == points and {spec.as_dict()["seed"] for spec in planned} == {2}
    assert {g.step for g in before.gaps} >= {"plateau"}
    # Seed 2 would pick another strength of l2 and lift it above the leader: neither the
    # selection nor the leader moves; the plateau and each seed's pick read both seeds.
    grid = sweep.settings.grids["l2"]
    top = {"l2": grid[0]}
    extra = [
        record_for(
            sweep, spec, 0.99 if spec.as_dict().get(sweep.key("l2")) == top["l2"] else 0.1, 0
        )
        for spec in planned
    ]
    after = sweep_state(sweep, records + extra)
    l2 = after.selection("l2")
    assert l2.selected == before.selection("l2").selected == grid[1]
    assert after.leader == before.leader and plateau_plan(after) == planned
    assert l2.plateau.se is not None and before.selection("l2").plateau.se is None
    assert [(p.seed, p.strength) for p in l2.plateau.seed_picks] == [(1, grid[1]), (2, grid[0])]
    assert {**l2.points[grid[0]].validation, **l2.spread[grid[0]].validation} == {
        1: pytest.approx(0.9 - abs(grid[0] - grid[1]) * 1e-3),
        2: 0.99,
    }
    assert not [g for g in after.gaps if g.step == "plateau"]


def test_a_plateau_seed_that_is_a_selection_seed_is_refused(tmp_path):
    import yaml

    from sfae.errors import SfaeError

    document = yaml.safe_load((REPO / "params.yaml").read_text())
    document["sweep"]["unet"]["plateau_seeds"] = [2, 1]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(SfaeError, match=r"sweep.unet.plateau_seeds .*seed 1, already a selection"):
        load_plans(path, REGULARISERS)


def test_a_points_spread_is_the_sample_sd_over_its_seeds(sweep):
    import statistics

    x = sweep.settings.grids["l2"][0]
    values = {seed: 0.5 + 0.2 * index for index, seed in enumerate(sweep.settings.seeds)}
    records = [
        record_for(sweep, sweep.spec("l2", seed, x), value, 0.0) for seed, value in values.items()
    ]
    point = sweep_state(sweep, records).selection("l2").points[x]
    assert len(values) > 1 and point.validation == values
    assert point.mean == pytest.approx(statistics.mean(values.values()))
    assert point.std == pytest.approx(statistics.stdev(values.values()))


def test_only_planned_runs_of_another_machine_kind_are_left_out(sweep):
    from dataclasses import replace

    cpu = Sweep(sweep.config, sweep.params, "paper", "2-core x86_64 CPU")
    x = sweep.settings.grids["l2"][0]
    planned = record_for(cpu, cpu.spec("l2", 1, x), 0.5, 0.5)
    unplanned = record_for(cpu, cpu.spec("l2", 1, x * 3), 0.5, 0.5)  # off the grid
    gpu = "Linux-x, x86_64, 16 CPUs, NVIDIA H100 80GB HBM3"
    on_gpu = [replace(record, machine=gpu) for record in (planned, unplanned)]
    state = sweep_state(cpu, on_gpu)
    assert state.left_out == (on_gpu[0],)
    assert state.selection("l2").points[x].records == ()  # read for no row either


def test_a_candidate_with_an_unknown_or_a_sweep_key_is_refused(unet_sweep, tmp_path):
    from sfae.errors import SfaeError

    with pytest.raises(SfaeError, match="model.unet.widht is not a setting"):
        unet_sweep_with(unet_sweep, candidates=({"model.unet.widht": 12},))
    text = (REPO / "params.yaml").read_text()
    assert "    candidates:\n      - {model.unet.width: 12}" in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("- {model.unet.width: 12}", "- {seed: 3}"))
    with pytest.raises(SfaeError, match=r"candidates.*may not set seed"):
        load_plans(path, REGULARISERS)
    path.write_text(text.replace("- {model.unet.width: 12}", "- model.unet.width"))
    with pytest.raises(SfaeError, match="candidates.*must be a list of"):
        load_plans(path, REGULARISERS)


# ---------------------------------------------------------------- named sweeps


@pytest.fixture(scope="module")
def named():
    """Every sweep params.yaml names, by name."""
    from sfae.config import read_yaml

    path = REPO / "params.yaml"
    config, params = load_plans(path, REGULARISERS), read_yaml(path.read_text())
    return {name: Sweep(config, params, name) for name in ("paper", *config.sweep.named)}


def test_params_yaml_names_the_stacked_and_unlabeled_sweeps(named):
    assert list(named) == ["paper", "unet", "unet_stacked", "unet_unlabeled"]
    stacked, unlabeled = named["unet_stacked"], named["unet_unlabeled"]
    assert stacked.arch == unlabeled.arch == named["unet"].arch == "unet"
    assert stacked.compare_with == ("augment",) and named["paper"].compare_with == ("pure",)
    assert unlabeled.compare_with == ("sparse_softabs", "pure")
    assert unlabeled.settings.references == ("pure", "sparse_softabs")
    assert stacked.settings.val_count == 17  # shared with the paper net's sweep
    assert [s.stem for s in named.values()] == [
        "sweep",
        "sweep_unet",
        "sweep_unet_stacked",
        "sweep_unet_unlabeled",
    ]
    assert [s.is_network for s in named.values()] == [True, True, False, False]


def test_a_named_sweep_plans_its_own_grids_on_its_network(named):
    stacked = named["unet_stacked"]
    specs = [spec.as_dict() for spec in selection_plan(sweep_state(stacked, []))]
    assert all(spec["model.arch"] == "unet" and spec["data.val_count"] == 17 for spec in specs)
    assert {spec["variant"] for spec in specs} == {
        "augment_dropout",
        "augment_l2",
        "augment_sparse",
        "augment",
    }
    assert {
        s["variants.augment_l2.regularizer_scale"]
        for s in specs
        if "variants.augment_l2.regularizer_scale" in s
    } == {
        0.0005,
        0.005,
        0.05,
    }
    assert len(specs) == 3 * 3 + 1  # one selection seed
    # Selected in the middle, the finals run the final seeds at that strength.
    records = []
    for variant, grid in stacked.settings.grids.items():
        records += selection_records(
            stacked, variant, lambda x, m=grid[1]: 1.0 - abs(x - m), lambda x: 0.0
        )
    records += [
        record_for(stacked, stacked.spec("augment", seed), 0.5, 0.0)
        for seed in stacked.settings.seeds
    ]
    state = sweep_state(stacked, records)
    # Missing now: the finals, and the plateau seeds' runs (they run once a grid is selected).
    assert stacked.settings.plateau_seeds
    assert state.gaps and {gap.step for gap in state.gaps} == {"final", "plateau"}
    plateau = [spec.as_dict() for spec in plateau_plan(state)]
    assert len(plateau) == 3 * 3 and {p["seed"] for p in plateau} == {2}
    finals = [spec.as_dict() for spec in final_plan(state)]
    assert len(finals) == 4 * 5 and {f["seed"] for f in finals} == {6278, 1, 2, 3, 4}
    assert {
        f["variants.augment_sparse.sparse.weight"]
        for f in finals
        if f["variant"] == "augment_sparse"
    } == {1.75}


def test_an_unknown_sweep_name_is_refused_naming_the_known_ones(sweep):
    from sfae.errors import SfaeError

    with pytest.raises(SfaeError, match="no sweep.nope section .the sweeps: paper, unet, unet_"):
        Sweep(sweep.config, sweep.params, "nope")


def test_the_sweep_command_takes_a_name_or_an_arch_not_both():
    from sfae.cli import parser

    assert parser().parse_args(["sweep", "--name", "unet_stacked"]).name == "unet_stacked"
    assert parser().parse_args(["sweep", "--arch", "unet"]).arch == "unet"
    with pytest.raises(SystemExit):
        parser().parse_args(["sweep", "--arch", "unet", "--name", "unet_stacked"])


@pytest.mark.parametrize(
    ("section", "key", "problem"),
    [
        ({"arch": "unet", "seeds": [1], "grids": {"l2": [1e-3, 1e-2]}, "references": ["pure"],
          "compare_with": ["augment"]}, "sweep.mine.compare_with", "names augment"),
        ({"arch": "unet", "seeds": [1], "grids": {"l3": [1e-3, 1e-2]}}, "sweep.mine.grids.l3",
         "is not a variant"),
        ({"arch": "cnn", "seeds": [1], "grids": {"l2": [1e-3, 1e-2]}}, "sweep.mine.arch", "cnn"),
        ({"seeds": [1], "grids": {"l2": [1e-3, 1e-2]}}, "sweep.mine", "not a known setting"),
    ],
    ids=["compare-with-a-stranger", "grid-of-no-variant", "unknown-arch", "no-arch"],
)  # fmt: skip
def test_a_bad_named_sweep_names_its_key(tmp_path, section, key, problem):
    import yaml

    from sfae.errors import SfaeError

    document = yaml.safe_load((REPO / "params.yaml").read_text())
    document["sweep"]["mine"] = section
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(SfaeError) as caught:
        load_plans(path, REGULARISERS)
    assert str(caught.value).startswith(f"{path}: {key} "), caught.value
    assert problem in str(caught.value)


# ---------------------------------------------------------------- one state, read twice


def test_the_plan_and_the_report_read_one_state(sweep, monkeypatch, tmp_path):
    """The report computes each sweep's state once and reads its selections from it: the
    strengths the final plan runs are the ones the report names."""
    import sfae.reports.build as build
    from sfae.reports.sweep_findings import findings
    from sfae.reports.sweep_report import render

    records = []
    for variant, grid in sweep.settings.grids.items():
        records += selection_records(
            sweep, variant, lambda x, m=grid[2]: 1.0 - abs(x - m), lambda x: 0.0
        )
    state = sweep_state(sweep, records)
    planned = {
        (spec.as_dict()["variant"], spec.as_dict().get(sweep.key(spec.as_dict()["variant"]) or ""))
        for spec in final_plan(state)
    }
    found = findings(state)
    assert found.state is state
    text = render(found)
    for variant, grid in sweep.settings.grids.items():
        assert (variant, grid[2]) in planned
        assert f"| `{variant}` | `{sweep.key(variant)}` |" in text
        assert (
            f"| {grid[2]:g} | 1.000 ± 0.000 | seed 1: 1.000, seed 2: 1.000 | **selected**" in text
        )
    calls = []
    monkeypatch.setattr(
        build, "sweep_state", lambda s, r: calls.append(s.name) or sweep_state(s, r)
    )
    build.write_sweep_reports([sweep], records, tmp_path)
    assert calls == ["paper"]


SRC = REPO / "src" / "sfae"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sfae"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("sfae")}
    return found


def _module(path: Path) -> str:
    return ".".join(("sfae", *path.relative_to(SRC).with_suffix("").parts))


def test_the_sweep_and_its_reports_import_no_circle_and_stay_short():
    paths = [*SRC.glob("experiments/*.py"), *SRC.glob("reports/*.py"), SRC / "plans.py"]
    graph = {_module(p): _imports(p) for p in paths}
    assert "sfae.experiments.sweep" not in graph["sfae.reports.sweep_report"]
    assert not any(m.startswith("sfae.reports") for m in graph["sfae.experiments.sweep"])
    # The plan never imports a report: experiments/ sits below reports/.
    assert not [
        (m, i) for m, deps in graph.items() if m.startswith("sfae.experiments")
        for i in deps if i.startswith("sfae.reports")
    ]  # fmt: skip

    def reach(start, seen):
        for dep in graph.get(start, ()):
            if dep not in seen:
                seen.add(dep)
                reach(dep, seen)
        return seen

    assert not [m for m in graph if m in reach(m, set())], "an import circle"
    ours = [p for p in paths if p.parent.name == "reports" or p.stem in OURS]
    long = {p.name: n for p in ours if (n := len(p.read_text().splitlines())) > 350}
    assert not long


OURS = ("plans", "study", "sweep", "sweep_state", "campaign", "plateau")
