"""The planning sections of params.yaml (`study`, `sweep` with named sweeps like sweep.unet): they
change no run, so no stage depends on this module and a change here re-runs nothing."""

import dataclasses
import itertools
from pathlib import Path
from typing import Annotated, Literal

import pydantic_core
from pydantic import BaseModel, BeforeValidator, field_validator, model_validator

from sfae.config import (
    ARCHS,
    MAX_SEED,
    PENNFUDAN_IMAGES,
    PLANNING,
    STRICT,
    SWEEP_KEYS,
    Config,
    Int,
    between,
    load_config,
    params_errors,
    read_params,
    strength_key,
)


def _check(ok, message: str, item=lambda v: v):
    """A BeforeValidator: a list's items (`item`-converted) as a tuple where `ok` holds."""

    def check(value):
        if not (isinstance(value, list | tuple) and ok(value)):
            raise ValueError(message.format(value))
        return tuple(map(item, value))

    return BeforeValidator(check)


def _tuned(name: str, info) -> str:
    """A grid's variant: one of the run config's, with one strength to vary."""
    variants = (info.context or {}).get("variants", {name: None})
    if name not in variants:
        raise ValueError(f"is not a variant (the variants: {', '.join(variants)})")
    if variants[name] is not None and strength_key(variants[name]) is None:
        raise ValueError("has no strength to vary: grids name variants with a strength")
    return name


def _references(value, info):
    variants = (info.context or {}).get("variants", value)
    if not isinstance(value, list | tuple) or not all(name in variants for name in value):
        raise ValueError(f"must be a list of variants, got {value!r}")
    return tuple(value)


def _candidates(value):
    for candidate in value:
        if fixed := sorted(set(candidate) & set(SWEEP_KEYS)):
            raise ValueError(f"may not set {fixed[0]}: the sweep sets it")
    return value


def _seeds(v):  # distinct integers in [0, MAX_SEED]
    return v and all(type(s) is int and 0 <= s <= MAX_SEED for s in v) and len(set(v)) == len(v)


def _ascending(v):  # at least two ascending positive numbers
    numbers = len(v) >= 2 and all(type(x) in (int, float) for x in v)
    return numbers and v[0] > 0 and all(a < b for a, b in itertools.pairwise(v))


def _settings(v):  # a non-empty list of non-empty {dotted key: scalar} mappings
    if not (v and all(isinstance(c, dict) and c for c in v)):
        return False
    return all(isinstance(x, bool | int | float | str) for c in v for x in c.values())


SEEDS = f"must be a list of distinct integers in [0, {MAX_SEED}], got {{!r}}"
Seeds = Annotated[tuple, _check(_seeds, SEEDS)]
Grid = Annotated[
    tuple, _check(_ascending, "must be at least two ascending positive numbers, got {!r}", float)
]
Candidates = Annotated[
    tuple,
    BeforeValidator(_candidates),
    _check(_settings, "must be a list of {{dotted.key: value}} mappings, got {!r}"),
]
Variants = Annotated[tuple, BeforeValidator(_references)]


class StudyConfig(BaseModel):
    model_config = STRICT
    seeds: Seeds


class SweepSettings(BaseModel):  # what every sweep sets (sfae.experiments.sweep)
    model_config = STRICT
    val_count: Annotated[Int, between(1, PENNFUDAN_IMAGES - 2)]  # held out to select on
    seeds: Seeds  # selection seeds
    grids: dict[Annotated[str, BeforeValidator(_tuned)], Grid]  # variant -> strengths to try
    references: Variants  # variants without a strength, run beside the grids
    final_seeds: Seeds | None = None  # None: the study's seeds
    # {dotted key: value} settings of the validation leader tried beside it; the best runs finals.
    candidates: Candidates = ()
    compare_with: Variants = ("pure",)  # each a family of its own; the answer reads the first
    # Run at every point once the selection is fixed: they measure the plateau, never select.
    plateau_seeds: Seeds | None = None

    @field_validator("plateau_seeds")
    @classmethod
    def _not_a_selection_seed(cls, value, info):
        if value and (shared := sorted(set(value) & set(info.data.get("seeds", ())))):
            raise ValueError(f"names seed {shared[0]}, already a selection seed")
        return value

    @field_validator("compare_with")
    @classmethod
    def _compared_with_a_row(cls, value, info):
        rows = [*info.data.get("references", ()), *info.data.get("grids", {})]
        if strays := [name for name in value if name not in rows]:
            raise ValueError(f"names {strays[0]}, not one of the sweep's references or grids")
        return value


class NamedSweep(SweepSettings):  # a sweep of its own under `sweep`, saying its network
    arch: Literal[ARCHS] = "paper"


def _says_its_arch(section):
    """A section of `sweep` is a named sweep if it says its `arch` (a typo stays unknown)."""
    if not (isinstance(section, dict) and "arch" in section):
        raise pydantic_core.PydanticCustomError("extra_forbidden", "Extra inputs are not permitted")
    return section


class SweepConfig(SweepSettings):  # the paper net's; the named sweeps are its extra keys
    model_config = {**STRICT, "extra": "allow"}
    __pydantic_extra__: dict[str, Annotated[NamedSweep, BeforeValidator(_says_its_arch)]]
    unet: NamedSweep | None = None  # the U-Net's own sweep, cut to fit

    @model_validator(mode="before")
    @classmethod
    def _named_share(cls, data):
        """A named sweep left without val_count or references shares the paper net's."""
        if not isinstance(data, dict):
            return data
        shared = {key: data[key] for key in ("val_count", "references") if key in data}
        named = {name: shared for name in data if name not in cls.model_fields}
        named["unet"] = {**shared, "arch": "unet"}  # its name says its network
        fill = {n: {**named[n], **s} for n, s in data.items() if n in named and isinstance(s, dict)}
        return {**data, **fill}

    @property
    def named(self) -> dict[str, NamedSweep]:
        """The named sweeps: sweep.unet first, then params.yaml's order."""
        return {**({"unet": self.unet} if self.unet else {}), **self.model_extra}


class Plans(BaseModel):
    model_config = STRICT
    study: StudyConfig
    sweep: SweepConfig | None = None


def load_plans(path: Path, regularisers: tuple) -> Config:
    """params.yaml's run config with the planning sections read and checked too."""
    config = load_config(path, regularisers)
    plans = {key: value for key, value in read_params(path).items() if key in PLANNING}
    with params_errors(path, Plans):
        plans = Plans.model_validate(plans, context={"variants": config.variants})
    return dataclasses.replace(config, study=plans.study, sweep=plans.sweep)


def check_params(path: Path, regularisers: tuple) -> None:
    """Check every section of params.yaml, planning ones included; SfaeError names a bad key."""
    load_plans(path, regularisers)
