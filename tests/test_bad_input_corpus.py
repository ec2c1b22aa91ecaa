"""A regression corpus of extreme values, run through every door a user's input comes in.

The same values (huge, negative, not finite, deeply nested, control characters, markup)
go into the spec parser, every training setting, every field of model.json and the
server's JSON body. Each door must answer with its own clean error (a `CnnlabError`
subclass, or a JSON 4xx) or accept the value; never another exception, never a 500.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

import cnnlab
from cnnlab.deploy.predict import Predictor
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.run.files import MODEL_META
from cnnlab.run.folder import Run
from cnnlab.server.app import create_app
from cnnlab.spec.language import parse_spec
from cnnlab.training.config import TrainConfig, parse_overrides, resolve_config

# Text as a user could type it (CLI argument, spec, key=value).
TEXT_VALUES = [
    "",
    "-5",
    "0",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "9223372036854775808",
    "9" * 5000,
    "999999999*" * 600 + "9",
    "(" * 2000 + "3" + ")" * 2000,
    "[" * 2000 + "]" * 2000,
    "\x1b[31mred",
    "[red]x[/red]",
    "a" * 10_000,
]
# The same extremes as JSON values (model.json fields, request bodies).
JSON_VALUES = [
    None,
    True,
    -5,
    0,
    float("nan"),
    float("inf"),
    10**30,
    2**63,
    "a",
    "",
    "\x1b[31m",
    [],
    [[]],
    ["a"],
    [float("nan")],
    [100_000, 100_000, 100_000],
    {"a": 1},
]
SPEC_TEMPLATES = [
    "conv({v}, 3) relu flatten fc(10)",
    "conv(8, {v}) flatten fc(10)",
    "conv(8, 3, stride={v}) flatten fc(10)",
    "conv(8, 3, padding={v}) flatten fc(10)",
    "maxpool({v}) flatten fc(10)",
    "dropout({v}) flatten fc(10)",
    "flatten fc({v})",
    "input({v}) flatten fc(10)",
    "{v}",
]
TINY = "conv(4,3) relu maxpool(2) flatten fc(10)"  # 10 outputs: the shapes data set's classes


@pytest.mark.parametrize("template", SPEC_TEMPLATES)
def test_spec_parser_answers_every_extreme_with_a_spec_error(template):
    for value in TEXT_VALUES:
        try:
            parse_spec(template.format(v=value))
        except CnnlabError as error:
            assert len(str(error)) < 20_000, "an error message should not echo a huge input whole"


def _settings() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


@pytest.mark.parametrize("key", _settings())
def test_every_training_setting_answers_every_extreme_with_a_clean_error(key):
    for value in TEXT_VALUES:
        with contextlib.suppress(CnnlabError):  # accepted, or refused cleanly
            resolve_config(parse_overrides([f"{key}={value}"]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "run"
    cnnlab.train(model=TINY, train_size=256, test_size=64, batch_size=64, epochs=1, quiet=True,
                 out=str(out))  # fmt: skip
    return out


@pytest.mark.parametrize("field", ["format", "spec", "input_shape", "classes", "mean", "std"])
def test_every_model_json_field_answers_every_extreme_with_a_checkpoint_error(
    trained, tmp_path, field
):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    original = json.loads((run / MODEL_META).read_text())
    for value in JSON_VALUES:
        (run / MODEL_META).write_text(json.dumps({**original, field: value}))
        try:
            Run.open(run).load_model()
        except CheckpointError:
            continue
        raise AssertionError(f"model.json with {field}={value!r} was accepted")


def _answered_cleanly(response, what) -> None:
    """A 200, or a JSON 4xx that says what was wrong; never a 5xx."""
    assert response.status_code < 500, (what, response.text)
    if response.status_code >= 400:
        assert response.json().get("error"), (what, response.text)


def test_the_server_answers_every_extreme_body_with_a_4xx(trained):
    client = TestClient(create_app(Predictor(Run.open(trained), "eager")))
    for value in JSON_VALUES + TEXT_VALUES:
        for body in ({"pixels": value}, {"pixels": [[value]]}, value):
            for path in ("/api/predict", "/api/featuremaps"):
                response = client.post(
                    path, content=json.dumps(body), headers={"content-type": "application/json"}
                )
                _answered_cleanly(response, (path, body))
        for path, query in (("/api/predict", "top_k"), ("/api/featuremaps", "max_channels")):
            response = client.post(
                f"{path}?{query}={quote(str(value))}",
                content=b'{"pixels": [[0]]}',
                headers={"content-type": "application/json"},
            )
            _answered_cleanly(response, (path, query, value))


@pytest.mark.parametrize(
    "argv",
    [["train", "--config", "{fifo}", "--epochs", "1"], ["summary", "{fifo}"]],
    ids=["train --config", "summary MODEL.toml"],
)
def test_a_fifo_given_as_a_config_or_model_file_is_refused_not_waited_on(tmp_path, argv):
    fifo = tmp_path / "settings.toml"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", *(a.format(fifo=fifo) for a in argv)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,  # a hang, not a speed limit
    )
    assert done.returncode == 2, done.stderr
    assert "not a regular file" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "text",
    ["seed = " + "9" * 5000, "seed = " + "[" * 2000 + "]" * 2000, "seed = = 1", "\xff\xfe"],
    ids=["5000 digits", "deep arrays", "syntax", "not utf-8"],
)
def test_a_damaged_config_toml_in_a_run_is_a_clean_error(trained, tmp_path, text, cli):
    """Every TOML reader goes through fileio.read_toml; a run's own config.toml included (read by
    eval where the run has no record.json: a run written before it)."""
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    (run / "record.json").unlink()
    (run / "config.toml").write_bytes(text.encode("latin-1"))
    result = cli("eval", str(run))
    assert result.code == 2, result.err
    assert result.err.startswith(f"error: {run / 'config.toml'}: ")
    assert "Traceback" not in result.err
