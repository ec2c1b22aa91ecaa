"""The run record (run/record.py): what every stage after training reads.

A new run writes record.json; stages after training need nothing else (not config.toml). A
run folder written before record.json existed (tests/fixtures/old-run, made by
tests/fixtures/make_old_run.py with main at 8ba6fa9) keeps opening, evaluating, predicting,
exporting and serving, its record read from model.json and config.toml.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import cnnlab
from cnnlab.data.source import DataSource
from cnnlab.deploy.predict import Predictor
from cnnlab.errors import CheckpointError
from cnnlab.evaluate.scores import evaluate_run, split_images
from cnnlab.model.inference import normalize
from cnnlab.run.folder import Run
from cnnlab.server.app import create_app
from cnnlab.training.config import load_config
from cnnlab.training.setup import load_data

OLD_RUN = Path(__file__).parent / "fixtures" / "old-run"
TINY = "conv(4,3,padding=same) relu maxpool(2) conv(8,3) relu gap fc(8)"


@pytest.fixture
def old_run(tmp_path) -> Path:
    """A copy of the old run folder (the fixture itself is never written)."""
    return Path(shutil.copytree(OLD_RUN, tmp_path / "old-run"))


@pytest.fixture(scope="module")
def new_run(tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("record") / "run"
    settings = dict(data="shapes", train_size=200, test_size=40, val_split=0.2, seed=5)
    return cnnlab.train(model=TINY, epochs=2, batch_size=32, quiet=True, out=str(out), **settings)


def _logged_sizes(folder: Path) -> tuple[int, int, int]:
    """(train, validation, test) images from the run's 'data:' line in train.log."""
    line = re.search(r"^data: .*$", (folder / "train.log").read_text(), re.M).group(0)
    numbers = re.search(r"(\d+) training images, (\d+) validation, (\d+) test", line)
    return tuple(int(n) for n in numbers.groups())


def test_an_old_run_folder_opens_with_its_record_read_from_its_files(old_run):
    assert not (old_run / "record.json").exists()
    run = Run.open(old_run)
    source = run.record.source
    assert source == DataSource(
        name="shapes", train_size=400, test_size=40, val_split=0.1, split_seed=3
    )
    pixels = run.record.pixels
    assert pixels.input_shape == run.input_shape == (1, 28, 28)
    assert (pixels.mean, pixels.std) == (run.mean, run.std)
    assert pixels.keep_aspect == "stretch" and pixels.tta is False
    assert run.record.sizes == {}  # not recorded then


def test_an_old_run_folder_rebuilds_the_splits_it_trained_on(old_run):
    run = Run.open(old_run)
    train, val, test = (
        len(split_images(run, None, split)[1]) for split in ("train", "val", "test")
    )
    assert (train, val, test) == _logged_sizes(old_run)
    evaluation, _ = evaluate_run(run)
    # the same test images and weights: the accuracy training measured (one image of slack for
    # float differences between CPUs at a decision boundary)
    assert evaluation.accuracy == pytest.approx(run.metrics["test_accuracy"], abs=1 / test + 1e-6)


def test_an_old_run_folder_evaluates_predicts_exports_and_serves(old_run, tmp_path, cli):
    result = cli("eval", str(old_run))
    assert result.code == 0, result.err
    image = split_images(Run.open(old_run), None, "test")[0][0]  # (1, 28, 28) uint8
    Image.fromarray(image[0].numpy(), "L").save(tmp_path / "digit.png")
    predicted = cli("predict", str(old_run), str(tmp_path / "digit.png"), "--json")
    assert predicted.code == 0, predicted.err
    run = Run.open(old_run)
    with torch.no_grad():
        logits = run.load_model()(normalize(image[None], run.mean, run.std))
    assert json.loads(predicted.out)["results"][0]["class"] == run.classes[int(logits.argmax())]
    exported = cli("export", str(old_run), "--out", str(tmp_path / "old.onnx"))
    assert exported.code == 0 and "parity ok" in exported.out, exported.err
    with TestClient(create_app(Predictor(Run.open(old_run), "eager"))) as client:
        assert client.get("/api/model").status_code == 200
        scores = client.get("/api/run/scores")
        assert scores.status_code == 200, scores.text
        assert scores.json()["images"] == _logged_sizes(old_run)[2]


def test_a_new_run_writes_its_record_and_later_stages_need_nothing_else(new_run, tmp_path, cli):
    record = json.loads((new_run.path / "record.json").read_text())
    assert record["format"] == "cnnlab-record/1"
    assert record["sizes"] == dict(zip(("train", "val", "test"), (160, 40, 40), strict=True))
    assert record["source"]["val_split"] == 0.2 and record["source"]["split_seed"] == 5
    assert new_run.record.pixels.mean == new_run.mean
    alone = Path(shutil.copytree(new_run.path, tmp_path / "alone"))
    (alone / "config.toml").unlink()  # the training settings: no later stage reads them
    for command in (["eval", str(alone)], ["eval", str(alone), "--split", "val"]):
        result = cli(*command)
        assert result.code == 0, result.err


def test_the_record_rebuilds_exactly_the_splits_training_used(new_run):
    config = load_config(new_run.path / "config.toml")
    trained = load_data(config, torch.device("cpu"))
    for split, (images, labels) in (("train", trained.train), ("val", trained.val)):
        got_images, got_labels, _ = split_images(new_run, None, split)
        assert torch.equal(got_images, images) and torch.equal(got_labels, labels), split
    assert torch.equal(split_images(new_run, None, "test")[0], trained.test[0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(format="cnnlab-record/9"), "is not 'cnnlab-record/1'"),
        (lambda r: r.pop("source"), "'source' is missing"),
        (lambda r: r["pixels"].update(tta="yes"), "'tta' is missing or of the wrong type"),
        (lambda r: r["pixels"].update(mean=[0.9]), "mean/std are not model.json's"),
        (lambda r: r["pixels"].update(std=[0.0]), "std above 0"),
        (lambda r: r["source"].update(val_split=1.5), "data settings are out of range"),
        (lambda r: r["source"].update(image_size="9" * 30), "image_size must be"),
        (lambda r: r["sizes"].update(test=-1), "'test' is not a split's image count"),
    ],
    ids=["format", "no source", "tta type", "mean", "std", "val_split", "image_size", "sizes"],
)
def test_a_damaged_record_is_refused_when_the_run_opens(new_run, tmp_path, change, message):
    folder = Path(shutil.copytree(new_run.path, tmp_path / "run"))
    record = json.loads((folder / "record.json").read_text())
    change(record)
    (folder / "record.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="record.json") as caught:
        Run.open(folder)
    assert message in str(caught.value) and "damaged" in str(caught.value)
