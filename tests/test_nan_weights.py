"""A run whose weights hold NaN: every JSON answer stays strict JSON (NaN as null), the user is
warned, and the projector draws what it can instead of failing in the SVD.

The run is real: a tiny trained run whose model.safetensors gets a NaN written by safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import cnnlab
from cnnlab.deploy.predict import Predictor
from cnnlab.run.folder import Run
from cnnlab.server.app import create_app

WARNING = "warning: the weights in"


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nan") / "run"
    cnnlab.train(
        model="conv(4,3) relu maxpool(2) flatten fc(10)",
        train_size=256,
        test_size=64,
        batch_size=64,
        epochs=1,
        quiet=True,
        out=str(out),
    )
    path = out / "model.safetensors"
    with safe_open(str(path), "pt") as weights:
        metadata = weights.metadata()
        tensors = {name: weights.get_tensor(name) for name in weights.keys()}  # noqa: SIM118
    tensors["conv1.weight"][0, 0, 0, 0] = float("nan")
    save_file(tensors, str(path), metadata=metadata)
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "img.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8), mode="L").save(path)
    return path


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as every JSON parser but Python's does."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "{run}", "{image}"],
        ["cam", "{run}", "{image}", "--out", "{tmp}/cam.png"],
        ["eval", "{run}", "--out", "{tmp}/eval"],
        ["embed", "{run}", "--out", "{tmp}/embed.png"],
    ],
    ids=lambda c: c[0],
)
def test_json_output_is_strict_and_the_nan_weights_are_named(
    nan_run, image, tmp_path, cli, command
):
    argv = [a.format(run=nan_run, image=image, tmp=tmp_path) for a in command]
    result = cli(*argv, "--json")
    assert result.code == 0, result.err
    assert "null" in result.out
    strict_json(result.out)
    assert WARNING in result.err and "hold NaN" in result.err and "conv1.weight" in result.err
    if command[0] == "eval":
        strict_json((tmp_path / "eval" / "evaluation.json").read_text())


def test_embed_of_nan_features_draws_and_says_why_the_points_are_missing(nan_run, tmp_path, cli):
    result = cli("embed", str(nan_run), "--out", str(tmp_path / "embed.png"))
    assert result.code == 0, result.err
    assert "Traceback" not in result.err and "NaN or infinite" in result.out
    assert (tmp_path / "embed.png").is_file()


def test_the_projector_answers_with_null_points_not_a_500(nan_run):
    with TestClient(create_app(Predictor(Run.open(nan_run), "eager"))) as client:
        answer = client.get("/api/run/embedding")
    assert answer.status_code == 200, answer.text
    data = strict_json(answer.text)
    assert any(point["x"] is None for point in data["points"])
    assert any("NaN or infinite" in note for note in data["notes"])
