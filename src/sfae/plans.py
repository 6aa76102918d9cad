"""The planning sections of params.yaml (`study`, `sweep`): they plan runs and change none.

Read apart from the run config (sfae.config): no stage depends on this module, so a change here
re-runs nothing. Beside the paper net's sweep, `sweep` holds named sweeps (sweep.unet, ...).
"""

from __future__ import annotations

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


def _seeds(value):
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(type(seed) is int and 0 <= seed <= MAX_SEED for seed in value)
        or len(set(value)) != len(value)
    ):
        raise ValueError(f"must be a list of distinct integers in [0, {MAX_SEED}], got {value!r}")
    return tuple(value)


def _tuned(name: str, info) -> str:
    """A grid's variant: one of the run config's, with one strength to vary."""
    variants = (info.context or {}).get("variants", {name: None})
    if name not in variants:
        raise ValueError(f"is not a variant (the variants: {', '.join(variants)})")
    if variants[name] is not None and strength_key(variants[name]) is None:
        raise ValueError("has no strength to vary: grids name variants with a strength")
    return name


def _grid(value):
    if (
        not isinstance(value, list | tuple)
        or len(value) < 2
        or not all(type(v) in (int, float) for v in value)
        or not value[0] > 0
        or not all(a < b for a, b in itertools.pairwise(value))
    ):
        raise ValueError(f"must be at least two ascending positive numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _references(value, info):
    variants = (info.context or {}).get("variants", value)
    if not isinstance(value, list | tuple) or not all(name in variants for name in value):
        raise ValueError(f"must be a list of variants, got {value!r}")
    return tuple(value)


def _candidates(value):
    scalar = bool | int | float | str
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(
            isinstance(c, dict) and c and all(isinstance(v, scalar) for v in c.values())
            for c in value
        )
    ):
        raise ValueError(f"must be a list of {{dotted.key: value}} mappings, got {value!r}")
    for candidate in value:
        if fixed := sorted(set(candidate) & set(SWEEP_KEYS)):
            raise ValueError(f"may not set {fixed[0]}: the sweep sets it")
    return tuple(value)


Seeds = Annotated[tuple, BeforeValidator(_seeds)]
Variants = Annotated[tuple, BeforeValidator(_references)]


class StudyConfig(BaseModel):
    model_config = STRICT
    seeds: Seeds


class SweepSettings(BaseModel):
    """What every sweep sets (sfae.experiments.sweep)."""

    model_config = STRICT
    val_count: Annotated[Int, between(1, PENNFUDAN_IMAGES - 2)]  # held out to select on
    seeds: Seeds  # selection seeds
    grids: dict[  # variant -> strengths to try, ascending
        Annotated[str, BeforeValidator(_tuned)], Annotated[tuple, BeforeValidator(_grid)]
    ]
    references: Variants  # variants without a strength, run beside the grids
    final_seeds: Seeds | None = None  # None: the study's seeds
    # {dotted key: value} settings of the validation leader tried beside it; the best runs finals.
    candidates: Annotated[tuple, BeforeValidator(_candidates)] = ()
    compare_with: Variants = ("pure",)  # each a family of its own; the answer reads the first
    # Seeds run at every point once the selection is fixed: they measure the curve's plateau
    # and never move the selection, so they can run after the finals.
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


class NamedSweep(SweepSettings):
    """A sweep of its own under `sweep`: it says its network (sweep.unet's name says it)."""

    arch: Literal[ARCHS] = "paper"


def _says_its_arch(section):
    """A section of `sweep` beside its settings is a named sweep if it says its `arch`: a typo
    like `grid` stays an unknown setting."""
    if not (isinstance(section, dict) and "arch" in section):
        raise pydantic_core.PydanticCustomError("extra_forbidden", "Extra inputs are not permitted")
    return section


class SweepConfig(SweepSettings):
    """The paper net's sweep, and the named sweeps beside it (`named`: sweep.unet_stacked, ...,
    checked by pydantic as the extra keys)."""

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
        return {
            name: {**named[name], **section}
            if name in named and isinstance(section, dict)
            else section
            for name, section in data.items()
        }

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
