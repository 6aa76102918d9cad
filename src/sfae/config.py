"""The single loader of params.yaml: validates every value and returns a typed config."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from sfae.errors import SfaeError


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats, as DVC reads params.yaml.

    `dvc exp run -S x=1e-5` writes `x: 1e-05`, a float in YAML 1.2 but a string to PyYAML
    (YAML 1.1 wants a dot in the mantissa and a sign in the exponent).
    """


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    """Parse YAML as DVC does (YAML 1.2 numbers); every reader of params.yaml uses this."""
    return yaml.load(text, Loader=_Yaml12Loader)


POST_VARIANTS = ("pure", "l1", "l2", "sparse_softabs", "sparse_elu")  # the 2018 post's five
VARIANTS = (*POST_VARIANTS, "dropout", "augment")
ACTIVATIONS = ("softabs", "elu")
BOTTLENECK_ACTIVATIONS = ("softabs", "linear")
REGULARIZERS = ("none", "l1", "l2")
ARCHS = ("paper", "unet")
# Per-example normalisations only: batch statistics would make train.shards change the math.
NORMS = ("group", "none")
PENNFUDAN_IMAGES = 170
MAX_SEED = 2**31 - 1
# OpenCV's colour maps (cv2.COLORMAP_*, lower case), listed here so that reading the config
# needs no OpenCV; tests/test_render.py checks the list against the installed OpenCV.
COLORMAPS = (
    *("autumn", "bone", "cividis", "cool", "deepgreen", "hot", "hsv", "inferno", "jet"),
    *("magma", "ocean", "parula", "pink", "plasma", "rainbow", "spring", "summer", "turbo"),
    *("twilight", "twilight_shifted", "viridis", "winter"),
)  # the training seed goes to Keras/TensorFlow as a 32-bit integer


@dataclass(frozen=True)
class DataConfig:
    image_size: int
    train_count: int
    split_seed: int
    val_count: int  # held out of the training split for selection; 0 keeps the 85/85 split


@dataclass(frozen=True)
class MallConfig:
    frames: int
    person_height: float


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int
    epochs: int
    learning_rate: float
    init_stddev: float
    iou_every: int
    shards: int


@dataclass(frozen=True)
class UnetConfig:
    width: int  # channels of the first level, doubled per level
    depth: int  # resolution levels, two 3x3 convolutions each
    norm: str  # "group" (GroupNormalization after every hidden convolution) or "none"
    groups: int  # GroupNormalization groups; width is a multiple of it
    epochs: int  # total epochs (the sparse variants' pretrain + finetune)
    learning_rate: float  # Adam, supervised phase
    pretrain_epochs: int  # sparse variants: sparse-pretraining epochs out of `epochs`


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # "paper" (the post's auto-encoder) or "unet"
    unet: UnetConfig


@dataclass(frozen=True)
class SparseConfig:
    activation: str
    epsilon: float
    pretrain_epochs: int
    pretrain_learning_rate: float
    finetune_epochs: int
    weight: float


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool  # random horizontal flips
    zoom: float  # scale up or down by at most this fraction
    shift: float  # translate by at most this fraction of the side
    brightness: float  # add at most this (images lie in [0, 1])
    contrast: float  # scale the contrast by a factor in [1 - contrast, 1 + contrast]


@dataclass(frozen=True)
class VariantConfig:
    name: str
    bottleneck_activation: str
    regularizer: str
    regularizer_scale: float
    sparse: SparseConfig | None
    dropout: float = 0.0  # spatial dropout rate after every hidden convolution
    augment: AugmentConfig | None = None

    def pretrain_epochs(self) -> int:
        return self.sparse.pretrain_epochs if self.sparse else 0


@dataclass(frozen=True)
class EvaluateConfig:
    threshold: float
    boundary_tolerance: int
    grid_images: int


@dataclass(frozen=True)
class RenderConfig:
    fps: int
    alpha: float
    colormap: str
    gif_width: int
    gif_frame_step: int
    strip_frames: int


@dataclass(frozen=True)
class StudyConfig:
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class SweepConfig:
    val_count: int  # training images held out to select each strength on
    seeds: tuple[int, ...]  # selection seeds
    grids: dict[str, tuple[float, ...]]  # variant -> strengths to try, ascending
    references: tuple[str, ...]  # variants without a strength, run beside the grids
    final_seeds: tuple[int, ...] | None = None  # None: the study's seeds
    # Other settings of the variant that leads on validation, each a {dotted key: value}
    # tried beside it on validation; the best runs the final seeds.
    candidates: tuple[dict, ...] = ()
    unet: SweepConfig | None = None  # the U-Net's own sweep (sweep.unet), cut to fit


