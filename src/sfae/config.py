"""params.yaml's run config (not sfae.plans' sections), a pydantic model a section; an error is one
line naming the file and dotted key. A variant is VariantConfig plus a field per regulariser of
the registry the loader is handed (sfae.nn.regularisers.registry: none is imported here)."""

import dataclasses
import difflib
import functools
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args, get_type_hints

import pydantic
from pydantic import Field, field_validator, model_validator
from pydantic.dataclasses import dataclass
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from sfae.errors import SfaeError


def read_yaml(text: str) -> Any:
    """YAML as DVC parses params.yaml (1.2: `-S x=1e-5` writes `1e-05`, a float)."""
    return YAML(typ="safe").load(text)


POST_VARIANTS = ("pure", "l1", "l2", "sparse_softabs", "sparse_elu")  # the 2018 post's five
ARCHS = ("paper", "unet")
PENNFUDAN_IMAGES = 170
MAX_SEED = 2**31 - 1  # the training seed goes to Keras/TensorFlow as a 32-bit integer
# cv2.COLORMAP_* in lower case, so that the config needs no OpenCV (tests/test_render.py checks).
COLORMAPS = (
    *("autumn", "bone", "cividis", "cool", "deepgreen", "hot", "hsv", "inferno", "jet"),
    *("magma", "ocean", "parula", "pink", "plasma", "rainbow", "spring", "summer", "turbo"),
    *("twilight", "twilight_shifted", "viridis", "winter"),
)
PLANNING = ("study", "sweep")  # they plan runs and change none: no stage reads them
SWEEP_KEYS = ("variant", "seed", "data.val_count", "model.arch")  # set by the sweep for every run

Int = pydantic.StrictInt  # YAML is typed: a quoted "96" or a 96.0 is a mistake, no integer
Number = Annotated[float, pydantic.Strict()]  # an integer is a number too
STRICT = pydantic.ConfigDict(extra="forbid", frozen=True)  # every section and plan
NAME = "(variant name)"  # what the loader validates a variant's name from: no YAML key


def between(low, high):
    return Field(ge=low, le=high)


def up_to(low: int, field: str, less: int = 0):
    """An integer in [low, the section's `field` (an earlier one) - less]."""

    def check(value, info):
        high = info.data.get(field, value + less) - less
        if not low <= value <= high:
            raise ValueError(f"must be in [{low}, {high}], got {value}")
        return value

    return pydantic.AfterValidator(check)


@dataclass(config=STRICT)
class DataConfig:
    image_size: Annotated[Int, between(16, 1024)]  # halved four times by the paper net
    train_count: Annotated[Int, between(1, PENNFUDAN_IMAGES - 1)]
    split_seed: Annotated[Int, between(0, 2**32 - 1)]
    val_count: Annotated[Int, up_to(0, "train_count", less=1)]  # held out to select (0: none)

    @field_validator("image_size")
    @classmethod
    def _multiple_of_16(cls, size):
        if size % 16:
            raise ValueError(f"must be a positive multiple of 16, got {size}")
        return size


@dataclass(config=STRICT)
class MallConfig:
    frames: Annotated[Int, between(1, 2000)]
    person_height: Annotated[Number, between(1.0, 480.0)]
    unlabeled_frames: Annotated[Int, between(0, 2000)]  # the last N, to learn from unlabeled

    @field_validator("unlabeled_frames")
    @classmethod
    def _not_the_scored_ones(cls, count, info):
        if count > (free := 2000 - info.data.get("frames", 0)):
            raise ValueError(f"must be at most 2000 - mall.frames = {free}, got {count}")
        return count


@dataclass(config=STRICT)
class TrainConfig:
    batch_size: Annotated[Int, between(1, PENNFUDAN_IMAGES)]
    epochs: Annotated[Int, between(1, 100_000)]
    learning_rate: Annotated[Number, between(1e-8, 1.0)]
    init_stddev: Annotated[Number, between(1e-6, 10.0)]
    iou_every: Annotated[Int, between(1, 100_000)]
    shards: Annotated[Int, up_to(1, "batch_size")]  # no shard may be empty


