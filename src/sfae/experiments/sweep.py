"""The sweep: every regulariser at its best strength, chosen on validation images, then compared.

`make sweep` calls `python -m sfae.experiments.sweep`, `make sweep-unet` the same with `--arch unet`
(the U-Net's own, smaller grids and seeds: params.yaml `sweep.unet`). Three steps, all
through the resumable runner:

1. Selection: each regulariser at every strength of its grid (params.yaml `sweep.grids`) and
   the references (pure, augment), with `sweep.val_count` training images held out, for
   each selection seed, scored up to `evaluate` only (no videos).
2. Bracketing: where the best mean validation IoU lies at an end of a grid, the grid grows
   one step beyond that end and those runs are added, until every optimum is bracketed.
3. Final: every regulariser at its selected strength and the references, trained on all
   training images (val_count 0), for each final seed (the study's unless the sweep names
   its own), scored on the test split.
4. Candidates (where the sweep lists any): other settings (a wider net, longer training)
   of the variant with the best validation IoU of all, each run like its selection runs;
   the candidate with the best validation IoU, if better than the variant as swept, then
   runs the final seeds.

Nothing is selected on the test split: selection reads validation IoU alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sfae.config import ARCHS, Config, strength_key
from sfae.errors import SfaeError
from sfae.experiments.campaign import CampaignOptions, collect
from sfae.experiments.records import RunRecord, flatten, read_records
from sfae.experiments.runner import Spec, find_record, wanted_params
from sfae.machine import UNKNOWN
from sfae.nn.regularisers.registry import STRENGTH_LIMITS

SCORED_STAGE = "evaluate"  # sweep runs stop here: no videos
MAX_EXTENSIONS = 3  # grid steps added beyond an end, at most, per regulariser


def val_iou(record: RunRecord) -> float:
    """What selection looks at: pooled IoU of the held-out validation images."""
    try:
        return float(record.evaluate["val"]["iou_pooled"])
    except (KeyError, TypeError) as error:
        raise SfaeError(f"run {record.name}: evaluate.json has no val.iou_pooled") from error


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def extended_grid(grid: tuple[float, ...], curve: dict[float, float], limit: float) -> list:
    """The grid, plus one log step beyond each end where the curve's best lies at that end
    (and the step stays within the strength's limit), repeatedly, as the curve allows."""
    points = sorted(grid)
    ratio = points[1] / points[0]
    for _ in range(MAX_EXTENSIONS):
        measured = [p for p in points if p in curve]
        if len(measured) < len(points):
            break  # an unmeasured point: decide once it is
        best = max(measured, key=lambda p: (curve[p], -p))
        if best == points[0]:
            points.insert(0, _round(points[0] / ratio))
        elif best == points[-1] and points[-1] * ratio <= limit:
            points.append(_round(points[-1] * ratio))
        else:
            break
    return points


@dataclass(frozen=True)
class Selection:
    """One regulariser's selection: mean and std of validation IoU per strength, the best."""

    variant: str
    key: str
    points: list[float]  # the grid, extended where its best lay at an end
    curve: dict[float, tuple[float, float, int]]  # strength -> (mean, std, seeds)
    selected: float | None  # None until every point has all its seeds
    bracketed: bool


@dataclass(frozen=True)
class Candidate:
    """A setting of the leading variant tried on validation: its overrides ({}: the variant
    as swept) and mean, std and count of its validation IoU over the selection seeds."""

    overrides: dict
    validation: tuple[float, float, int] | None

    @property
    def label(self) -> str:
        return ", ".join(f"{k.rsplit('.', 1)[-1]} {v}" for k, v in self.overrides.items()) or (
            "as swept"
        )


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), spread, len(values)


