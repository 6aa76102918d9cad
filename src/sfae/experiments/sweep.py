"""A sweep (README.md, "make sweep"): the runs (`Spec`s) that select each regulariser's strength
on validation images, never the test split, and compare them; the study is the plan beside it."""

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


def study_records(records: list[RunRecord], specs: list[Spec], params: dict, kind=None) -> list:
    """The record of every planned run that has one (of a machine of `kind`), in plan order."""
    return [r for spec in specs if (r := find_record(records, wanted_params(params, spec), kind))]


def other_kinds(records: list[RunRecord], specs: list[Spec], params: dict, kind) -> list:
    """The records of planned runs that trained on another machine kind than `kind`."""
    wanted = [wanted_params(params, spec) for spec in specs] if kind is not None else []
    return [
        r for r in records if r.machine_kind != kind and any(fulfils(r.params, w) for w in wanted)
    ]


def extended_grid(grid: tuple[float, ...], curve: dict[float, float], limit: float) -> list:
    """The grid, plus a log step beyond an end where the curve's best lies (within `limit`)."""
    points = sorted(grid)
    ratio = points[1] / points[0]
    for _ in range(MAX_EXTENSIONS):
        measured = [p for p in points if p in curve]
        if len(measured) < len(points):
            break  # an unmeasured point: decide once it is
        best = max(measured, key=lambda p: (curve[p], -p))
        if best == points[0]:
            points.insert(0, float(f"{points[0] / ratio:.3g}"))
        elif best == points[-1] and points[-1] * ratio <= limit:
            points.append(float(f"{points[-1] * ratio:.3g}"))
        else:
            break
    return points


class Sweep:
    """A sweep of params.yaml ("paper" or a named one); `kind`: whose runs it reads (None: any)."""

    def __init__(self, config: Config, params: dict, name: str = MAIN, kind: str | None = None):
        if config.sweep is None:
            raise SfaeError("params.yaml has no sweep section")
        named = config.sweep.named
        settings = config.sweep if name == MAIN else named.get(name)
        if settings is None:
            known = ", ".join([MAIN, *named])
            raise SfaeError(f"params.yaml has no sweep.{name} section (the sweeps: {known})")
        self.config, self.params, self.settings, self.name = config, params, settings, name
        self.arch, self.kind = MAIN if name == MAIN else settings.arch, kind
        # Runs of another network than params.yaml's say so; the paper net's never need to.
        self.network = {} if self.arch == "paper" else {"model.arch": self.arch}
        self.final_seeds = settings.final_seeds or config.study.seeds
        self.compare_with, self.network_name = settings.compare_with, NETWORKS[self.arch]
        self.stem = "sweep" if name == MAIN else f"sweep_{name}"
        # A network's own sweep (the paper net's, sweep.unet), not a follow-up question.
        self.is_network = name == MAIN or name in NETWORKS
        known = flatten(params)
        for candidate in settings.candidates:
            if unknown := sorted(set(candidate) - set(known)):
                raise SfaeError(
                    f"params.yaml: sweep candidate {candidate}: {unknown[0]} is not a setting"
                )

    def key(self, variant: str) -> str | None:
        return strength_key(self.config.variants[variant])

    def post_mark(self, variant: str) -> tuple[float, str] | None:
        """The post's strength of a variant ("post"), else params.yaml's ("default"); or None."""
        if (key := self.key(variant)) is None:
            return None
        return float(flatten(self.params)[key]), "post" if variant in POST_VARIANTS else "default"

    def in_study(self, variant: str) -> bool:
        """Whether the study trained this variant at the post's settings on this network."""
        study = self.arch == "paper" and variant in POST_VARIANTS
        return study and variant not in self.settings.references

    def spec(self, variant: str, seed: int, strength=None, final=False, overrides=None) -> Spec:
        """A run of a variant on the selection split (a final: all training images)."""
        spec = {"variant": variant, "seed": seed, **self.network}
        spec["data.val_count"] = 0 if final else self.settings.val_count
        if strength is not None:
            spec[self.key(variant)] = strength
        return Spec.from_dict({**spec, **(overrides or {})})


def records_kind(records: list[RunRecord], arch: str) -> str | None:
    """The machine kind that trained most of a network's runs (ties: the first by name)."""
    mine = [r.machine_kind for r in records if r.params.get("model.arch", "paper") == arch]
    kinds = Counter(kind for kind in mine if kind != UNKNOWN)
    return min(kinds, key=lambda kind: (-kinds[kind], kind)) if kinds else None


def sweeps(config: Config, params: dict, records: list[RunRecord]) -> list[Sweep]:
    """Every sweep of params.yaml in order, each reading its network's main machine kind."""
    names = [MAIN, *(config.sweep.named if config.sweep else ())]
    found = [Sweep(config, params, name) for name in names]
    return [Sweep(config, params, s.name, records_kind(records, s.arch)) for s in found]
