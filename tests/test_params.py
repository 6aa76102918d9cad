"""params.yaml: the real file loads; every bad value names the file and its dotted key."""

from __future__ import annotations

import ast
import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sfae import plans
from sfae.config import read_yaml, strength_key
from sfae.errors import SfaeError
from sfae.nn.regularisers.registry import REGULARISERS, load_config

REPO = Path(__file__).resolve().parent.parent
VARIANTS = tuple(read_yaml((REPO / "params.yaml").read_text())["variants"])


def load_plans(path: Path):
    return plans.load_plans(path, REGULARISERS)


def check_params(path: Path) -> None:
    plans.check_params(path, REGULARISERS)


@pytest.fixture(scope="module")
def document(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def write_params(folder: Path, document: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_the_real_params_file_loads(repo_root: Path) -> None:
    config = load_config(repo_root / "params.yaml")
    assert config.variant.name == "pure" and config.variant.sparse is None
    assert (config.data.image_size, config.data.train_count) == (96, 85)
    assert config.data.split_seed == 6278 and config.seed == 6278
    assert config.mall.frames == 500
    assert config.train.epochs == 801 and config.finetune_epochs() == 801
    assert tuple(config.variants) == VARIANTS
    assert {"pure", "l1", "l2", "sparse_softabs", "sparse_elu", "dropout", "augment"} <= set(
        VARIANTS
    )
    assert config.train.shards == 2
    for name in ("sparse_softabs", "sparse_elu"):
        sparse = config.variants[name].sparse
        assert sparse.pretrain_epochs + sparse.finetune_epochs == config.train.epochs
    assert config.variants["l1"].penalty.regularizer == "l1"
    assert config.variants["l1"].penalty.regularizer_scale == pytest.approx(0.005)
    assert config.variants["pure"].penalty.regularizer_scale == 0.0
    assert config.variants["dropout"].dropout.dropout == 0.1
    assert config.variants["augment"].augment.zoom == 0.1
    # The stages' config leaves the planning sections to load_plans.
    assert config.study is None and config.sweep is None
    plans = load_plans(repo_root / "params.yaml")
    assert plans.study.seeds == (6278, 1, 2, 3, 4)
    assert plans.sweep.grids["l2"][0] == 5e-7


def test_each_variant_has_the_strength_key_the_sweep_varies(repo_root: Path) -> None:
    variants = load_config(repo_root / "params.yaml").variants
    keys = {name: strength_key(variant) for name, variant in variants.items()}
    assert keys == {
        "pure": None,
        "l1": "variants.l1.regularizer_scale",
        "l2": "variants.l2.regularizer_scale",
        "sparse_softabs": "variants.sparse_softabs.sparse.weight",
        "sparse_elu": "variants.sparse_elu.sparse.weight",
        "dropout": "variants.dropout.dropout",
        "augment": None,
        # Augmentation has no strength: a stacked variant's is the other regulariser's.
        "augment_dropout": "variants.augment_dropout.dropout",
        "augment_l2": "variants.augment_l2.regularizer_scale",
        "augment_sparse": "variants.augment_sparse.sparse.weight",
        "sparse_softabs_frames": "variants.sparse_softabs_frames.sparse.weight",
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_can_be_chosen(tmp_path: Path, document: dict, variant: str) -> None:
    config = load_config(write_params(tmp_path, {**document, "variant": variant}))
    assert config.variant.name == variant
    assert config.variant == config.variants[variant]
    if config.variant.sparse:
        assert config.variant.bottleneck_activation == "linear"
        activation = config.variant.sparse.activation
        assert activation == {"sparse_elu": "elu"}.get(variant, "softabs")
        assert config.pretrain_epochs() == 201
        assert config.finetune_epochs() == 600
    else:
        assert config.pretrain_epochs() == 0
        assert config.finetune_epochs() == config.train.epochs


def setting(dotted: str, value: object) -> Callable[[dict], None]:
    """An edit of the document that sets the dotted key to value."""

    def edit(document: dict) -> None:
        *parents, last = dotted.split(".")
        for key in parents:
            document = document[key]
        document[last] = value

    return edit


def dropping(dotted: str) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        *parents, last = dotted.split(".")
        for key in parents:
            document = document[key]
        del document[last]

    return edit


BAD_VALUES = [
    (
        setting("data.image_size", 100),
        "data.image_size",
        "must be a positive multiple of 16, got 100",
    ),
    (setting("data.image_size", 0), "data.image_size", "got 0"),
    (setting("data.image_size", -16), "data.image_size", "got -16"),
    (setting("data.image_size", 96.0), "data.image_size", "must be a valid integer, got 96.0"),
    (setting("data.image_size", "96"), "data.image_size", "must be a valid integer, got '96'"),
    (setting("data.train_count", 0), "data.train_count", "got 0"),
    (setting("data.train_count", 170), "data.train_count", "got 170"),
    (setting("data.split_seed", -1), "data.split_seed", "got -1"),
    (setting("data.val_count", 85), "data.val_count", "must be in [0, 84], got 85"),
    (setting("variant", "l3"), "variant", "must be one of pure, l1, l2, sparse_softabs"),
    (dropping("data.split_seed"), "data.split_seed", "is missing"),
    (dropping("mall"), "mall", "is missing"),
    (dropping("variants"), "variants", "is missing"),
    (dropping("variants.pure"), "variant", "must be one of l1, l2"),  # the chosen one
    (setting("data.image_sise", 96), "data.image_sise", "not a known setting"),
    (setting("learning_rate", 0.1), "learning_rate", "not a known setting"),
    (setting("variants.l2.sparse", 1.0), "variants.l2.sparse", "must be a mapping"),
    (setting("variants.extra", {}), "variants.extra.bottleneck_activation", "is missing"),
    (setting("variants.extra", 3), "variants.extra", "must be a mapping, got 3"),
    (setting("variants.l2.name", "l3"), "variants.l2.name", "not a known setting"),
    (setting("train.learning_rate", "fast"), "train.learning_rate", "must be a valid number"),
    (setting("train.learning_rate", 0), "train.learning_rate", "must be greater than or equal"),
    (setting("train.epochs", "801"), "train.epochs", "must be a valid integer"),
    (setting("seed", True), "seed", "must be a valid integer, got True"),
    (setting("mall.frames", 0), "mall.frames", "got 0"),
    (setting("mall.frames", 2001), "mall.frames", "got 2001"),
    (setting("train", [1, 2]), "train", "must be a mapping"),
    (
        setting("variants.sparse_elu.sparse.finetune_epochs", 0),
        "variants.sparse_elu.sparse.finetune_epochs",
        "got 0",
    ),
    (setting("variants.l1.regularizer_scale", 0), "variants.l1.regularizer_scale", "> 0"),
    (dropping("variants.l1.regularizer_scale"), "variants.l1.regularizer_scale", "> 0"),
    (dropping("variants.l1.regularizer"), "variants.l1.regularizer", "is missing"),
    (setting("variants.l2.regularizer", "l3"), "variants.l2.regularizer", "'none', 'l1' or 'l2'"),
    (setting("variants.l2.regularizer_scale", 11), "variants.l2.regularizer_scale", "got 11"),
    (setting("variants.dropout.dropout", 1.0), "variants.dropout.dropout", "got 1.0"),
    (setting("variants.augment.augment.flip", 1), "variants.augment.augment.flip", "boolean"),
    (setting("variants.augment.augment.zoom", 2), "variants.augment.augment.zoom", "got 2"),
    (
        setting("variants.sparse_softabs.sparse.activation", "relu"),
        "variants.sparse_softabs.sparse.activation",
        "must be 'softabs' or 'elu', got 'relu'",
    ),
    (
        setting("variants.sparse_elu.bottleneck_activation", "relu"),
        "variants.sparse_elu.bottleneck_activation",
        "'softabs' or 'linear'",
    ),
    (setting("evaluate.threshold", 1.5), "evaluate.threshold", "less than or equal to 1"),
    (setting("seed", 2**31), "seed", "less than or equal to 2147483647"),
    (setting("render.colormap", "rainbowish"), "render.colormap", "viridis"),
    (setting("render.colormap", 3), "render.colormap", "must be 'autumn'"),
    (setting("train.shards", 6), "train.shards", "must be in [1, 5]"),
    (setting("train.shards", 0), "train.shards", "must be in [1, 5]"),
]


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    BAD_VALUES,
    ids=[f"{key}-{index}" for index, (_, key, _) in enumerate(BAD_VALUES)],
)
def test_a_bad_value_names_the_file_and_the_key(
    tmp_path: Path, document: dict, edit: Callable[[dict], None], key: str, problem: str
) -> None:
    changed = copy.deepcopy(document)
    edit(changed)
    path = write_params(tmp_path, changed)
    with pytest.raises(SfaeError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key} "), message
    assert problem in message
    assert "\n" not in message


BAD_PLANS = [
    (setting("study.seeds", [1, 1]), "study.seeds", "distinct"),
    (setting("study.seeds", []), "study.seeds", "distinct"),
    (setting("study.seeds", [1, 2**31]), "study.seeds", "[0, 2147483647]"),
    (dropping("study"), "study", "is missing"),
    (setting("sweep.unet.final_seeds", [1, 1]), "sweep.unet.final_seeds", "distinct"),
    (setting("sweep.unet.grids.l2", [1e-3]), "sweep.unet.grids.l2", "at least two"),
    (setting("sweep.grids.l2", [1e-3, 1e-4]), "sweep.grids.l2", "ascending"),
    (setting("sweep.grids.l2", [0.0, 1e-4]), "sweep.grids.l2", "positive"),
    (
        setting("sweep.grids.l3", [1e-3, 1e-2]),
        "sweep.grids.l3",
        "is not a variant (the variants: pure",
    ),
    (setting("sweep.grids.augment", [0.1, 0.2]), "sweep.grids.augment", "has no strength"),
    (setting("sweep.unet.val_count", 0), "sweep.unet.val_count", "got 0"),
    (setting("sweep.val_count", 0), "sweep.val_count", "got 0"),
    (setting("sweep.unet.references", ["none"]), "sweep.unet.references", "list of variants"),
    (setting("sweep.unet.unet", {}), "sweep.unet.unet", "not a known setting"),
    (setting("sweep.grid", {}), "sweep.grid", "not a known setting; did you mean sweep.grids?"),
    (dropping("sweep.unet.seeds"), "sweep.unet.seeds", "is missing"),
    (setting("sweep.unet.candidates", [{"seed": 3}]), "sweep.unet.candidates", "may not set seed"),
    (setting("sweep.unet.candidates", [{}]), "sweep.unet.candidates", "mappings"),
]


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    BAD_PLANS,
    ids=[f"{key}-{index}" for index, (_, key, _) in enumerate(BAD_PLANS)],
)
def test_a_bad_plan_is_refused_by_the_whole_file_check_only(
    tmp_path: Path, document: dict, edit: Callable[[dict], None], key: str, problem: str
) -> None:
    """The stages never read study or sweep: a bad plan stops the planning, not a stage."""
    changed = copy.deepcopy(document)
    edit(changed)
    path = write_params(tmp_path, changed)
    load_config(path)
    for check in (load_plans, check_params):
        with pytest.raises(SfaeError) as caught:
            check(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: {key} "), message
        assert problem in message


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        ("data.imagesize", "data.imagesize is not a known setting; did you mean data.image_size?"),
        ("foo", "foo is not a known setting"),
        ("sead", "sead is not a known setting; did you mean seed?"),
        (
            "variants.l2.regularizer_scal",
            "variants.l2.regularizer_scal is not a known setting; "
            "did you mean variants.l2.regularizer_scale?",
        ),
        (
            "variants.sparse_elu.sparse.wieght",
            "variants.sparse_elu.sparse.wieght is not a known setting; "
            "did you mean variants.sparse_elu.sparse.weight?",
        ),
        ("variants.pure.dropuot", "did you mean variants.pure.dropout?"),
        ("variants.pure.sparce", "did you mean variants.pure.sparse?"),
        ("model.unet.widht", "did you mean model.unet.width?"),
    ],
)
def test_an_unknown_key_names_the_nearest_known_one(
    tmp_path: Path, document: dict, dotted: str, expected: str
) -> None:
    changed = copy.deepcopy(document)
    setting(dotted, 1)(changed)
    path = write_params(tmp_path, changed)
    with pytest.raises(SfaeError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: "), caught.value
    assert expected in str(caught.value)


def mapping_sections(document: dict, prefix: str = "") -> list[str]:
    """The dotted name of every mapping in the document, "" for the top level."""
    sections = [prefix]
    for key, value in document.items():
        if isinstance(value, dict):
            sections += mapping_sections(value, f"{prefix}.{key}" if prefix else key)
    return sections


# Every mapping of the real file: a section added later is covered without editing this list.
UNKNOWN_KEY_SECTIONS = mapping_sections(
    yaml.safe_load((Path(__file__).resolve().parent.parent / "params.yaml").read_text())
)


def test_every_section_is_checked_for_unknown_keys() -> None:
    expected = {"", "data", "mall", "train", "variants", "evaluate", "render", "study", "sweep"}
    expected |= {f"variants.{name}" for name in VARIANTS}
    expected |= {"variants.sparse_softabs.sparse", "variants.augment.augment", "sweep.unet"}
    assert expected <= set(UNKNOWN_KEY_SECTIONS)


@pytest.mark.parametrize("section", UNKNOWN_KEY_SECTIONS, ids=lambda s: s or "top")
def test_an_unknown_key_is_refused_in_every_section(
    tmp_path: Path, document: dict, section: str
) -> None:
    """A stray key anywhere is a typo, not silently ignored: the whole-file check says so."""
    changed = copy.deepcopy(document)
    target = changed
    for key in section.split(".") if section else []:
        target = target[key]
    target["bogus_key"] = 1
    path = write_params(tmp_path, changed)
    dotted = f"{section}.bogus_key" if section else "bogus_key"
    expected = f"{path}: {dotted} is not a known setting"
    if section == "variants":  # a variant of its own, which must be a mapping
        expected = f"{path}: {dotted} must be a mapping, got 1"
    elif section.endswith("grids"):  # a grid names a variant
        expected = f"{path}: {dotted} is not a variant (the variants: pure, l1"
    with pytest.raises(SfaeError) as caught:
        check_params(path)
    assert str(caught.value).startswith(expected), caught.value


def test_dvc_written_floats_read_as_floats(tmp_path: Path, document: dict) -> None:
    """`dvc exp run -S variants.l2.regularizer_scale=1e-5` writes `1e-05` (YAML 1.2 float)."""
    text = (REPO / "params.yaml").read_text()
    assert "regularizer_scale: 0.005   # scale * sum(w^2)" in text
    path = tmp_path / "params.yaml"
    path.write_text(
        text.replace("regularizer_scale: 0.005   # scale * sum(w^2)", "regularizer_scale: 1e-05 #")
    )
    assert load_config(path).variants["l2"].penalty.regularizer_scale == 1e-5
    assert read_yaml("x: 1e-05\ny: yes\n") == {"x": 1e-5, "y": "yes"}  # YAML 1.2, as DVC reads


@pytest.mark.parametrize(
    ("epochs", "pretrain", "finetune"),
    [(801, 201, 600), (40, 10, 30), (800, 201, 599), (1, 0, 1), (2, 1, 1), (4000, 1004, 2996)],
)
def test_other_epochs_split_in_the_sparse_variants_ratio(
    tmp_path: Path, document: dict, epochs: int, pretrain: int, finetune: int
) -> None:
    """`-S train.epochs=N` works for every variant: the sparse ones split N as 201:600."""
    changed = copy.deepcopy(document)
    changed["train"]["epochs"] = epochs
    for name in VARIANTS:
        config = load_config(write_params(tmp_path, {**changed, "variant": name}))
        if config.variant.sparse:
            assert (config.pretrain_epochs(), config.finetune_epochs()) == (pretrain, finetune)
            assert round(epochs * 201 / 801) == pretrain or finetune == 1
        else:
            assert (config.pretrain_epochs(), config.finetune_epochs()) == (0, epochs)


def test_declared_epochs_that_add_up_are_kept_as_they_are(tmp_path: Path, document: dict):
    changed = copy.deepcopy(document)
    changed["variants"]["sparse_elu"]["sparse"].update(pretrain_epochs=500, finetune_epochs=301)
    config = load_config(write_params(tmp_path, {**changed, "variant": "sparse_elu"}))
    assert (config.pretrain_epochs(), config.finetune_epochs()) == (500, 301)  # not 201:600


def test_a_ratio_split_leaves_at_least_one_epoch_to_finetune(tmp_path: Path, document: dict):
    changed = copy.deepcopy(document)
    changed["variants"]["sparse_elu"]["sparse"].update(pretrain_epochs=800, finetune_epochs=1)
    changed["train"]["epochs"] = 100
    config = load_config(write_params(tmp_path, {**changed, "variant": "sparse_elu"}))
    assert round(100 * 800 / 801) == 100  # the ratio alone would leave none
    assert (config.pretrain_epochs(), config.finetune_epochs()) == (99, 1)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("data: [unclosed\n", "not valid YAML"),
        ("a: 1\na: 2\n", "not valid YAML"),  # a duplicate key, as DVC refuses it
        ("- just\n- a list\n", "the file must be a mapping"),
        ("", "the file must be a mapping"),
    ],
)
def test_a_params_file_that_is_no_mapping_is_refused(tmp_path: Path, text: str, problem: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(SfaeError, match=problem) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "\n" not in str(caught.value)


def test_a_missing_params_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SfaeError, match="file not found") as caught:
        load_config(tmp_path / "params.yaml")
    assert str(tmp_path / "params.yaml") in str(caught.value)


