"""A campaign (the study, a sweep) here or on N machines sharing a git remote; a sweep's plan is
read off its state, step by step."""

from argparse import Namespace
from pathlib import Path

from sfae.experiments.dvc_experiments import DvcExperiments
from sfae.experiments.records import read_records
from sfae.experiments.runner import Spec, record_finished, run_plan, share, wanted_params
from sfae.experiments.sweep import MAIN, SCORED_STAGE, Sweep
from sfae.experiments.sweep_state import SweepState, sweep_state


def collect(
    options: Namespace,
    specs: list,
    params: dict,
    records_path: Path,
    root: Path,
    desc: str,
    target: str | None = None,
    kind: str | None = None,
) -> None:
    """Pull (--remote), run this machine's --share (unless --report-only), push; record all."""
    experiments = DvcExperiments(root)
    if options.remote:
        experiments.pull(options.remote)
    if options.report_only:
        wanted = [wanted_params(params, spec) for spec in specs]
        record_finished(experiments, experiments.runs(), records_path, wanted)
        return
    mine = share(specs, options.share)
    run_plan(experiments, mine, params, records_path, options.jobs, target, desc=desc, kind=kind)
    if options.remote:
        experiments.push(options.remote)


def selection_plan(state: SweepState) -> list[Spec]:
    """Every selection run the records call for now (grids as extended so far)."""
    specs = [spec for s in state.selections for runs in s.points.values() for spec in runs.specs]
    return specs + [spec for reference in state.references for spec in reference.runs.specs]


def plateau_plan(state: SweepState) -> list[Spec]:
    """The plateau seeds' runs at every point of each selected grid (none before)."""
    return [spec for s in state.selections for runs in s.spread.values() for spec in runs.specs]


def final_plan(state: SweepState) -> list[Spec]:
    """The final runs of every selected regulariser and every reference."""
    return [spec for row in state.rows if row.planned for spec in row.runs.specs]


def candidate_plan(state: SweepState) -> list[Spec]:
    """The candidates' runs on validation, then the best's finals if it is not as swept."""
    specs = [spec for candidate in state.candidates[1:] for spec in candidate.runs.specs]
    return specs + list(state.best_finals.runs.specs if state.best_finals else ())


def run_sweep(sweep: Sweep, options: Namespace, records_path: Path, root: Path) -> None:
    """Every run the sweep calls for, round after round, as the records call for them."""
    desc = "sweep" if sweep.name == MAIN else f"sweep {sweep.name}"

    def run(specs: list[Spec], step: str) -> None:
        step = f"{desc}: {step}"
        collect(options, specs, sweep.params, records_path, root, step, SCORED_STAGE, sweep.kind)

    def state() -> SweepState:  # read again after each round
        return sweep_state(sweep, read_records(records_path))

    # Each round may extend a grid; a round that adds no run ends the selection.
    planned: set[Spec] = set()
    while not set(specs := selection_plan(state())) <= planned:
        planned |= set(specs)
        run(specs, "selection")
    run(final_plan(state()), "final")
    # The candidates' validation runs, then the best one's finals: two rounds.
    for _ in range(2):
        if specs := candidate_plan(state()):
            run(specs, "candidates")
    if specs := plateau_plan(state()):  # last: they never change what runs before them
        run(specs, "plateau")
