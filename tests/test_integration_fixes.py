"""A folder run's keep_aspect and image size reach every place that reads them (model.json,
config.toml, a resume, feature maps of a file, an export), and the server's 504 fits its request."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tomllib

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import cnnlab
from cnnlab.data.images import load_image
from cnnlab.deploy.export import export_run
from cnnlab.evaluate.samples import load_sample
from cnnlab.evaluate.scores import split_images
from cnnlab.run.folder import Run
from cnnlab.server.limits import Guard, Limits, timeout_message
from cnnlab.training.config import resolve_config
from cnnlab.training.plan import plan
from cnnlab.training.setup import load_data

TINY = "conv(4,3,padding=same) relu maxpool(2) flatten fc(2)"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A fresh user cache for folder decodes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)


def _wide_folder(root, per_class: int = 6):
    """root/<class>/*.png: two classes of 60x30 colour images, a red band on the left."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = 40 + 160 * label
            pixels = rng.integers(base - 30, base + 30, (30, 60, 3)).astype(np.uint8)
            pixels[:, :15] = (255, 0, 0)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _train(root, out, **extra):
    options = dict(data=str(root), model=TINY, keep_aspect="pad", epochs=2, batch_size=4)
    return cnnlab.train(**{**options, **extra}, out=str(out), quiet=True)


@pytest.fixture(scope="module")
def folder_runs(tmp_path_factory):
    """(data folder, a straight 2-epoch run, the same run paused after epoch 1 and resumed)."""
    base = tmp_path_factory.mktemp("fix")
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(base / "xdg"))
    try:
        root = _wide_folder(base / "data")
        straight = _train(root, base / "straight")
        _train(root, base / "paused", stop_after=1)
        resumed = cnnlab.train(resume=base / "paused", quiet=True)
    finally:
        mp.undo()
    return root, straight, resumed


@pytest.mark.slow
def test_model_json_and_config_toml_record_keep_aspect_and_the_size_used(folder_runs):
    _, straight, _ = folder_runs
    meta = json.loads((straight.path / "model.json").read_text())
    assert meta["keep_aspect"] == "pad"
    config = tomllib.loads((straight.path / "config.toml").read_text())
    config = config.get("train", config)
    _, height, width = meta["input_shape"]
    assert height == width and config["image_size"] == str(height) != "0"


@pytest.mark.slow
def test_a_resumed_folder_run_equals_the_straight_one_bitwise(folder_runs):
    _, straight, resumed = folder_runs
    assert resumed.metrics["epochs"] == 2
    a, b = (
        load_file(straight.path / "model.safetensors"),
        load_file(resumed.path / "model.safetensors"),
    )
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # evaluation rebuilds the split at the recorded size: the model's input shape
    images, _, _ = split_images(resumed)
    assert tuple(images.shape[1:]) == resumed.input_shape


def test_only_folders_left_to_choose_get_their_size_recorded(tmp_path):
    root = _wide_folder(tmp_path / "data", per_class=2)
    chosen = resolve_config({"model": "default", "data": str(root), "keep_aspect": "pad"})
    data = load_data(chosen, torch.device("cpu"))
    _, height, width = data.image_shape
    assert plan(chosen, data).config.image_size == f"{height}" == f"{width}"
    given = dataclasses.replace(chosen, image_size="24x40")
    assert plan(given, data).config.image_size == "24x40"  # as the user wrote it
    registered = resolve_config({"data": "shapes"})
    assert plan(registered, data).config.image_size == "0"  # built-in sets refuse HxW


@pytest.mark.slow
def test_feature_maps_and_exports_fit_images_as_training_did(folder_runs, tmp_path):
    root, straight, _ = folder_runs
    run = Run.open(straight.path)
    path = next((root / "dark").glob("*.png"))
    _, height, width = run.input_shape
    padded = load_image(path, channels=3, size=(height, width), keep_aspect="pad")
    stretched = load_image(path, channels=3, size=(height, width))
    assert not torch.equal(padded, stretched)
    assert torch.equal(load_sample(run, str(path)).image, padded)
    result = export_run(run, "onnx", tmp_path / "model.onnx", parity_limit=8)
    assert json.loads(result.sidecar.read_text())["keep_aspect"] == "pad"
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert props["keep_aspect"] == "pad"


# --- the server's 504 ------------------------------------------------------------------------


def test_a_timed_out_get_is_not_told_to_send_a_smaller_image():
    post = timeout_message("POST", 10)
    get = timeout_message("GET", 10)
    assert "longer than 10 s" in post and "smaller image" in post
    assert "longer than 10 s" in get and "smaller image" not in get and "--timeout" in get


def _answer_of(method: str) -> tuple[int, dict]:
    """What the Guard answers a request to an app that never answers within its time limit."""

    async def never(scope, receive, send):
        await asyncio.Event().wait()

    async def main():
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": "/api/run/scores", "headers": []}
        await Guard(never, Limits(timeout_s=0.05))(scope, receive, send)
        return sent

    start, body = asyncio.run(main())
    return start["status"], json.loads(body["body"])


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_guard_answers_each_method_its_own_504(method):
    status, answer = _answer_of(method)
    assert status == 504 and answer["error"] == timeout_message(method, 0.05)


def test_serve_help_names_the_run_report(cli):
    result = cli("serve", "--help")
    assert result.code == 0 and "/run" in result.out and "report" in result.out