class Sweep:
    """The sweep's plan for one network, computed from params.yaml and the records so far."""

    def __init__(self, config: Config, params: dict, arch: str = "paper", kind: str | None = None):
        if config.sweep is None:
            raise SfaeError("params.yaml has no sweep section")
        settings = config.sweep if arch == "paper" else getattr(config.sweep, arch, None)
        if settings is None:
            raise SfaeError(f"params.yaml has no sweep.{arch} section")
        self.config, self.params, self.settings, self.arch = config, params, settings, arch
        # Every run the sweep reads trained on a machine of this kind (None: any kind).
        self.kind = kind
        # Runs of another network than params.yaml's say so; the paper net's never need to.
        self.network = {} if arch == "paper" else {"model.arch": arch}
        self.final_seeds = settings.final_seeds or config.study.seeds
        known = flatten(params)
        for candidate in settings.candidates:
            if unknown := sorted(set(candidate) - set(known)):
                raise SfaeError(
                    f"params.yaml: sweep candidate {candidate}: {unknown[0]} is not a setting"
                )

    def key(self, variant: str) -> str:
        return strength_key(self.config.variants[variant])

    def selection_spec(self, variant: str, seed: int, strength: float | None = None) -> Spec:
        overrides = {
            "variant": variant,
            "seed": seed,
            "data.val_count": self.settings.val_count,
            **self.network,
        }
        if strength is not None:
            overrides[self.key(variant)] = strength
        return Spec.from_dict(overrides)

    def _record(self, records: list[RunRecord], spec: Spec) -> RunRecord | None:
        return find_record(records, wanted_params(self.params, spec), self.kind)

    def found(self, records: list[RunRecord], specs) -> list[RunRecord]:
        """The recorded runs of `specs`, in order, each once (unrecorded ones left out)."""
        runs = [self._record(records, spec) for spec in specs]
        return list({id(r): r for r in runs if r is not None}.values())

    def curve(self, records: list[RunRecord], variant: str, points) -> dict:
        curve = {}
        for strength in points:
            specs = [self.selection_spec(variant, seed, strength) for seed in self.settings.seeds]
            values = [val_iou(record) for record in self.found(records, specs)]
            if values:
                curve[strength] = _mean_std(values)
        return curve

    def selections(self, records: list[RunRecord]) -> list[Selection]:
        chosen = []
        seeds = len(self.settings.seeds)
        for variant, grid in self.settings.grids.items():
            key = self.key(variant)
            limit = STRENGTH_LIMITS[key.rsplit(".", 1)[1]]
            points = list(grid)
            while True:  # the extension depends on the points measured so far
                curve = self.curve(records, variant, points)
                complete = {p: v[0] for p, v in curve.items() if v[2] == seeds}
                grown = extended_grid(grid, complete, limit)
                if grown == points:
                    break
                points = grown
            curve = self.curve(records, variant, points)
            done = all(p in curve and curve[p][2] == seeds for p in points)
            best = max(points, key=lambda p: (curve[p][0], -p)) if done else None
            bracketed = best is not None and points[0] < best < points[-1]
            chosen.append(Selection(variant, key, points, curve, best, bracketed))
        return chosen

    def selection_plan(self, records: list[RunRecord]) -> list[Spec]:
        """Every selection run the records call for now (grids as extended so far)."""
        specs = []
        for selection in self.selections(records):
            for strength in selection.points:
                specs += [
                    self.selection_spec(selection.variant, seed, strength)
                    for seed in self.settings.seeds
                ]
        for variant in self.settings.references:
            specs += [self.selection_spec(variant, seed) for seed in self.settings.seeds]
        return specs

    def final_plan(self, records: list[RunRecord]) -> list[Spec]:
        """Each regulariser at its selected strength and each reference, on all training
        images, for every final seed (empty for a regulariser not yet selected)."""
        specs = []
        finals = [(s.variant, {s.key: s.selected}) for s in self.selections(records) if s.selected]
        finals += [(variant, {}) for variant in self.settings.references]
        for variant, strength in finals:
            for seed in self.final_seeds:
                overrides = {"variant": variant, "seed": seed, "data.val_count": 0}
                specs.append(Spec.from_dict({**overrides, **self.network, **strength}))
        return specs

    def leader(self, records: list[RunRecord]) -> tuple[str, dict] | None:
        """The variant (with its selected strength) of best mean validation IoU among the
        selected regularisers and the references; None until all are measured."""
        seeds = len(self.settings.seeds)
        options = []
        for s in self.selections(records):
            if s.selected is None:
                return None
            options.append((s.curve[s.selected][0], s.variant, {s.key: s.selected}))
        for variant in self.settings.references:
            specs = [self.selection_spec(variant, seed) for seed in self.settings.seeds]
            found = self.found(records, specs)
            if len(found) < seeds:
                return None
            options.append((float(np.mean([val_iou(r) for r in found])), variant, {}))
        return max(options, key=lambda option: option[0])[1:] if options else None

    def candidate_spec(self, leader: tuple, overrides: dict, seed: int, final: bool = False):
        """A run of the leader (variant, strength) with a candidate's overrides: on the
        selection split, or on all training images for a final run."""
        variant, strength = leader
        spec = self.selection_spec(variant, seed).as_dict()
        if final:
            spec["data.val_count"] = 0
        return Spec.from_dict({**spec, **strength, **overrides})

    def candidates(self, records: list[RunRecord]) -> tuple[tuple | None, list[Candidate]]:
        """The leader and its candidates (first: as swept) with their validation IoU."""
        leader = self.leader(records) if self.settings.candidates else None
        if leader is None:
            return None, []
        found, seen = [], []
        for overrides in [{}, *self.settings.candidates]:
            specs = [self.candidate_spec(leader, overrides, s) for s in self.settings.seeds]
            # Settings the leader's runs do not read (another variant's) make no new run.
            if (scored := wanted_params(self.params, specs[0])) in seen:
                continue
            seen.append(scored)
            runs = self.found(records, specs)
            validation = _mean_std([val_iou(r) for r in runs]) if runs else None
            found.append(Candidate(dict(overrides), validation))
        return leader, found

    def best_candidate(self, records: list[RunRecord]) -> Candidate | None:
        """The candidate of best mean validation IoU once all are measured (ties: the
        earlier, so the variant as swept wins a tie); None before."""
        _, found = self.candidates(records)
        seeds = len(self.settings.seeds)
        if not found or any(c.validation is None or c.validation[2] < seeds for c in found):
            return None
        return max(found, key=lambda c: c.validation[0])

    def candidate_plan(self, records: list[RunRecord]) -> list[Spec]:
        """The candidates' runs on validation, and once all are measured, the final runs of
        the best if it is not the variant as swept (whose finals the final plan holds)."""
        leader, found = self.candidates(records)
        specs = [
            self.candidate_spec(leader, c.overrides, seed)
            for c in found[1:]
            for seed in self.settings.seeds
        ]
        best = self.best_candidate(records)
        if best is not None and best.overrides:
            specs += [
                self.candidate_spec(leader, best.overrides, seed, final=True)
                for seed in self.final_seeds
            ]
        return specs

    def candidate_finals(self, records: list[RunRecord]) -> list[RunRecord]:
        """The recorded final runs of the best candidate (the leader's own if it is as swept)."""
        leader, best = self.leader(records), self.best_candidate(records)
        if best is None:
            return []
        specs = [
            self.candidate_spec(leader, best.overrides, seed, final=True)
            for seed in self.final_seeds
        ]
        return self.found(records, specs)

    def final_records(self, records: list[RunRecord]) -> dict[str, list[RunRecord]]:
        by_variant: dict[str, list[RunRecord]] = {}
        for spec in self.final_plan(records):
            record = self._record(records, spec)
            if record is not None:
                by_variant.setdefault(spec.as_dict()["variant"], []).append(record)
        return by_variant


