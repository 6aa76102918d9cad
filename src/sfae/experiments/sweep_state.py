"""What the records hold of a sweep, read by the plan (campaign) and the reports: every planned
run is a `Spec` held next to the record found for it."""

import json
from dataclasses import dataclass, field

import numpy as np

from sfae.errors import SfaeError
from sfae.experiments.plateau import Plateau, plateau
from sfae.experiments.records import RunRecord
from sfae.experiments.runner import Spec, find_record, wanted_params
from sfae.experiments.sweep import Sweep, extended_grid, other_kinds, study_plan
from sfae.nn.regularisers.registry import STRENGTH_LIMITS


def val_iou(record: RunRecord) -> float:
    """What selection looks at: pooled IoU of the held-out validation images."""
    try:
        return float(record.evaluate["val"]["iou_pooled"])
    except (KeyError, TypeError) as error:
        raise SfaeError(f"run {record.name}: evaluate.json has no val.iou_pooled") from error


@dataclass(frozen=True)
class Runs:  # planned runs (one per seed) and the records found for them, in the same order
    specs: tuple[Spec, ...]
    found: tuple[RunRecord | None, ...]

    @property
    def records(self) -> tuple[RunRecord, ...]:
        return tuple(r for r in self.found if r is not None)

    @property
    def complete(self) -> bool:
        return all(record is not None for record in self.found)

    @property
    def validation(self):  # seed -> validation IoU of the recorded runs
        return {r.seed: val_iou(r) for r in self.records}

    @property
    def mean(self) -> float | None:
        values = list(self.validation.values())
        return float(np.mean(values)) if values else None

    @property
    def std(self) -> float:
        values = list(self.validation.values())
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class Selection:  # one regulariser's selection on validation IoU
    variant: str
    key: str  # the dotted param its strength sets
    grid: tuple[float, ...]  # as params.yaml gives it
    points: dict[float, Runs]  # the grid as extended, strength -> its selection runs
    selected: float | None  # None until every point has all its seeds
    plateau: Plateau | None  # once selected; over the plateau seeds too once they all ran
    post: tuple[float, str]  # the post's value ("post") or params.yaml's ("default")
    spread: dict[float, Runs] = field(default_factory=dict)  # plateau seeds' runs

    @property
    def added(self) -> tuple[float, ...]:
        return tuple(p for p in self.points if p not in self.grid)

    @property
    def best_mean(self) -> float | None:
        return None if self.selected is None else self.points[self.selected].mean

    @property
    def bracketed(self) -> bool:
        return self.selected is not None and min(self.points) < self.selected < max(self.points)


@dataclass(frozen=True)
class Reference:  # a variant without a strength, and its selection runs
    variant: str
    runs: Runs


@dataclass(frozen=True)
class Leader:  # the variant of best mean validation IoU of the selected ones and the references
    variant: str
    strength: dict  # {its strength key: the selected value}, {} for a reference
    validation: float

    @property
    def label(self) -> str:
        return "".join([self.variant, *(f" @ {v:g}" for v in self.strength.values())])


@dataclass(frozen=True)
class Candidate:  # a setting of the leader tried on validation: its overrides ({}: as swept)
    overrides: dict
    runs: Runs

    @property
    def label(self) -> str:
        settings = [f"{key.rsplit('.', 1)[-1]} {value}" for key, value in self.overrides.items()]
        return ", ".join(settings) or "as swept"


@dataclass(frozen=True)
class FinalRow:  # one row of the final table: a variant at one strength, on all training images
    variant: str
    label: str  # "pure", "l2 @ 0.0005", "l2 @ 0.005 (post)", "l2 (not selected)"
    strength: float | None
    runs: Runs
    planned: bool  # the sweep's own row (selected or a reference); False: the study's
    selected: bool = True  # False: its regulariser is not selected yet (no run planned)


@dataclass(frozen=True)
class Gap:  # runs still missing: `missing` of `planned` runs of one step for one label
    step: str  # "selection" (of a regulariser), "reference", "final", "candidate", "plateau"
    label: str
    missing: int
    planned: int