@dataclass(frozen=True)
class Config:
    variant: VariantConfig
    seed: int
    data: DataConfig
    mall: MallConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    render: RenderConfig
    study: StudyConfig
    variants: dict[str, VariantConfig]
    sweep: SweepConfig | None = None
    model: ModelConfig | None = None  # None: the paper net (configs built by hand in tests)

    @property
    def arch(self) -> str:
        return self.model.arch if self.model else "paper"

    def finetune_epochs(self) -> int:
        """Epochs of the supervised phase: what the sparse pretraining leaves of the total."""
        sparse = self.variant.sparse
        return sparse.finetune_epochs if sparse else self.train.epochs


class _Section:
    """Reads one mapping of params.yaml; every error names the file and the dotted key."""

    def __init__(self, source: Path, prefix: str, mapping: Any):
        if not isinstance(mapping, dict):
            raise SfaeError(f"{source}: {prefix or 'the file'} must be a mapping, got {mapping!r}")
        self.source, self.prefix, self.mapping = source, prefix, mapping
        self.read: set[str] = set()

    def _key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str) -> SfaeError:
        return SfaeError(f"{self.source}: {self._key(name)} {problem}")

    def raw(self, name: str, default: Any = ...) -> Any:
        self.read.add(name)
        if name not in self.mapping:
            if default is ...:
                raise self.fail(name, "is missing")
            return default
        return self.mapping[name]

    def section(self, name: str) -> _Section:
        return _Section(self.source, self._key(name), self.raw(name))

    def integer(self, name: str, low: int | None = None, high: int | None = None) -> int:
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must be an integer, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.fail(name, f"must be in [{low}, {high}], got {value}")
        return value

    def number(self, name: str, low: float, high: float, default: Any = ...) -> float:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"must be a number, got {value!r}")
        if not low <= value <= high:
            raise self.fail(name, f"must be in [{low}, {high}], got {value}")
        return float(value)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.mapping) - self.read)
        if unknown:
            raise self.fail(unknown[0], "is not a known setting (a typo?)")


def load_config(path: Path) -> Config:
    """Parse and validate params.yaml; raise SfaeError naming the first bad key."""
    try:
        document = read_yaml(path.read_text())
    except FileNotFoundError as error:
        raise SfaeError(f"{path}: file not found") from error
    except yaml.YAMLError as error:
        raise SfaeError(f"{path}: not valid YAML: {error}") from error
    top = _Section(path, "", document)
    data = _data(top.section("data"))
    mall = top.section("mall")
    mall_config = MallConfig(
        frames=mall.integer("frames", 1, 2000),
        person_height=mall.number("person_height", 1.0, 480.0),
    )
    mall.done()
    train = _train(top.section("train"))
    variants_section = top.section("variants")
    variants = {}
    for name in VARIANTS:
        variants[name] = _variant(variants_section.section(name), name, train.epochs)
    variants_section.done()
    model = _model(top.section("model"))
    if model.arch == "unet":
        train, variants = _unet_schedule(model.unet, train, variants)
    chosen = top.choice("variant", VARIANTS)
    config = Config(
        variant=variants[chosen],
        seed=top.integer("seed", 0, MAX_SEED),
        data=data,
        mall=mall_config,
        train=train,
        evaluate=_evaluate(top.section("evaluate")),
        render=_render(top.section("render")),
        study=_study(top.section("study")),
        variants=variants,
        sweep=_sweep(top.section("sweep"), variants) if "sweep" in document else None,
        model=model,
    )
    top.done()
    return config


def _data(section: _Section) -> DataConfig:
    size = section.integer("image_size", 16, 1024)
    if size % 16:
        raise section.fail("image_size", f"must be a positive multiple of 16, got {size}")
    train_count = section.integer("train_count", 1, PENNFUDAN_IMAGES - 1)
    config = DataConfig(
        image_size=size,
        train_count=train_count,
        split_seed=section.integer("split_seed", 0, 2**32 - 1),
        val_count=section.integer("val_count", 0, train_count - 1),
    )
    section.done()
    return config


def _train(section: _Section) -> TrainConfig:
    batch_size = section.integer("batch_size", 1, PENNFUDAN_IMAGES)
    config = TrainConfig(
        batch_size=batch_size,
        epochs=section.integer("epochs", 1, 100_000),
        learning_rate=section.number("learning_rate", 1e-8, 1.0),
        init_stddev=section.number("init_stddev", 1e-6, 10.0),
        iou_every=section.integer("iou_every", 1, 100_000),
        shards=section.integer("shards", 1, batch_size),
    )
    section.done()
    return config


