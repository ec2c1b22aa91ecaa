"""Recipes (preset training settings), mixed precision and test-time augmentation."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.cli import build_parser
from cnnlab.cli.train import config_from_args
from cnnlab.errors import ConfigError
from cnnlab.evaluate.scores import evaluate_run
from cnnlab.model.cnn import build_model
from cnnlab.model.inference import logits_in_batches, normalize
from cnnlab.model.presets import PRESETS
from cnnlab.training.config import TrainConfig, apply, config_of, resolve_config
from cnnlab.training.setup import autocast_dtype, cpu_has_native_bf16

SMALL = dict(data="shapes", train_size=1200, test_size=400, batch_size=32, quiet=True)
SMALL_MODEL = (
    "conv(16,3,padding=same) maxpool(2) batchnorm relu conv(32,3,padding=same) maxpool(2) "
    "batchnorm relu flatten fc(10)"
)


def test_every_preset_recipe_is_a_valid_config():
    for name, preset in PRESETS.items():
        config = resolve_config({"model": name})  # raises ConfigError for a bad key or value
        for key, value in preset.recipe.items():
            assert getattr(config, key) == apply(TrainConfig(), {key: value}).__dict__[key], (
                name,
                key,
            )


def test_best_brings_its_recipe_and_explicit_settings_win(tmp_path):
    recipe = PRESETS["best"].recipe
    assert recipe["epochs"] != TrainConfig().epochs  # best trains longer than the default
    assert resolve_config({"model": "best"}).epochs == recipe["epochs"]
    assert resolve_config({"model": "best"}, {"epochs": 2}).epochs == 2
    # A spec or another preset without a recipe keeps the plain defaults.
    assert resolve_config({"model": "tutorial"}) == apply(TrainConfig(), {"model": "tutorial"})
    # Through the command line: the recipe comes from the model named in a config file, and
    # flags and key=value overrides still win over it.
    path = tmp_path / "best.toml"
    path.write_text('model = "best"\nlabel_smoothing = 0.05\n')
    args = build_parser().parse_args(["train", "--config", str(path), "--lr", "0.3", "seed=4"])
    config = config_from_args(args)
    assert (config.model, config.epochs) == ("best", recipe["epochs"])
    assert (config.lr, config.seed, config.label_smoothing) == (0.3, 4, 0.05)


def test_the_default_model_has_a_recipe_per_data_set():
    fashion = PRESETS["default"].data_recipes["fashion-mnist"]
    for data in ("fashion-mnist", "fashion_mnist", "Fashion-MNIST"):  # aliases find it too
        config = resolve_config({"data": data})
        assert (config.epochs, config.augment) == (fashion["epochs"], fashion["augment"]), data
    assert resolve_config({}) == TrainConfig()  # `cnnlab train` (shapes): the plain defaults
    assert resolve_config({"data": "folder:photos"}).epochs == TrainConfig().epochs
    assert resolve_config({"data": "fashion-mnist"}, {"epochs": 9}).epochs == 9
    # Another model on the same data: that model's recipe (none here), not the default's.
    assert (
        resolve_config({"data": "fashion-mnist", "model": "tutorial"}).epochs
        == TrainConfig().epochs
    )


def test_recipes_ask_for_mirror_tta_only_where_a_mirror_keeps_labels():
    from cnnlab.data.registry import REGISTRY

    for name in PRESETS:
        for data, entry in REGISTRY.items():
            config = resolve_config({"model": name, "data": data})
            assert not config.tta or entry.flip_ok, (name, data)
    assert resolve_config({"model": "best", "data": "fashion-mnist"}).tta


def test_precision_setting_resolves_per_device():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") == torch.bfloat16
    assert autocast_dtype(cpu, "auto") == (torch.bfloat16 if cpu_has_native_bf16() else None)
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16"):
        apply(TrainConfig(), {"precision": "fp8"})


def test_tta_averages_each_image_with_its_mirror():
    torch.manual_seed(0)
    model = build_model("conv(4,3) relu flatten fc(3)", (1, 6, 6)).eval()
    images = torch.randint(0, 256, (5, 1, 6, 6), dtype=torch.uint8)
    mean, std = (0.4,), (0.3,)
    got = logits_in_batches(model, images, mean, std, batch_size=2, tta=True)
    with torch.no_grad():
        x = normalize(images, mean, std)
        want = (model(x) + model(x.flip(3))) / 2
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    plain = logits_in_batches(model, images, mean, std, batch_size=2)
    assert not torch.allclose(got, plain)  # random images are not mirror-symmetric


@pytest.fixture(scope="module")
def bf16_tta_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipes") / "run"
    return cnnlab.train(
        model=SMALL_MODEL,
        epochs=2,
        precision="bf16",
        tta=True,
        out=str(out),
        **SMALL,
    )


def test_bf16_training_with_tta_writes_an_ordinary_run(bf16_tta_run):
    run = bf16_tta_run
    assert run.metrics["precision"] == "bfloat16"
    assert config_of(run).tta is True and config_of(run).precision == "bf16"
    # 10 classes; 2 short epochs land near 40% in fp32 and bf16 alike: well above chance.
    assert 0.25 < run.metrics["test_accuracy"] <= 1.0
    weights = run.load_model().state_dict()
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())


def test_eval_scores_a_tta_run_as_training_scored_it(bf16_tta_run):
    evaluation, _ = evaluate_run(bf16_tta_run)
    assert evaluation.accuracy == pytest.approx(bf16_tta_run.metrics["test_accuracy"], abs=1e-6)


def test_tta_is_refused_where_a_mirror_changes_labels(tmp_path):
    for label in ("b", "d"):  # letters a mirror turns into each other
        (tmp_path / "glyphs" / label).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), color=40 * i).save(tmp_path / "glyphs" / label / f"{i}.png")
    with pytest.raises(ConfigError, match="mirror changes labels"):
        cnnlab.train(
            model="conv(4,3) relu flatten fc(2)",
            data=f"folder:{tmp_path / 'glyphs'}",
            tta=True,
            epochs=1,
            batch_size=2,
            quiet=True,
            out=str(tmp_path / "run"),
        )


def test_light_augmentation_is_the_mirror_only_where_labels_allow_it():
    from cnnlab.data.augment import AugmentPolicy, parse_policy

    assert parse_policy("light", flip_ok=True, image_size=28) == AugmentPolicy(flip=True)
    assert parse_policy("light", flip_ok=False, image_size=28).is_identity  # no error, no flip
    assert parse_policy("light,cutout=8", flip_ok=True) == AugmentPolicy(flip=True, cutout=8)


def test_resuming_with_the_data_named_again_keeps_the_runs_own_settings(tmp_path):
    from cnnlab.run.files import CONFIG_FILE
    from cnnlab.training.setup import resumed_config

    # A fashion-mnist run trained for 8 epochs (not its recipe's 4); resumed with --data given.
    saved = resolve_config({"data": "fashion-mnist"}, {"epochs": 8, "out": str(tmp_path)})
    (tmp_path / CONFIG_FILE).write_text(saved.to_toml())
    resumed = resumed_config(tmp_path, resolve_config({"data": "fashion-mnist"}))
    assert resumed.epochs == 8 and resumed.augment == saved.augment
    asked = resumed_config(tmp_path, resolve_config({"data": "fashion-mnist"}, {"epochs": 10}))
    assert asked.epochs == 10  # an explicit change the resume allows still applies


@pytest.mark.parametrize(
    ("settings", "shown"),
    [
        ([], None),
        (["momentum=0.95"], ", Nesterov momentum 0.95,"),
        (["momentum=0"], ", no momentum,"),
    ],
)
def test_the_recipe_line_names_a_momentum_other_than_the_usual(settings, shown, tmp_path, capsys):
    from cnnlab.cli import main

    argv = ["train", "--model", "tutorial", "--data", "shapes", "train_size=128", "test_size=32"]
    assert main([*argv, "epochs=1", *settings, "--out", str(tmp_path / "run")]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("recipe:")]
    if shown:
        assert shown in line
    else:
        assert "momentum" not in line


def test_fashion_mnist_brings_the_default_models_momentum():
    assert resolve_config({"data": "fashion-mnist"}).momentum == 0.95
    assert resolve_config({"data": "fashion-mnist"}, {"momentum": 0.9}).momentum == 0.9
    assert resolve_config({"data": "shapes"}).momentum == TrainConfig().momentum == 0.9