@dataclass(frozen=True)
class SweepState:
    sweep: Sweep
    selections: tuple[Selection, ...]
    references: tuple[Reference, ...]
    leader: Leader | None  # None until every selection and reference is measured
    candidates: tuple[Candidate, ...]  # first: the leader as swept; empty without a leader
    best: Candidate | None  # of best validation IoU, once all are measured
    best_finals: FinalRow | None  # the best candidate's finals, if it is not as swept
    rows: tuple[FinalRow, ...]
    gaps: tuple[Gap, ...]
    left_out: tuple[RunRecord, ...]  # records of planned runs, of another machine kind

    def selection(self, variant: str) -> Selection | None:
        return next((s for s in self.selections if s.variant == variant), None)

    def row(self, variant: str) -> FinalRow | None:
        """The sweep's own row of a variant (the one compared)."""
        return next((r for r in self.rows if r.variant == variant and r.planned), None)

    @property
    def selection_runs(self) -> tuple[RunRecord, ...]:
        runs = [r for s in self.selections for p in s.points.values() for r in p.records]
        runs += [r for s in self.selections for p in s.spread.values() for r in p.records]
        runs += [r for ref in self.references for r in ref.runs.records]
        runs += [r for c in self.candidates for r in c.runs.records]
        return tuple({id(r): r for r in runs}.values())  # each once

    @property
    def final_runs(self) -> tuple[RunRecord, ...]:
        rows = [*self.rows, *([self.best_finals] if self.best_finals else [])]
        return tuple({id(r): r for row in rows for r in row.runs.records}.values())


class _Finder:  # records for specs, of the sweep's machine kind; the specs asked for are noted
    def __init__(self, sweep: Sweep, records: list[RunRecord]):
        # find_record takes the first match: a fixed order makes the state order-free.
        self.records = sorted(
            records, key=lambda r: (r.variant, json.dumps(r.params, sort_keys=True), r.rev, r.name)
        )
        self.sweep, self.asked = sweep, []

    def runs(self, specs) -> Runs:
        self.asked += specs
        wanted = [wanted_params(self.sweep.params, spec) for spec in specs]
        found = (find_record(self.records, w, self.sweep.kind) for w in wanted)
        return Runs(tuple(specs), tuple(found))

    def seeds(self, seeds, variant: str, strength=None, final=False, overrides=None) -> Runs:
        return self.runs([self.sweep.spec(variant, s, strength, final, overrides) for s in seeds])


def _selection(sweep: Sweep, finder: _Finder, variant: str, grid: tuple) -> Selection:
    key, seeds = sweep.key(variant), sweep.settings.seeds
    limit = STRENGTH_LIMITS[key.rsplit(".", 1)[1]]

    curve: dict[float, Runs] = {}  # the grid, grown while what is measured extends it
    while list(curve) != (
        points := extended_grid(grid, {p: r.mean for p, r in curve.items() if r.complete}, limit)
    ):
        curve = {p: finder.seeds(seeds, variant, p) for p in points}
    done = all(runs.complete for runs in curve.values())
    best = max(curve, key=lambda p: (curve[p].mean, -p)) if done else None
    extra = (sweep.settings.plateau_seeds or ()) if done else ()
    spread = {p: finder.seeds(extra, variant, p) for p in points} if extra else {}
    values = {p: runs.validation for p, runs in curve.items()}
    if spread and all(runs.complete for runs in spread.values()):  # else the selection's alone
        values = {p: {**values[p], **spread[p].validation} for p in values}
    flat = plateau(values) if done else None
    return Selection(variant, key, tuple(grid), curve, best, flat, sweep.post_mark(variant), spread)


def _leader(selections, references) -> Leader | None:
    measured = [s.selected is not None for s in selections] + [r.runs.complete for r in references]
    if not all(measured):
        return None
    options = [Leader(s.variant, {s.key: s.selected}, s.best_mean) for s in selections]
    options += [Leader(ref.variant, {}, ref.runs.mean) for ref in references]
    return max(options, key=lambda leader: leader.validation) if options else None


