"""The U-Net (model.arch unet): shapes, regularisers, shards, phases, saving, its params."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from fit_loops import project_fit, tuned_fit
from PIL import Image
from test_training import assert_shards_change_nothing
from test_training import rectangles as training_rectangles

from sfae import cli
from sfae.config import Config, read_yaml, with_arch
from sfae.data.image_io import resize_image
from sfae.errors import SfaeError
from sfae.inference.predict import predict_probabilities, resize_probability
from sfae.nn import training
from sfae.nn.model import build_model, encoder_model, paper_model, unet_model
from sfae.nn.regularisers.registry import load_config
from sfae.nn.saving import save_model_deterministic

SIZE = 32
WIDTH = 4
DEPTH = 4
FEATURES = WIDTH * 2 ** (DEPTH - 1)  # the deepest level's channels, globally pooled
COUNT = 10
VARIANTS = tuple(
    read_yaml((Path(__file__).resolve().parent.parent / "params.yaml").read_text())["variants"]
)


def unet_config(
    base: Config,
    variant: str = "pure",
    norm: str = "group",
    pretrain: int = 2,
    finetune: int = 2,
) -> Config:
    """A tiny U-Net (32x32, width 4) of the variant; sparse ones pretrain then finetune."""
    sparse = base.variants[variant].sparse is not None
    unet = replace(
        base.model.unet,
        width=WIDTH,
        depth=DEPTH,
        norm=norm,
        groups=2,
        epochs=pretrain + finetune if sparse else finetune,
        pretrain_epochs=pretrain if sparse else 0,
    )
    config = replace(
        base,
        variant=base.variants[variant],
        data=replace(base.data, image_size=SIZE),
        model=replace(base.model, unet=unet),
    )
    return with_arch(config, "unet")


def rectangles(count: int = COUNT, seed: int = 0):
    return training_rectangles(count, SIZE, seed)


def kernels(model: keras.Model) -> list:
    return [v for v in model.trainable_variables if v.path.endswith("kernel")]


def weights_by_path(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.variables}


@pytest.fixture(scope="module")
def base(repo_root: Path) -> Config:
    return load_config(repo_root / "params.yaml")


@pytest.fixture(scope="module")
def models(base: Config) -> dict[str, keras.Model]:
    return {name: build_model(unet_config(base, name)) for name in VARIANTS}


@pytest.fixture(scope="module")
def data():
    return rectangles()


def test_the_paper_net_stays_the_default(base: Config) -> None:
    assert base.arch == "paper" and base.model.arch == "paper"
    assert base.train.epochs == 801 and base.train.learning_rate == 0.005
    model = build_model(base)
    assert model.count_params() == 6505
    # build_model only dispatches: the paper net is paper_model's, weight for weight.
    for ours, reference in zip(model.get_weights(), paper_model(base).get_weights(), strict=True):
        np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_builds_with_the_outputs_of_the_paper_net(models, variant: str) -> None:
    model = models[variant]
    assert model.get_layer("mask").output is model.outputs[0]
    assert model.get_layer("features").output is model.outputs[1]
    assert [tuple(o.shape) for o in model.outputs] == [(None, SIZE, SIZE, 1), (None, FEATURES)]
    images = rectangles(3)[0]
    masks, features = model.predict_on_batch(images)
    assert masks.shape == (3, SIZE, SIZE, 1) and features.shape == (3, FEATURES)
    assert np.isfinite(masks).all() and masks.min() > 0.0 and masks.max() < 1.0
    assert model.input_shape == (None, SIZE, SIZE, 3)  # what `sfae predict` reads


def test_four_levels_two_convolutions_each_and_skips(models) -> None:
    model = models["pure"]
    names = {layer.name for layer in model.layers}
    for level in range(1, DEPTH + 1):
        assert {f"encode_{level}a", f"encode_{level}b"} <= names
        channels = WIDTH * 2 ** (level - 1)
        assert model.get_layer(f"encode_{level}b").filters == channels
        assert model.get_layer(f"encode_{level}a").kernel_size == (3, 3)
    for level in range(1, DEPTH):
        assert {f"up_{level}", f"skip_{level}", f"decode_{level}a", f"decode_{level}b"} <= names
        skip = model.get_layer(f"skip_{level}")
        assert skip.input[1] is model.get_layer(f"encode_{level}b_elu").output
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.GroupNormalization)]
    # two per level down and up, one after each transposed convolution
    assert len(norms) == 2 * DEPTH + 3 * (DEPTH - 1)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert model.get_layer("bottleneck").input is model.get_layer(f"encode_{DEPTH}b_elu").output


def test_the_same_seed_gives_the_same_weights(base: Config) -> None:
    config = unet_config(base)
    first, again = build_model(config), build_model(config)
    other = build_model(replace(config, seed=config.seed + 1))
    for a, b, c in zip(first.get_weights(), again.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
        if a.std() > 0:  # kernels; GroupNorm's gamma/beta start at 1 and 0 whatever the seed
            assert not np.array_equal(a, c)


def test_no_normalisation_gives_biases_instead(base: Config) -> None:
    model = unet_model(unet_config(base, norm="none"))
    assert not any(isinstance(layer, keras.layers.GroupNormalization) for layer in model.layers)
    assert model.get_layer("encode_1a").use_bias and model.get_layer("mask_logit").use_bias
    grouped = unet_model(unet_config(base))
    assert not grouped.get_layer("encode_1a").use_bias


@pytest.mark.parametrize("variant", ["l1", "l2"])
def test_l1_and_l2_penalise_every_kernel(models, base: Config, variant: str) -> None:
    model = models[variant]
    weights = [keras.ops.convert_to_numpy(k) for k in kernels(model)]
    # 2 per level down, 3 per level up (the transposed one too), the mask head
    assert len(weights) == len(model.losses) == 2 * DEPTH + 3 * (DEPTH - 1) + 1
    scale = base.variants[variant].penalty.regularizer_scale
    expected = (
        scale * sum(np.abs(w).sum() for w in weights)
        if variant == "l1"
        else scale * sum(np.square(w).sum() for w in weights) / 2
    )
    penalty = float(keras.ops.convert_to_numpy(training.weight_penalty(model)))
    assert penalty == pytest.approx(expected, rel=1e-4)
    assert not models["pure"].losses


@pytest.mark.parametrize("variant", VARIANTS)
def test_dropout_layers_only_in_the_variants_with_dropout(models, base: Config, variant) -> None:
    drops = [
        layer
        for layer in models[variant].layers
        if isinstance(layer, keras.layers.SpatialDropout2D)
    ]
    dropout = base.variants[variant].dropout
    if dropout is not None:  # dropout, augment_dropout
        assert len(drops) == 2 * DEPTH + 3 * (DEPTH - 1)  # after every hidden convolution
        assert {layer.rate for layer in drops} == {dropout.dropout}
        assert len({layer.seed for layer in drops}) == len(drops)
    else:
        assert drops == []


@pytest.mark.parametrize("variant", ["pure", "l1", "sparse_elu", "sparse_softabs"])
def test_sharded_terms_and_gradients_equal_the_whole_batch(base: Config, data, variant) -> None:
    # GroupNormalization normalises each example alone: shards only regroup the work.
    assert_shards_change_nothing(unet_config(base, variant), *data)


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "in-a-nested-model"])
def test_the_loop_refuses_shards_for_batch_statistics(base: Config, data, nested) -> None:
    images, masks = data
    inputs = keras.Input((SIZE, SIZE, 3))
    norm = keras.layers.BatchNormalization(name="batch_norm")
    if nested:  # a block built as its own model: its layers are not the outer model's
        norm = keras.Sequential([norm], name="block")
    hidden = norm(keras.layers.Conv2D(2, 3, padding="same")(inputs))
    mask = keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask")(hidden)
    features = keras.layers.GlobalAveragePooling2D(name="features")(hidden)
    model = keras.Model(inputs, [mask, features])
    terms = training.finetune_terms(base)  # pure: segmentation + penalty
    with pytest.raises(SfaeError, match=r"train.shards 2 .*batch_norm.*set train.shards to 1"):
        training.fit(model, terms, images, masks, 1, 1e-3, 5, seed=0, shards=2)
    assert len(training.fit(model, terms, images, masks, 1, 1e-3, 5, seed=0, shards=1)) == 1


def test_sparse_pretraining_then_finetuning_on_the_unet(base: Config, data) -> None:
    images, masks = data
    config = unet_config(base, "sparse_elu", pretrain=2, finetune=2)
    assert (config.pretrain_epochs(), config.finetune_epochs()) == (2, 2)
    training.configure_determinism(config.seed)
    model = build_model(config)
    before = weights_by_path(model)
    encoder_paths = {v.path for v in encoder_model(model).trainable_variables}
    history = training.pretrain(model, config, images)
    assert len(history) == 2 and set(history[0].terms) == {"loss", "sparse"}
    assert all(np.isfinite(entry.terms["sparse"]) for entry in history)
    after = weights_by_path(model)
    moved = {path for path in before if not np.array_equal(before[path], after[path])}
    assert moved and moved <= encoder_paths  # the decoder waits for finetuning
    assert not any(path.startswith(("decode_", "up_", "mask")) for path in moved)
    history = training.finetune(model, config, images, masks)
    assert len(history) == 2
    assert set(history[0].terms) == {"loss", "segmentation", "penalty", "sparse"}


@pytest.mark.parametrize("variant", ["dropout", "augment"])
def test_dropout_and_augment_train_on_the_unet(base: Config, data, variant: str) -> None:
    images, masks = data
    config = unet_config(base, variant, finetune=2)
    history = training.finetune(build_model(config), config, images, masks)
    assert len(history) == 2
    assert all(np.isfinite(list(entry.terms.values())).all() for entry in history)


def test_project_loop_and_tuned_fit_agree_on_the_unet(base: Config, data) -> None:
    images, masks = data
    config = unet_config(base, "l2")
    project = project_fit(config, images, masks, epochs=2, shuffle=False)
    tuned = tuned_fit(config, images, masks, epochs=2, shuffle=False)
    np.testing.assert_allclose(project.losses, tuned.losses, rtol=1e-3)


def test_the_unet_survives_save_and_load(base: Config, tmp_path: Path) -> None:
    model = build_model(unet_config(base, "dropout"))
    model.get_layer("encode_2a_norm").gamma.assign(np.full(8, 1.5, np.float32))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    images = rectangles(3, seed=2)[0]
    for original, restored in zip(
        model.predict_on_batch(images), loaded.predict_on_batch(images), strict=True
    ):
        np.testing.assert_array_equal(original, restored)
    for before, after in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    assert loaded.get_layer("features").output is loaded.outputs[1]
    np.testing.assert_allclose(
        encoder_model(loaded).predict_on_batch(images), model.predict_on_batch(images)[1]
    )


def test_sfae_predict_segments_with_a_saved_unet(base: Config, capsys, tmp_path: Path) -> None:
    model = build_model(unet_config(base, "augment"))
    path = tmp_path / "unet.keras"
    save_model_deterministic(model, path)  # as the finetune stage saves it
    image = tmp_path / "street.png"
    rgb = np.random.default_rng(5).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(image)

    status = cli.main(["predict", "--model", str(path), "--out", str(tmp_path / "out"), str(image)])

    assert status == 0, capsys.readouterr().err
    mask = np.asarray(Image.open(tmp_path / "out" / "street_mask.png"))
    assert mask.shape == (45, 70)  # the input's size, not the U-Net's 32x32
    # The same map as the network in memory gives at its own input size, resized back.
    at_model_size = resize_image(rgb, (SIZE, SIZE))
    probability = resize_probability(predict_probabilities(model, at_model_size[None])[0], (70, 45))
    np.testing.assert_array_equal(mask, np.where(probability >= 0.5, 255, 0))


# ------------------------------------------------------------------ the model section


@pytest.fixture(scope="module")
def document(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def load_edited(tmp_path: Path, document: dict, **unet) -> Config:
    changed = copy.deepcopy(document)
    arch = unet.pop("arch", None)
    if arch is not None:
        changed["model"]["arch"] = arch
    changed["model"]["unet"].update(unet)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(changed, sort_keys=False))
    return load_config(path)


def test_arch_unet_loads_the_unet_schedule(tmp_path: Path, document: dict) -> None:
    config = load_edited(tmp_path, document, arch="unet")
    unet = document["model"]["unet"]
    assert config.arch == "unet" and config.model.unet.width == unet["width"]
    assert config.train.epochs == unet["epochs"]
    assert config.train.learning_rate == unet["learning_rate"]
    assert config.train.batch_size == document["train"]["batch_size"]  # the rest stays
    for name in ("sparse_softabs", "sparse_elu"):
        sparse = replace(config, variant=config.variants[name])
        assert sparse.pretrain_epochs() == unet["pretrain_epochs"]
        assert sparse.pretrain_epochs() + sparse.finetune_epochs() == unet["epochs"]
        assert sparse.variant.sparse.weight == document["variants"][name]["sparse"]["weight"]
    assert config.finetune_epochs() == unet["epochs"]  # pure
    # with_arch makes the same config from the paper one (as the benchmark does).
    paper = load_edited(tmp_path, document)
    assert with_arch(paper, "unet") == config
    assert build_model(replace(config, data=replace(config.data, image_size=SIZE))).name == (
        "sfae_unet_pure"
    )


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        ({"arch": "resnet"}, "model.arch", "must be 'paper' or 'unet', got 'resnet'"),
        ({"bogus": 1}, "model.unet.bogus", "not a known setting"),
        ({"grups": 1}, "model.unet.grups", "not a known setting; did you mean model.unet.groups?"),
        ({"norm": "batch"}, "model.unet.norm", "must be 'group' or 'none'"),
        ({"width": 6, "groups": 4}, "model.unet.width", "multiple of groups (4)"),
        ({"depth": 6}, "model.unet.depth", "must be less than or equal to 5, got 6"),
        ({"depth": 1}, "model.unet.depth", "must be greater than or equal to 2, got 1"),
        ({"epochs": 10, "pretrain_epochs": 10}, "model.unet.pretrain_epochs", "[0, 9]"),
        ({"learning_rate": 0}, "model.unet.learning_rate", "must be greater than or equal"),
        ({"width": "8"}, "model.unet.width", "must be a valid integer, got '8'"),
    ],
)
def test_a_bad_model_setting_names_its_key(
    tmp_path: Path, document: dict, edit: dict, key: str, problem: str
) -> None:
    with pytest.raises(SfaeError) as caught:
        load_edited(tmp_path, document, **edit)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'params.yaml'}: {key} "), message
    assert problem in message