def _variant(section: _Section, name: str, total_epochs: int) -> VariantConfig:
    regularizer = section.choice("regularizer", REGULARIZERS)
    scale = section.number("regularizer_scale", 0.0, 10.0, default=0.0)
    if regularizer != "none" and scale == 0.0:
        raise section.fail("regularizer_scale", f"must be > 0 for regularizer {regularizer}")
    sparse = None
    if "sparse" in section.mapping:
        sparse = _sparse(section.section("sparse"), total_epochs)
    augment = None
    if "augment" in section.mapping:
        augment = _augment(section.section("augment"))
    config = VariantConfig(
        name=name,
        bottleneck_activation=section.choice("bottleneck_activation", BOTTLENECK_ACTIVATIONS),
        regularizer=regularizer,
        regularizer_scale=scale,
        sparse=sparse,
        dropout=section.number("dropout", 0.0, 0.95, default=0.0),
        augment=augment,
    )
    section.done()
    return config


def _model(section: _Section) -> ModelConfig:
    arch = section.choice("arch", ARCHS)
    unet = _unet(section.section("unet"))
    section.done()
    return ModelConfig(arch=arch, unet=unet)


def _unet(section: _Section) -> UnetConfig:
    # data.image_size, a multiple of 16, halves evenly down to a fifth level.
    depth = section.integer("depth", 2, 5)
    norm = section.choice("norm", NORMS)
    groups = section.integer("groups", 1, 64)
    width = section.integer("width", 1, 256)
    if norm == "group" and width % groups:
        raise section.fail("width", f"must be a multiple of groups ({groups}), got {width}")
    epochs = section.integer("epochs", 1, 100_000)
    config = UnetConfig(
        width=width,
        depth=depth,
        norm=norm,
        groups=groups,
        epochs=epochs,
        learning_rate=section.number("learning_rate", 1e-8, 1.0),
        pretrain_epochs=section.integer("pretrain_epochs", 0, epochs - 1),
    )
    section.done()
    return config


def _unet_schedule(
    unet: UnetConfig, train: TrainConfig, variants: dict[str, VariantConfig]
) -> tuple[TrainConfig, dict[str, VariantConfig]]:
    """The U-Net's own schedule in place of the paper's: what every consumer then reads.

    train.epochs and train.learning_rate become model.unet's; every sparse variant
    pretrains model.unet.pretrain_epochs and finetunes the rest (its pretraining learning
    rate, weight and activation stay the variant's).
    """
    train = replace(train, epochs=unet.epochs, learning_rate=unet.learning_rate)
    variants = {
        name: replace(
            variant,
            sparse=replace(
                variant.sparse,
                pretrain_epochs=unet.pretrain_epochs,
                finetune_epochs=unet.epochs - unet.pretrain_epochs,
            ),
        )
        if variant.sparse
        else variant
        for name, variant in variants.items()
    }
    return train, variants


def with_arch(config: Config, arch: str) -> Config:
    """The config as params.yaml with model.arch set to `arch` loads (from a paper config)."""
    if arch == config.arch:
        return config
    if arch != "unet" or config.model is None:
        raise ValueError(f"cannot turn a {config.arch!r} config into {arch!r}")
    train, variants = _unet_schedule(config.model.unet, config.train, config.variants)
    return replace(
        config,
        model=replace(config.model, arch=arch),
        train=train,
        variants=variants,
        variant=variants[config.variant.name],
    )


def _sparse(section: _Section, total_epochs: int) -> SparseConfig:
    config = SparseConfig(
        activation=section.choice("activation", ACTIVATIONS),
        epsilon=section.number("epsilon", 0.0, 1.0),
        pretrain_epochs=section.integer("pretrain_epochs", 0, total_epochs),
        pretrain_learning_rate=section.number("pretrain_learning_rate", 1e-8, 1.0),
        finetune_epochs=section.integer("finetune_epochs", 1, total_epochs),
        weight=section.number("weight", 0.0, 1000.0),
    )
    if config.pretrain_epochs + config.finetune_epochs != total_epochs:
        raise section.fail(
            "finetune_epochs",
            f"plus pretrain_epochs must equal train.epochs ({total_epochs}) so every variant "
            f"trains as long; got {config.pretrain_epochs} + {config.finetune_epochs}",
        )
    section.done()
    return config


def _augment(section: _Section) -> AugmentConfig:
    flip = section.raw("flip")
    if not isinstance(flip, bool):
        raise section.fail("flip", f"must be true or false, got {flip!r}")
    config = AugmentConfig(
        flip=flip,
        zoom=section.number("zoom", 0.0, 0.9),
        shift=section.number("shift", 0.0, 0.9),
        brightness=section.number("brightness", 0.0, 1.0),
        contrast=section.number("contrast", 0.0, 0.9),
    )
    section.done()
    return config


