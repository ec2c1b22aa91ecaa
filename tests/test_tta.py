"""Test-time augmentation: a run trained with tta = true is answered everywhere as `cnnlab eval`
scores it (the mean of the logits of each image and its mirror), and a run without it as before."""

from __future__ import annotations

import json
import shutil

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from serve_support import ServerProcess, png_bytes

import cnnlab
from cnnlab.deploy.export import export_run
from cnnlab.deploy.predict import Predictor
from cnnlab.evaluate.scores import evaluate_run
from cnnlab.model.cnn import build_model
from cnnlab.model.inference import logits_in_batches, normalize, tta_logits
from cnnlab.run.folder import Run
from cnnlab.training.config import TrainConfig
from cnnlab.training.plan import SMALL_DATA, fit_to_data

TINY_MODEL = (
    "conv(16,3,padding=same) maxpool(2) batchnorm relu conv(32,3,padding=same) maxpool(2) "
    "batchnorm relu flatten fc(10)"
)


@pytest.fixture(scope="module")
def tta_run(tmp_path_factory) -> Run:
    """A run trained for a few steps with tta = true (shapes: a mirror keeps every label)."""
    out = tmp_path_factory.mktemp("tta") / "run"
    settings = dict(data="shapes", train_size=512, test_size=64, epochs=3, batch_size=32)
    return cnnlab.train(
        model=TINY_MODEL, optimizer="adam", tta=True, quiet=True, out=str(out), **settings
    )


@pytest.fixture(scope="module")
def plain_run(tta_run, tmp_path_factory) -> Run:
    """The same weights, but the run record (and config.toml) saying tta = false."""
    out = tmp_path_factory.mktemp("plain") / "run"
    shutil.copytree(tta_run.path, out)
    config = out / "config.toml"
    text = config.read_text()
    assert "tta = true" in text
    config.write_text(text.replace("tta = true", "tta = false"))
    record = json.loads((out / "record.json").read_text())
    assert record["pixels"]["tta"] is True
    record["pixels"]["tta"] = False
    (out / "record.json").write_text(json.dumps(record))
    return Run.open(out)


def images_of(run: Run, count: int = 6) -> torch.Tensor:
    """uint8 (count, C, H, W): random pixels, none mirror-symmetric."""
    generator = torch.Generator().manual_seed(1)
    shape = (count, *run.input_shape)
    return torch.randint(0, 256, shape, generator=generator).to(torch.uint8)


def model_logits(run: Run, images: torch.Tensor, mirror_too: bool) -> torch.Tensor:
    """The run's own model, by hand: its logits, or the mean with its mirror's."""
    model = run.load_model().eval()
    with torch.no_grad():
        x = normalize(images, run.mean, run.std)
        logits = model(x)
        return (logits + model(x.flip(3))) / 2 if mirror_too else logits