def test_the_unet_sweep_shares_what_it_leaves_out(tmp_path: Path, document: dict) -> None:
    config = load_plans(write_params(tmp_path, document))
    assert "val_count" not in document["sweep"]["unet"]
    assert config.sweep.unet.val_count == config.sweep.val_count
    assert config.sweep.unet.references == config.sweep.references
    # The paper net's finals: the study's seeds first, then more (seed noise measured).
    study = config.study.seeds
    assert config.sweep.final_seeds[: len(study)] == study
    changed = copy.deepcopy(document)
    changed["sweep"]["unet"].update(val_count=9, references=["pure"])
    unet = load_plans(write_params(tmp_path, changed)).sweep.unet
    assert (unet.val_count, unet.references) == (9, ("pure",))


def test_a_grid_for_a_variant_with_two_strengths_is_refused(tmp_path: Path, document: dict):
    """l2 + dropout has two knobs: a grid could not say which one it varies."""
    changed = copy.deepcopy(document)
    changed["variants"]["l2_dropout"] = {**changed["variants"]["l2"], "dropout": 0.1}
    path = write_params(tmp_path, changed)
    variant = load_config(path).variants["l2_dropout"]
    with pytest.raises(ValueError, match="regularizer_scale, variants.l2_dropout.dropout"):
        strength_key(variant)
    changed["sweep"]["grids"]["l2_dropout"] = [0.1, 0.2]
    with pytest.raises(SfaeError) as caught:
        check_params(write_params(tmp_path, changed))
    assert str(caught.value).startswith(f"{path}: sweep.grids.l2_dropout has 2 strengths")
    assert "a grid varies one" in str(caught.value)