def _candidates(sweep: Sweep, finder: _Finder, leader: Leader | None) -> tuple[Candidate, ...]:
    if leader is None or not sweep.settings.candidates:
        return ()
    found, seen = [], []
    for overrides in [{}, *sweep.settings.candidates]:
        settings = {**leader.strength, **overrides}
        specs = [sweep.spec(leader.variant, s, overrides=settings) for s in sweep.settings.seeds]
        # Settings the leader's runs do not read (another variant's) make no new run.
        if (scored := wanted_params(sweep.params, specs[0])) in seen:
            continue
        seen.append(scored)
        found.append(Candidate(dict(overrides), finder.runs(specs)))
    return tuple(found)


def _rows(sweep: Sweep, finder: _Finder, selections) -> list[FinalRow]:
    """Each variant at its selected strength (references by name), and the study's if not those."""
    chosen = {s.variant: s.selected for s in selections}
    study = study_plan(sweep.config)
    rows = []
    for variant in sweep.config.variants:
        post = sweep.post_mark(variant)
        at_post = variant if post is None else f"{variant} @ {post[0]:g} (post)"
        in_study = sweep.in_study(variant)
        x = chosen.get(variant)
        if variant in chosen and x is None:
            unselected = f"{variant} (not selected)"
            rows.append(FinalRow(variant, unselected, None, Runs((), ()), True, False))
        elif variant in chosen or variant in sweep.settings.references:  # a reference: x None
            same = in_study and post is not None and bool(np.isclose(x, post[0]))
            label = at_post if same else variant if x is None else f"{variant} @ {x:g}"
            finals = finder.seeds(sweep.final_seeds, variant, x, final=True)
            rows.append(FinalRow(variant, label, x, finals, True))
            in_study = in_study and not same  # the same runs: one row
        if in_study:
            specs = [spec for spec in study if spec.as_dict()["variant"] == variant]
            rows.append(FinalRow(variant, at_post, post and post[0], finder.runs(specs), False))
    return rows


def _gaps(selections, references, rows, candidates, best_finals) -> tuple[Gap, ...]:
    """What is missing, step by step (an unselected regulariser's finals come after)."""
    steps = [("selection", s.variant, s.points.values()) for s in selections if s.selected is None]
    steps += [("reference", r.variant, [r.runs]) for r in references]
    steps += [("final", row.label, [row.runs]) for row in rows if row.planned and row.selected]
    steps += [("candidate", c.label, [c.runs]) for c in candidates]
    steps += [("final", best_finals.label, [best_finals.runs])] if best_finals else []
    steps += [("plateau", s.variant, s.spread.values()) for s in selections if s.spread]
    gaps = [
        Gap(step, label, sum(r.found.count(None) for r in runs), sum(len(r.specs) for r in runs))
        for step, label, runs in steps
    ]
    return tuple(gap for gap in gaps if gap.missing)


def sweep_state(sweep: Sweep, records: list[RunRecord]) -> SweepState:
    """The sweep's state in the records (of its machine kind); records in any order."""
    finder = _Finder(sweep, records)
    grids, seeds = sweep.settings.grids.items(), sweep.settings.seeds
    selections = tuple(_selection(sweep, finder, variant, grid) for variant, grid in grids)
    references = tuple(Reference(v, finder.seeds(seeds, v)) for v in sweep.settings.references)
    leader = _leader(selections, references)
    candidates = _candidates(sweep, finder, leader)
    # Of best mean validation IoU once all are measured (ties: the earlier, as swept).
    measured = candidates and all(c.runs.complete for c in candidates)
    best = max(candidates, key=lambda c: c.runs.mean) if measured else None
    best_finals = None
    if best is not None and best.overrides:
        overrides = {**leader.strength, **best.overrides}
        finals = finder.seeds(sweep.final_seeds, leader.variant, final=True, overrides=overrides)
        best_finals = FinalRow(leader.variant, f"{leader.label}, {best.label}", None, finals, False)
    rows = tuple(_rows(sweep, finder, selections))
    gaps = _gaps(selections, references, rows, candidates, best_finals)
    left_out = tuple(other_kinds(finder.records, finder.asked, sweep.params, sweep.kind))
    return SweepState(
        sweep, selections, references, leader, candidates, best, best_finals, rows, gaps, left_out,
    )  # fmt: skip
