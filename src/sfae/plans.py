"""The planning sections of params.yaml (`study`, `sweep`): they plan runs and change none.

Read apart from the run config (sfae.config), which every stage reads: no stage depends on
this module, so a change here re-runs nothing. The sweep's grids and references name variants
of the run config, which `load_plans` is given.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, TypeAdapter, model_validator
from pydantic.dataclasses import dataclass

from sfae.config import (
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
    if value == ():  # none: the default, which dataclasses.replace hands back
        return value
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


@dataclass(frozen=True, config=STRICT)
class StudyConfig:
    seeds: Seeds


@dataclass(frozen=True, config=STRICT)
class SweepSettings:
    """One network's sweep (sfae.experiments.sweep)."""

    val_count: Annotated[Int, between(1, PENNFUDAN_IMAGES - 2)]  # held out to select on
    seeds: Seeds  # selection seeds
    grids: dict[  # variant -> strengths to try, ascending
        Annotated[str, BeforeValidator(_tuned)], Annotated[tuple, BeforeValidator(_grid)]
    ]
    references: Annotated[tuple, BeforeValidator(_references)]  # variants without a strength
    final_seeds: Seeds | None = None  # None: the study's seeds
    # Other settings of the variant that leads on validation, each a {dotted key: value}
    # tried beside it on validation; the best runs the final seeds.
    candidates: Annotated[tuple, BeforeValidator(_candidates)] = ()


@dataclass(frozen=True, config=STRICT)
class SweepConfig(SweepSettings):
    unet: SweepSettings | None = None  # the U-Net's own sweep, cut to fit

    @model_validator(mode="before")
    @classmethod
    def _unet_shares(cls, data):
        """sweep.unet may leave out val_count and references: it then shares the paper net's."""
        if isinstance(data, dict) and isinstance(data.get("unet"), dict):
            shared = {key: data[key] for key in ("val_count", "references") if key in data}
            data = {**data, "unet": {**shared, **data["unet"]}}
        return data


@dataclass(frozen=True, config=STRICT)
class Plans:
    study: StudyConfig
    sweep: SweepConfig | None = None


def load_plans(path: Path, regularisers: tuple) -> Config:
    """params.yaml's run config with the planning sections read and checked too
    (`regularisers`: the registry, sfae.nn.regularisers.registry.REGULARISERS)."""
    config = load_config(path, regularisers)
    plans = {key: value for key, value in read_params(path).items() if key in PLANNING}
    with params_errors(path, Plans):
        adapter = TypeAdapter(Plans)
        plans = adapter.validate_python(plans, context={"variants": config.variants})
    return dataclasses.replace(config, study=plans.study, sweep=plans.sweep)


def check_params(path: Path, regularisers: tuple) -> None:
    """Check every section of params.yaml, planning ones included; SfaeError names a bad key."""
    load_plans(path, regularisers)