@pytest.mark.parametrize("dataset", ["pennfudan", "mall"])
def test_preprocess_stage_with_bad_params_fails_cleanly(
    repo_root: Path, tmp_path: Path, document: dict, dataset: str
) -> None:
    changed = copy.deepcopy(document)
    changed["data"]["image_size"] = 100
    write_params(tmp_path, changed)
    result = subprocess.run(
        [sys.executable, str(repo_root / "stages" / "preprocess.py"), dataset],
        cwd=tmp_path,
        env={**os.environ, "SFAE_DATA_MIRROR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {tmp_path / 'params.yaml'}: data.image_size ")
    assert "multiple of 16" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"], "no output may appear"


def test_the_whole_file_check_imports_no_tensorflow(repo_root: Path) -> None:
    """The params check is a light stage: pydantic and ruamel, no Keras or TensorFlow."""
    script = (
        "import sys; from pathlib import Path\n"
        "from sfae.nn.regularisers.registry import REGULARISERS\n"
        "from sfae.plans import check_params\n"
        "check_params(Path('params.yaml'), REGULARISERS)\n"
        "heavy = {'keras', 'tensorflow', 'jax'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=repo_root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_the_config_imports_no_regulariser(repo_root: Path) -> None:
    """sfae.config is handed the regularisers: it imports nothing of ours but the error type."""
    tree = ast.parse((repo_root / "src" / "sfae" / "config.py").read_text())
    ours = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sfae")
    }
    ours |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.startswith("sfae")
    }
    assert ours == {"sfae.errors"}