def test_load_probabilities_are_the_softmax_of_the_mirror_mean(tta_run):
    images = images_of(tta_run)
    arrays = [image[0].numpy() for image in images]  # (H, W) grayscale arrays
    got = torch.from_numpy(cnnlab.load(tta_run.path, engine="eager").probabilities(arrays))
    want = torch.softmax(model_logits(tta_run, images, mirror_too=True), dim=1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    without = torch.softmax(model_logits(tta_run, images, mirror_too=False), dim=1)
    assert (got - without).abs().max() > 1e-3  # the mirror changed the answer


def test_a_run_without_tta_answers_as_before(plain_run):
    images = images_of(plain_run)
    loaded = cnnlab.load(plain_run.path, engine="eager")
    got = torch.from_numpy(loaded.probabilities([image[0].numpy() for image in images]))
    want = torch.softmax(model_logits(plain_run, images, mirror_too=False), dim=1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert not loaded.predictor.tta and "tta" not in loaded.predictor.choice.line()


def test_predict_on_a_file_gives_evals_number_for_that_image(tta_run, cli, tmp_path):
    evaluation, images = evaluate_run(tta_run)
    for i in range(4):
        Image.fromarray(images[i, 0].numpy(), mode="L").save(tmp_path / f"{i}.png")
    result = cli("predict", str(tta_run.path), str(tmp_path), "--json", "--top-k", "10")
    assert result.code == 0, result.err
    answers = json.loads(result.out)["results"]
    for answer in answers:
        i = int(answer["file"].rsplit("/", 1)[1].split(".")[0])
        got = {row["class"]: row["probability"] for row in answer["top_k"]}
        want = evaluation.probabilities[i]
        assert got == pytest.approx(
            dict(zip(evaluation.classes, want.tolist(), strict=True)), abs=1e-5
        )
        assert answer["class"] == evaluation.classes[int(evaluation.predictions[i])]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_every_engine_applies_the_runs_tta(tta_run, fmt, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tta_run.path, run_dir)
    run = Run.open(run_dir)
    result = export_run(run, fmt)
    assert json.loads(result.sidecar.read_text())["tta"] == "mirror"
    predictor = Predictor(run, engine=fmt)
    assert predictor.engine.name == fmt and predictor.tta
    images = images_of(run)
    want = torch.softmax(model_logits(run, images, mirror_too=True), dim=1)
    torch.testing.assert_close(predictor.probabilities(images), want, atol=1e-4, rtol=0)


def test_a_run_without_tta_exports_tta_none(plain_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(plain_run.path, run_dir)
    result = export_run(Run.open(run_dir), "onnx")
    assert json.loads(result.sidecar.read_text())["tta"] == "none"


@pytest.mark.slow
def test_the_server_answers_with_the_runs_tta(tta_run, tmp_path):
    image = images_of(tta_run, 1)
    server = ServerProcess(tta_run.path, tmp_path / "serve.log")
    try:
        png = png_bytes(image[0, 0].numpy())
        answer = httpx.post(
            f"{server.url}/api/predict", content=png, headers={"content-type": "image/png"}
        )
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    probabilities = answer.json()["probabilities"]
    want = torch.softmax(model_logits(tta_run, image, mirror_too=True), dim=1)[0]
    got = torch.tensor([probabilities[name] for name in tta_run.classes])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_mirror_shift_tta_averages_the_mirrors_of_shifted_images():
    torch.manual_seed(0)
    model = build_model("conv(4,3) relu flatten fc(3)", (1, 6, 6)).eval()
    images = torch.randint(0, 256, (5, 1, 6, 6), dtype=torch.uint8)
    mean, std = (0.4,), (0.3,)
    got = logits_in_batches(model, images, mean, std, batch_size=2, tta="mirror-shift")
    with torch.no_grad():
        x = normalize(images, mean, std)
        padded = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
        up_left = torch.from_numpy(padded[:, :, :6, :6].copy())
        down_right = torch.from_numpy(padded[:, :, 2:, 2:].copy())
        views = [x, up_left, down_right]
        mirrored = [(model(v) + model(v.flip(3))) / 2 for v in views]
        want = 0.5 * mirrored[0] + 0.25 * mirrored[1] + 0.25 * mirrored[2]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(tta_logits(model, x, "none"), model(x))
    with pytest.raises(ValueError, match="tta must be one of"):
        tta_logits(model, x, "rotate")


def test_small_data_trained_with_mirrors_gets_mirror_tta_by_default():
    assert fit_to_data(TrainConfig(), 300, mirrors=True)[0].tta
    assert not fit_to_data(TrainConfig(), 300, mirrors=False)[0].tta  # e.g. digits, augment=none
    assert not fit_to_data(TrainConfig(), SMALL_DATA, mirrors=True)[0].tta  # large: unchanged
    sized = TrainConfig(fit_to_data=False)  # the user gave epochs or batch_size
    assert not fit_to_data(sized, 300, mirrors=True)[0].tta


@pytest.mark.parametrize(
    ("augment", "noted"), [("none", True), ("standard", False), ("translate=2,altflip", False)]
)
def test_tta_on_a_run_that_never_trains_on_mirrors_is_noted(augment, noted, tmp_path, capsys):
    from cnnlab.cli import main

    argv = ["train", "--model", TINY_MODEL, "--data", "shapes", "train_size=256"]
    argv += ["test_size=64", "epochs=1", "tta=true", f"augment={augment}"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr()
    assert ("note: tta=true averages each test image with its mirror" in printed.out) is noted
    assert "test accuracy:" in printed.out
