"""A sweep: every regulariser at its best strength, chosen on validation images, then compared.

`make sweep` (`sfae sweep`) runs the paper net's sweep (params.yaml `sweep`), `make sweep-unet`
(`sfae sweep --arch unet`) the U-Net's, `sfae sweep --name NAME` any named sweep under `sweep`
(sweep.unet_stacked, ...): each its network, grids, seeds, references and comparisons. Four
steps, all through the resumable runner (sfae.experiments.campaign):

1. Selection: each regulariser at every strength of its grid and the references, with
   `val_count` training images held out, for each selection seed, scored up to `evaluate`.
2. Bracketing: where the best mean validation IoU lies at an end of a grid, the grid grows
   one step beyond that end and those runs are added, until every optimum is bracketed.
3. Final: every regulariser at its selected strength and the references, trained on all
   training images (val_count 0), for each final seed, scored on the test split.
4. Candidates (where the sweep lists any): other settings of the variant with the best
   validation IoU of all, each run like its selection runs; the best of them, if better than
   the variant as swept, then runs the final seeds.

This module says what a sweep is and which runs make it (`Spec`s); what the records hold of
them is its state (sfae.experiments.sweep_state), computed once and read by the plan and the
reports. Nothing is selected on the test split: selection reads validation IoU alone.

The study (`make study`, `sfae study`) is the plan beside the sweeps: the post's five variants x
every study seed; runs that have a record in reports/runs.jsonl are skipped (the committed
baseline among them).
"""

from __future__ import annotations

from collections import Counter

from sfae.config import POST_VARIANTS, Config, strength_key
from sfae.errors import SfaeError
from sfae.experiments.records import RunRecord, flatten
from sfae.experiments.runner import Spec, find_record, fulfils, wanted_params
from sfae.machine import UNKNOWN

MAIN = "paper"  # the name of params.yaml's own `sweep` (the paper net's)
SCORED_STAGE = "evaluate"  # sweep runs stop here: no videos
MAX_EXTENSIONS = 3  # grid steps added beyond an end, at most, per regulariser
NETWORKS = {"paper": "paper net", "unet": "U-Net"}
# The variant groups every sweep and report reads (the post's five: sfae.config.POST_VARIANTS).
PENALTIES = ("l1", "l2")
SPARSE = ("sparse_softabs", "sparse_elu")


def study_plan(config: Config) -> list[Spec]:
    return [Spec.of(variant=v, seed=s) for v in POST_VARIANTS for s in config.study.seeds]


def study_records(
    records: list[RunRecord], specs: list[Spec], params: dict, kind: str | None = None
) -> list[RunRecord]:
    """The record of every planned run that has one (of a machine of `kind`), in plan order."""
    found = [find_record(records, wanted_params(params, spec), kind) for spec in specs]
    return [record for record in found if record is not None]


def other_kinds(
    records: list[RunRecord], specs: list[Spec], params: dict, kind: str | None
) -> list[RunRecord]:
    """The records of planned runs that trained on another machine kind than `kind` (what a
    report of `kind` leaves out), in the records' order."""
    if kind is None:
        return []
    wanted = [wanted_params(params, spec) for spec in specs]
    return [
        r for r in records if r.machine_kind != kind and any(fulfils(r.params, w) for w in wanted)
    ]


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


class Sweep:
    """One sweep as params.yaml sets it: its settings, its network and the runs it is made of.

    `name`: "paper" (params.yaml's `sweep`) or a named sweep (`unet`, `unet_stacked`, ...);
    `kind`: the machine kind whose runs it reads (None: any)."""

    def __init__(self, config: Config, params: dict, name: str = MAIN, kind: str | None = None):
        if config.sweep is None:
            raise SfaeError("params.yaml has no sweep section")
        named = config.sweep.named
        settings = config.sweep if name == MAIN else named.get(name)
        if settings is None:
            known = ", ".join([MAIN, *named])
            raise SfaeError(f"params.yaml has no sweep.{name} section (the sweeps: {known})")
        self.config, self.params, self.settings, self.name = config, params, settings, name
        self.arch = MAIN if name == MAIN else settings.arch
        self.kind = kind
        # Runs of another network than params.yaml's say so; the paper net's never need to.
        self.network = {} if self.arch == "paper" else {"model.arch": self.arch}
        self.final_seeds = settings.final_seeds or config.study.seeds
        self.compare_with = settings.compare_with
        known = flatten(params)
        for candidate in settings.candidates:
            if unknown := sorted(set(candidate) - set(known)):
                raise SfaeError(
                    f"params.yaml: sweep candidate {candidate}: {unknown[0]} is not a setting"
                )

    @property
    def stem(self) -> str:
        """Its reports' file stem: sweep (the paper net's), sweep_unet, sweep_unet_stacked."""
        return "sweep" if self.name == MAIN else f"sweep_{self.name}"

    @property
    def network_name(self) -> str:
        return NETWORKS[self.arch]

    @property
    def is_network(self) -> bool:
        """A network's own sweep (the paper net's, sweep.unet), not a follow-up question."""
        return self.name == MAIN or self.name in NETWORKS

    def key(self, variant: str) -> str | None:
        return strength_key(self.config.variants[variant])

    def post_mark(self, variant: str) -> tuple[float, str] | None:
        """The post's own strength of a variant ("post"); one the post lacks has its
        params.yaml value ("default"); None for a variant without a strength."""
        key = self.key(variant)
        if key is None:
            return None
        return float(flatten(self.params)[key]), "post" if variant in POST_VARIANTS else "default"

    def in_study(self, variant: str) -> bool:
        """Whether the study trained this variant at the post's settings on this network."""
        study = self.arch == "paper" and variant in POST_VARIANTS
        return study and variant not in self.settings.references

    def spec(
        self,
        variant: str,
        seed: int,
        strength: float | None = None,
        final: bool = False,
        overrides: dict | None = None,
    ) -> Spec:
        """A run of a variant (at `strength`, where it has one) on the selection split, or on
        all training images for a final run; a candidate's `overrides` (dotted keys) on top."""
        spec = {"variant": variant, "seed": seed, **self.network}
        spec["data.val_count"] = 0 if final else self.settings.val_count
        if strength is not None:
            spec[self.key(variant)] = strength
        return Spec.from_dict({**spec, **(overrides or {})})


def records_kind(records: list[RunRecord], arch: str) -> str | None:
    """The machine kind that trained most of a network's runs (ties: the first by name;
    None when none is known): the one kind a report of that network reads."""
    kinds = Counter(
        r.machine_kind
        for r in records
        if r.params.get("model.arch", "paper") == arch and r.machine_kind != UNKNOWN
    )
    return min(kinds, key=lambda kind: (-kinds[kind], kind)) if kinds else None


def sweeps(config: Config, params: dict, records: list[RunRecord]) -> list[Sweep]:
    """Every sweep of params.yaml, the paper net's first, then the named ones in its order;
    each reads only the runs of its network's main machine kind in `records`."""
    names = [MAIN, *(config.sweep.named if config.sweep else ())]
    found = [Sweep(config, params, name) for name in names]
    return [Sweep(config, params, s.name, records_kind(records, s.arch)) for s in found]