def test_unlabeled_frames_are_prepared_ones_and_never_scored_ones(tmp_path: Path, document):
    """CUHK Mall has 2000 frames; the first mall.frames are scored, the last
    mall.unlabeled_frames are prepared for the variants that learn from them too."""
    frames, prepared = document["mall"]["frames"], document["mall"]["unlabeled_frames"]
    sparse = document["variants"]["sparse_softabs_frames"]["sparse"]
    config = load_config(write_params(tmp_path, document))
    taken = config.variants["sparse_softabs_frames"].sparse.unlabeled_frames
    assert taken == sparse["unlabeled_frames"] <= prepared == config.mall.unlabeled_frames
    assert prepared <= 2000 - frames
    # A variant takes at most the prepared frames.
    changed = copy.deepcopy(document)
    changed["variants"]["sparse_softabs_frames"]["sparse"]["unlabeled_frames"] = prepared + 1
    path = write_params(tmp_path, changed)
    with pytest.raises(SfaeError) as caught:
        load_config(path)
    said = str(caught.value)
    assert said.startswith(f"{path}: variants.sparse_softabs_frames.sparse.unlabeled_frames")
    assert f"more than the {prepared} frames that mall.unlabeled_frames prepares" in said
    # The prepared frames never reach the scored ones.
    changed = copy.deepcopy(document)
    changed["mall"]["unlabeled_frames"] = 2001 - frames
    path = write_params(tmp_path, changed)
    with pytest.raises(SfaeError) as caught:
        load_config(path)
    said = str(caught.value)
    assert said.startswith(f"{path}: mall.unlabeled_frames") and f"= {2000 - frames}," in said
    # Fewer scored frames leave more free ones.
    changed["mall"]["frames"] = frames - 1
    assert load_config(write_params(tmp_path, changed)).mall.unlabeled_frames == 2001 - frames