def records_kind(records: list[RunRecord], arch: str) -> str | None:
    """The machine kind that trained most of a network's runs (ties: the first by name;
    None when none is known): the one kind a report of that network reads."""
    kinds = Counter(
        r.machine_kind
        for r in records
        if r.param("model.arch", "paper") == arch and r.machine_kind != UNKNOWN
    )
    return min(kinds, key=lambda kind: (-kinds[kind], kind)) if kinds else None


def sweeps(config: Config, params: dict, records: list[RunRecord] | None = None) -> list[Sweep]:
    """One sweep per network that params.yaml gives one: the paper net's, then the others';
    with records, each reads only the runs of its network's main machine kind."""
    archs = ["paper"] + [
        arch for arch in ARCHS if arch != "paper" and getattr(config.sweep, arch, None) is not None
    ]
    return [
        Sweep(config, params, arch, records_kind(records, arch) if records else None)
        for arch in archs
    ]


def run_sweep(sweep: Sweep, options: CampaignOptions, records_path: Path, root: Path) -> None:
    """Every run the sweep calls for, round after round, as the records call for them."""
    desc = "sweep" if sweep.arch == "paper" else f"sweep {sweep.arch}"

    def run(specs: list[Spec], step: str) -> None:
        step = f"{desc}: {step}"
        collect(options, specs, sweep.params, records_path, root, step, SCORED_STAGE, sweep.kind)

    # Each round may extend a grid; a round that adds no run ends the selection.
    planned: set[Spec] = set()
    while True:
        specs = sweep.selection_plan(read_records(records_path))
        if set(specs) <= planned:
            break
        planned |= set(specs)
        run(specs, "selection")
    run(sweep.final_plan(read_records(records_path)), "final")
    # The candidates' validation runs, then the best one's finals: two rounds.
    for _ in range(2):
        if specs := sweep.candidate_plan(read_records(records_path)):
            run(specs, "candidates")
