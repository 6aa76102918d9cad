"""params.yaml: the real file loads; every bad value names the file and its dotted key."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sfae.config import VARIANTS, load_config
from sfae.errors import SfaeError


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
    assert sorted(config.variants) == sorted(VARIANTS)
    assert config.study.seeds == (6278, 1, 2, 3, 4)
    assert config.train.shards == 2
    for name in ("sparse_softabs", "sparse_elu"):
        sparse = config.variants[name].sparse
        assert sparse is not None
        assert sparse.pretrain_epochs + sparse.finetune_epochs == config.train.epochs
    assert config.variants["l1"].regularizer == "l1"
    assert config.variants["l1"].regularizer_scale == pytest.approx(0.005)
    assert config.variants["pure"].regularizer_scale == 0.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_can_be_chosen(tmp_path: Path, document: dict, variant: str) -> None:
    config = load_config(write_params(tmp_path, {**document, "variant": variant}))
    assert config.variant.name == variant
    assert config.variant == config.variants[variant]
    if variant.startswith("sparse"):
        assert config.variant.bottleneck_activation == "linear"
        assert config.variant.sparse.activation == variant.removeprefix("sparse_")
        assert config.variant.pretrain_epochs() == 201
        assert config.finetune_epochs() == 600
    else:
        assert config.variant.pretrain_epochs() == 0
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
    (setting("data.image_size", 100), "data.image_size", "multiple of 16"),
    (setting("data.image_size", 0), "data.image_size", "got 0"),
    (setting("data.image_size", -16), "data.image_size", "got -16"),
    (setting("data.image_size", 96.0), "data.image_size", "must be an integer"),
    (setting("data.image_size", "96"), "data.image_size", "must be an integer, got '96'"),
    (setting("data.train_count", 0), "data.train_count", "got 0"),
    (setting("data.train_count", 170), "data.train_count", "got 170"),
    (setting("data.split_seed", -1), "data.split_seed", "got -1"),
    (setting("variant", "l3"), "variant", "must be one of pure, l1, l2"),
    (dropping("data.split_seed"), "data.split_seed", "is missing"),
    (dropping("mall"), "mall", "is missing"),
    (dropping("variants.l2"), "variants.l2", "is missing"),
    (setting("data.image_sise", 96), "data.image_sise", "not a known setting"),
    (setting("learning_rate", 0.1), "learning_rate", "not a known setting"),
    (setting("variants.l2.sparse", 1.0), "variants.l2.sparse", "must be a mapping"),
    (setting("variants.extra", {}), "variants.extra", "not a known setting"),
    (setting("train.learning_rate", "fast"), "train.learning_rate", "must be a number"),
    (setting("train.learning_rate", 0), "train.learning_rate", "must be in"),
    (setting("train.epochs", "801"), "train.epochs", "must be an integer"),
    (setting("seed", True), "seed", "must be an integer, got True"),
    (setting("mall.frames", 0), "mall.frames", "got 0"),
    (setting("mall.frames", 2001), "mall.frames", "got 2001"),
    (setting("train", [1, 2]), "train", "must be a mapping"),
    (
        setting("variants.sparse_elu.sparse.finetune_epochs", 500),
        "variants.sparse_elu.sparse.finetune_epochs",
        "must equal train.epochs (801)",
    ),
    (setting("variants.l1.regularizer_scale", 0), "variants.l1.regularizer_scale", "> 0"),
    (setting("variants.l2.regularizer", "l3"), "variants.l2.regularizer", "must be one of"),
    (
        setting("variants.sparse_softabs.sparse.activation", "relu"),
        "variants.sparse_softabs.sparse.activation",
        "must be one of softabs, elu",
    ),
    (setting("evaluate.threshold", 1.5), "evaluate.threshold", "must be in"),
    (setting("study.seeds", [1, 1]), "study.seeds", "distinct"),
    (setting("study.seeds", []), "study.seeds", "distinct"),
    (setting("study.seeds", [1, 2**31]), "study.seeds", "[0, 2147483647]"),
    (setting("seed", 2**31), "seed", "must be in"),
    (setting("render.colormap", "rainbowish"), "render.colormap", "viridis"),
    (setting("render.colormap", 3), "render.colormap", "must be one of"),
    (setting("train.shards", 6), "train.shards", "must be in [1, 5]"),
    (setting("train.shards", 0), "train.shards", "must be in [1, 5]"),
    (setting("sweep.unet.final_seeds", [1, 1]), "sweep.unet.final_seeds", "distinct"),
    (setting("sweep.unet.grids.l2", [1e-3]), "sweep.unet.grids.l2", "at least two"),
    (setting("sweep.unet.val_count", 0), "sweep.unet.val_count", "got 0"),
    (setting("sweep.unet.references", ["none"]), "sweep.unet.references", "list of variants"),
    (setting("sweep.unet.unet", {}), "sweep.unet.unet", "not a known setting"),
    (dropping("sweep.unet.seeds"), "sweep.unet.seeds", "is missing"),
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


def test_epochs_that_no_longer_add_up_are_refused(tmp_path: Path, document: dict) -> None:
    """train.epochs 800 breaks every sparse variant: 201 + 600 != 800."""
    changed = copy.deepcopy(document)
    changed["train"]["epochs"] = 800
    with pytest.raises(SfaeError, match=r"sparse_softabs\.sparse\.finetune_epochs plus") as caught:
        load_config(write_params(tmp_path, changed))
    assert "201 + 600" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("data: [unclosed\n", "not valid YAML"),
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


def test_a_missing_params_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SfaeError, match="file not found") as caught:
        load_config(tmp_path / "params.yaml")
    assert str(tmp_path / "params.yaml") in str(caught.value)


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
    expected = {"", "data", "mall", "train", "variants", "evaluate", "render", "study"}
    expected |= {f"variants.{name}" for name in VARIANTS}
    expected |= {"variants.sparse_softabs.sparse", "variants.sparse_elu.sparse"}
    assert expected <= set(UNKNOWN_KEY_SECTIONS)


@pytest.mark.parametrize("section", UNKNOWN_KEY_SECTIONS, ids=lambda s: s or "top")
def test_an_unknown_key_is_refused_in_every_section(
    tmp_path: Path, document: dict, section: str
) -> None:
    """Every section calls done(): a stray key anywhere is a typo, not silently ignored."""
    changed = copy.deepcopy(document)
    target = changed
    for key in section.split(".") if section else []:
        target = target[key]
    target["bogus_key"] = 1
    path = write_params(tmp_path, changed)
    dotted = f"{section}.bogus_key" if section else "bogus_key"
    with pytest.raises(SfaeError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {dotted} is not a known setting (a typo?)")


def test_the_unet_sweep_shares_what_it_leaves_out(tmp_path: Path, document: dict) -> None:
    config = load_config(write_params(tmp_path, document))
    assert "val_count" not in document["sweep"]["unet"]
    assert config.sweep.unet.val_count == config.sweep.val_count
    assert config.sweep.unet.references == config.sweep.references
    # The paper net's finals: the study's seeds first, then more (seed noise measured).
    study = config.study.seeds
    assert config.sweep.final_seeds[: len(study)] == study
    changed = copy.deepcopy(document)
    changed["sweep"]["unet"].update(val_count=9, references=["pure"])
    unet = load_config(write_params(tmp_path, changed)).sweep.unet
    assert (unet.val_count, unet.references) == (9, ("pure",))