@dataclass(config=STRICT)
class UnetConfig:
    depth: Annotated[Int, between(2, 5)]  # levels; a multiple of 16 halves down to a fifth
    norm: Literal["group", "none"]  # per example: batch statistics would vary with train.shards
    groups: Annotated[Int, between(1, 64)]  # GroupNormalization groups
    width: Annotated[Int, between(1, 256)]  # channels of the first level, doubled per level
    epochs: Annotated[Int, between(1, 100_000)]  # replaces train.epochs
    learning_rate: Annotated[Number, between(1e-8, 1.0)]  # replaces train.learning_rate
    pretrain_epochs: Annotated[Int, up_to(0, "epochs", less=1)]  # of `epochs`, if pretraining

    @field_validator("width")
    @classmethod
    def _whole_groups(cls, width, info):
        groups = info.data.get("groups", 1)
        if info.data.get("norm") == "group" and width % groups:
            raise ValueError(f"must be a multiple of groups ({groups}), got {width}")
        return width


@dataclass(config=STRICT)
class ModelConfig:
    arch: Literal[ARCHS]  # the post's auto-encoder, or a U-Net
    unet: UnetConfig


@dataclass(config=STRICT)
class EvaluateConfig:
    threshold: Annotated[Number, between(0.0, 1.0)]
    boundary_tolerance: Annotated[Int, between(0, 50)]
    grid_images: Annotated[Int, between(1, 20)]


@dataclass(config=STRICT)
class RenderConfig:
    fps: Annotated[Int, between(1, 120)]
    alpha: Annotated[Number, between(0.0, 1.0)]
    colormap: Literal[COLORMAPS]
    gif_width: Annotated[Int, between(16, 1920)]
    gif_frame_step: Annotated[Int, between(1, 100)]
    strip_frames: Annotated[Int, between(1, 16)]


class VariantConfig(pydantic.BaseModel):
    model_config = STRICT
    units: ClassVar[tuple] = ()  # the regularisers of the registry (variant_schema)
    name: str = Field(validation_alias=NAME)  # its key in `variants`
    bottleneck_activation: Literal["softabs", "linear"]

    @model_validator(mode="before")
    @classmethod
    def _gather_sectionless(cls, data):  # the keys of sectionless regularisers into their fields
        if isinstance(data, dict):
            data = dict(data)
            for unit in [unit for unit in cls.units if not unit.section]:
                if own := {key: data.pop(key) for key in list(data) if key in unit.model_fields}:
                    data[unit.name] = own
        return data

    @model_validator(mode="after")
    def _one_pretraining(self):
        if len(pretraining := [u.name for u in self.regularisers if u.pretrain_share()]) > 1:
            raise ValueError(f"combines {' and '.join(pretraining)}: only one may pretrain")
        return self

    @property
    def regularisers(self) -> list:  # the settings of those it has, in the registry's order
        return [value for value in self.__dict__.values() if isinstance(value, pydantic.BaseModel)]


@functools.cache
def variant_schema(regularisers: tuple) -> type[VariantConfig]:
    """The variant section's model: VariantConfig plus one optional field per regulariser."""
    fields = {unit.name: (unit | None, None) for unit in regularisers}
    schema = pydantic.create_model("VariantConfig", __base__=VariantConfig, **fields)
    schema.units = regularisers
    return schema


def strength_key(variant: VariantConfig) -> str | None:
    """The dotted param that sets how strongly a variant regularises (None: it has none)."""
    keys = [f"variants.{variant.name}.{k}" for u in variant.regularisers if (k := u.strength_key())]
    if len(keys) > 1:
        raise ValueError(f"has {len(keys)} strengths ({', '.join(keys)}): a grid varies one")
    return keys[0] if keys else None


@dataclass(config=STRICT)
class Config:
    variants: dict[str, VariantConfig]  # every variant of params.yaml, in its order
    variant: VariantConfig  # the one `variant` names
    seed: Annotated[Int, between(0, MAX_SEED)]
    data: DataConfig
    mall: MallConfig
    train: TrainConfig
    model: ModelConfig
    evaluate: EvaluateConfig
    render: RenderConfig
    study: Any = None  # sfae.plans.StudyConfig, from load_plans
    sweep: Any = None  # sfae.plans.SweepConfig, from load_plans

    @field_validator("variants", mode="before")
    @classmethod
    def _by_the_registry(cls, variants, info):
        if info.context is None or not isinstance(variants, dict):
            return variants  # a config made anew (dataclasses.replace), or no mapping
        named = {k: {**v, NAME: k} if isinstance(v, dict) else v for k, v in variants.items()}
        return pydantic.TypeAdapter(dict[str, info.context["variants"]]).validate_python(named)

    @field_validator("variant", mode="before")
    @classmethod
    def _chosen(cls, name, info):
        variants = info.data.get("variants", {})
        if isinstance(name, str) and name not in variants:
            raise ValueError(f"must be one of {', '.join(variants)}; got {name!r}")
        return variants[name] if isinstance(name, str) else name

    @property
    def arch(self) -> str:
        return self.model.arch

    def pretrain_epochs(self) -> int:
        """Pretraining epochs: the regulariser's if its two add to train.epochs, else in ratio."""
        share = next((s for u in self.variant.regularisers if (s := u.pretrain_share())), None)
        if share is None or self.arch == "unet":
            return 0 if share is None else self.model.unet.pretrain_epochs
        (pretrain, finetune), total = share, self.train.epochs
        if pretrain + finetune == total:
            return pretrain
        return min(round(total * pretrain / (pretrain + finetune)), total - 1)

    def finetune_epochs(self) -> int:
        return self.train.epochs - self.pretrain_epochs()