def _evaluate(section: _Section) -> EvaluateConfig:
    config = EvaluateConfig(
        threshold=section.number("threshold", 0.0, 1.0),
        boundary_tolerance=section.integer("boundary_tolerance", 0, 50),
        grid_images=section.integer("grid_images", 1, 20),
    )
    section.done()
    return config


def _render(section: _Section) -> RenderConfig:
    config = RenderConfig(
        fps=section.integer("fps", 1, 120),
        alpha=section.number("alpha", 0.0, 1.0),
        colormap=section.choice("colormap", COLORMAPS),
        gif_width=section.integer("gif_width", 16, 1920),
        gif_frame_step=section.integer("gif_frame_step", 1, 100),
        strip_frames=section.integer("strip_frames", 1, 16),
    )
    section.done()
    return config


def strength_key(variant: VariantConfig) -> str | None:
    """The dotted param that sets how strongly a variant regularises (None: it has none)."""
    if variant.regularizer != "none":
        return f"variants.{variant.name}.regularizer_scale"
    if variant.sparse:
        return f"variants.{variant.name}.sparse.weight"
    if variant.dropout:
        return f"variants.{variant.name}.dropout"
    return None


# The highest value each strength may take (the loader's own bound for it).
STRENGTH_LIMITS = {"regularizer_scale": 10.0, "weight": 1000.0, "dropout": 0.95}


def _sweep(section: _Section, variants: dict[str, VariantConfig], parent=None):
    """The sweep section; its `unet` part (parent: the paper net's) may leave out val_count
    and references, which it then shares."""
    grids_section = section.section("grids")
    grids = {}
    for name in list(grids_section.mapping):
        values = grids_section.raw(name)
        if name not in variants or strength_key(variants[name]) is None:
            raise grids_section.fail(
                name, "is not a known setting (a typo?): grids name variants with a strength"
            )
        if (
            not isinstance(values, list)
            or len(values) < 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            or not all(0 < a < b for a, b in zip(values, values[1:], strict=False))
            or values[0] <= 0
        ):
            raise grids_section.fail(
                name, f"must be at least two ascending positive numbers, got {values!r}"
            )
        grids[name] = tuple(float(v) for v in values)
    grids_section.done()
    inherit = parent is not None
    if inherit and "references" not in section.mapping:
        references = list(parent.references)
    else:
        references = section.raw("references")
    if not isinstance(references, list) or not all(r in variants for r in references):
        raise section.fail("references", f"must be a list of variants, got {references!r}")
    if inherit and "val_count" not in section.mapping:
        val_count = parent.val_count
    else:
        val_count = section.integer("val_count", 1, PENNFUDAN_IMAGES - 2)
    config = SweepConfig(
        val_count=val_count,
        seeds=_seeds(section),
        grids=grids,
        references=tuple(references),
        final_seeds=_seeds(section, "final_seeds") if "final_seeds" in section.mapping else None,
        candidates=_candidates(section) if "candidates" in section.mapping else (),
    )
    if not inherit and "unet" in section.mapping:
        config = replace(config, unet=_sweep(section.section("unet"), variants, config))
    section.done()
    return config


# Set by the sweep itself for every run: a candidate may not set them.
SWEEP_KEYS = ("variant", "seed", "data.val_count", "model.arch")


def _candidates(section: _Section) -> tuple[dict, ...]:
    candidates = section.raw("candidates")
    scalar = (bool, int, float, str)
    if (
        not isinstance(candidates, list)
        or not candidates
        or not all(
            isinstance(c, dict)
            and c
            and all(isinstance(k, str) and isinstance(v, scalar) for k, v in c.items())
            for c in candidates
        )
    ):
        raise section.fail(
            "candidates", f"must be a list of {{dotted.key: value}} mappings, got {candidates!r}"
        )
    for candidate in candidates:
        if fixed := sorted(set(candidate) & set(SWEEP_KEYS)):
            raise section.fail("candidates", f"may not set {fixed[0]}: the sweep sets it")
    return tuple(candidates)


def _seeds(section: _Section, name: str = "seeds") -> tuple[int, ...]:
    seeds = section.raw(name)
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds
        )
        or len(set(seeds)) != len(seeds)
    ):
        raise section.fail(
            name, f"must be a list of distinct integers in [0, {MAX_SEED}], got {seeds!r}"
        )
    return tuple(seeds)


def _study(section: _Section) -> StudyConfig:
    config = StudyConfig(seeds=_seeds(section))
    section.done()
    return config