def load_config(path: Path, regularisers: tuple) -> Config:
    """The run config of params.yaml (all but study and sweep); SfaeError names a bad key."""
    run = {key: value for key, value in read_params(path).items() if key not in PLANNING}
    schema = variant_schema(tuple(regularisers))
    with params_errors(path, Config, schema):
        config = pydantic.TypeAdapter(Config).validate_python(run, context={"variants": schema})
    return with_arch(config, config.arch)


def with_arch(config: Config, arch: str) -> Config:
    """The config as it loads with model.arch `arch`: the U-Net's epochs and learning rate rule."""
    if arch == config.arch == "paper":
        return config
    if arch != "unet":
        raise ValueError(f"cannot turn a {config.arch!r} config into {arch!r}")
    unet, model = config.model.unet, dataclasses.replace(config.model, arch=arch)
    train = dataclasses.replace(config.train, epochs=unet.epochs, learning_rate=unet.learning_rate)
    return dataclasses.replace(config, model=model, train=train)


def read_params(path: Path) -> dict:
    """params.yaml as a mapping; SfaeError if it is missing, not YAML or not a mapping."""
    try:
        document = read_yaml(path.read_text())
    except FileNotFoundError as error:
        raise SfaeError(f"{path}: file not found") from error
    except YAMLError as error:
        raise SfaeError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from error
    if not isinstance(document, dict):
        raise SfaeError(f"{path}: the file must be a mapping, got {document!r}")
    return document


@contextmanager
def params_errors(path: Path, schema, variant=VariantConfig):
    """pydantic's ValidationError as an SfaeError naming the file and the first bad key."""
    try:
        yield
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        key, known = _where(schema, first["loc"], variant)
        kind, message, value = first["type"], first["msg"], first["input"]
        # "Input should be a valid integer", "... greater than or equal to 16"
        problem = f"{message.replace('Input should be', 'must be')}, got {value!r}"
        if kind in ("unexpected_keyword_argument", "extra_forbidden"):
            near = difflib.get_close_matches(name := key.rpartition(".")[2], known, 1)
            hint = f"; did you mean {key.removesuffix(name)}{near[0]}?" if near else ""
            problem = f"is not a known setting{hint}"
        elif kind == "missing":
            problem = "is missing"
        elif kind in ("dataclass_type", "model_type", "dict_type"):
            problem = f"must be a mapping, got {value!r}"
        elif kind == "value_error":
            problem = message.removeprefix("Value error, ")
        raise SfaeError(f"{path}: {key or 'the file'} {problem}") from None


def _where(schema, loc: tuple, variant) -> tuple[str, list[str]]:
    """loc as params.yaml's dotted key, and the keys known in the section that holds it."""
    parts, known = [], []
    for part in [p for p in loc if not isinstance(p, int) and p != "[key]"]:  # no items, keys
        schema = variant if schema is VariantConfig else schema
        fields = getattr(schema, "__pydantic_fields__", None)
        if fields is None:  # a mapping by name (variants, grids): on to the values' type
            parts.append(part)
            schema = (get_args(schema) or [None])[-1]
            continue
        inline = {u.name: u for u in getattr(schema, "units", ()) if not u.section}  # keys: ours
        known = [key for key in fields if key not in inline and key != "name"]
        known += [key for unit in inline.values() for key in unit.model_fields]
        parts += [] if part in inline else [part]
        if part in fields:
            schema = fields[part].annotation
        elif extra := get_type_hints(schema).get("__pydantic_extra__"):  # sfae.plans.SweepConfig's
            schema = get_args(extra)[-1]
        else:
            break  # an unknown key
        if type(None) in get_args(schema):  # X | None
            schema = get_args(schema)[0]
    return ".".join(parts), known
