"""The run folder against a hostile disk: full disks, damaged model.json, FIFOs, two writers, leftovers.

Real files, real processes: a real tmpfs for a full disk, real FIFOs, real `cnnlab train`
processes racing for one folder. Timeouts here only guard against hangs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_system_part
from fastapi.testclient import TestClient
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import cnnlab
from cnnlab.deploy.predict import Predictor
from cnnlab.errors import CheckpointError, CnnlabError, DataError
from cnnlab.evaluate.samples import check_index
from cnnlab.model.cnn import CnnModel
from cnnlab.model.presets import PRESETS, preset_spec
from cnnlab.run.checkpoint import load_tensors, read_metadata, spec_tensor_shapes
from cnnlab.run.files import (
    LOCK_FILE,
    MAX_EPOCH_ROWS,
    METRICS_FILE,
    MODEL_META,
    RESUME_FILE,
    epoch_rows,
)
from cnnlab.run.folder import Run
from cnnlab.server.app import create_app
from cnnlab.spec.analysis import analyze
from cnnlab.spec.language import parse_spec
from cnnlab.training.guard import TrainingDiverged

TINY = "conv(4,3) relu maxpool(2) flatten fc(10)"  # 10 outputs, the shapes data set's 10 classes
TINY_ARGS = ["--model", TINY, "--train-size", "256", "--test-size", "64", "--batch-size", "64"]


def _tiny_run(out: Path, **settings) -> Path:
    cnnlab.train(
        model=TINY,
        train_size=256,
        test_size=64,
        batch_size=64,
        quiet=True,
        out=str(out),
        **settings,
    )
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return _tiny_run(tmp_path_factory.mktemp("tiny") / "run", epochs=1)


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    """A fresh copy of the tiny run, free to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "img.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8), mode="L").save(path)
    return path


def _no_traceback(result) -> None:
    assert "Traceback" not in result.err + result.out


# --- 6: a full disk ------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """mount_small_disk(kib) -> a folder on a real tmpfs of that size, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(kib: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        require_system_part(
            done.returncode == 0, "mounting a tmpfs", f"run as root ({done.stderr.strip()})"
        )
        mounted.append(point)
        return point

    try:
        yield mount
    finally:
        for point in mounted:
            subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_full_disk_before_the_first_checkpoint_says_so(small_disk, cli):
    disk = small_disk(16)  # config.toml fits, resume.safetensors (65 kB) does not
    result = cli("train", *TINY_ARGS, "--epochs", "2", "--out", str(disk / "run"), "--quiet")
    assert result.code == 2, result.err
    _no_traceback(result)
    assert f"the disk holding {disk / 'run'} is full" in result.err
    assert "no checkpoint was written yet" in result.err
    assert not list((disk / "run").glob(".*.tmp"))  # nothing half-written left behind
    assert not (disk / "run" / LOCK_FILE).exists()


def test_a_full_disk_keeps_the_last_checkpoint_and_the_run_resumes(small_disk, cli, tmp_path):
    # Epoch 1 writes resume (65 kB) + model (27 kB) + small files; epoch 2's new resume file
    # needs another 65 kB beside the old one (atomic writes): 140 kB holds the first, not both.
    disk = small_disk(140)
    run = disk / "run"
    result = cli("train", *TINY_ARGS, "--epochs", "3", "--out", str(run), "--quiet")
    assert result.code == 2, result.err
    _no_traceback(result)
    assert f"the disk holding {run} is full" in result.err
    assert f"({run / RESUME_FILE}, epoch 1) is intact" in result.err
    assert f"cnnlab train --resume {run}" in result.err
    _, info = load_tensors(run / RESUME_FILE)
    assert info["progress"]["epoch"] == 1
    moved = Path(shutil.copytree(run, tmp_path / "moved"))  # "free space": move it elsewhere
    resumed = cli("train", "--resume", str(moved), "--quiet")
    assert resumed.code == 0, resumed.err
    assert Run.open(moved).metrics["epochs"] == 3


# --- 7: model.json is checked against its schema -------------------------------------


def _edit(meta: dict, key: str, value) -> dict:
    return {**meta, key: value}


def _shape_spec(meta: dict) -> dict:
    spec = meta["spec"].replace("input(1x28x28)", "input(1x100000x100000)")
    return {**meta, "input_shape": [1, 100000, 100000], "spec": spec}


DAMAGED_META = {
    "3 classes": (lambda m: _edit(m, "classes", m["classes"][:3]), "3 classes but"),
    "11 classes": (lambda m: _edit(m, "classes", [*m["classes"], "extra"]), "11 classes but"),
    "numbers as classes": (lambda m: _edit(m, "classes", list(range(10))), "non-empty strings"),
    "an empty class": (lambda m: _edit(m, "classes", ["", *m["classes"][1:]]), "non-empty"),
    "a class twice": (lambda m: _edit(m, "classes", ["a"] * 10), "same name twice"),
    "text as mean": (lambda m: _edit(m, "mean", ["a"]), "finite numbers"),
    "NaN as std": (lambda m: _edit(m, "std", [math.nan]), "finite numbers"),
    "zero std": (lambda m: _edit(m, "std", [0.0]), "std must be above 0"),
    "two means": (lambda m: _edit(m, "mean", [0.1, 0.2]), "one value per input channel"),
    "a huge input": (_shape_spec, "beyond the limits"),
    "a bool channel count": (lambda m: _edit(m, "input_shape", [True, 28, 28]), "input_shape"),
}


@pytest.mark.parametrize("edit", list(DAMAGED_META), ids=list(DAMAGED_META))
def test_a_damaged_model_json_is_refused_when_the_run_opens(run_dir, image, cli, edit):
    change, message = DAMAGED_META[edit]
    meta = json.loads((run_dir / MODEL_META).read_text())
    (run_dir / MODEL_META).write_text(json.dumps(change(meta)))
    with pytest.raises(CheckpointError, match=message):
        Run.open(run_dir)
    result = cli("predict", str(run_dir), str(image))
    assert result.code == 2
    assert result.err.startswith("error: ") and message in result.err
    assert "the run folder is damaged" in result.err or "does not" in result.err
    _no_traceback(result)


def test_deeply_nested_json_is_refused(run_dir, image, cli):
    (run_dir / MODEL_META).write_text("[" * 100_000 + "]" * 100_000)
    result = cli("predict", str(run_dir), str(image))
    assert result.code == 2
    assert "nested too deeply" in result.err
    _no_traceback(result)


def test_serve_refuses_a_run_whose_classes_do_not_fit(run_dir, cli):
    meta = json.loads((run_dir / MODEL_META).read_text())
    (run_dir / MODEL_META).write_text(json.dumps(_edit(meta, "classes", meta["classes"][:3])))
    result = cli("serve", str(run_dir), "--port", "0")
    assert result.code == 2
    assert "3 classes but the model's last layer has 10 outputs" in result.err
    _no_traceback(result)


@pytest.mark.parametrize("conv", ["conv(20000, 3)", "conv(1000000000, 3)"])
def test_a_spec_that_does_not_fit_the_weights_is_refused_before_the_model_is_built(
    run_dir, image, cli, conv
):
    # conv(100000000,3) took 7.8 GB and 29 s before the weights were refused, 10^9 was an
    # allocator traceback: the header's shapes are compared with the spec's before any module
    meta = json.loads((run_dir / MODEL_META).read_text())
    assert "conv(4, 3)" in meta["spec"]
    (run_dir / MODEL_META).write_text(
        json.dumps(_edit(meta, "spec", meta["spec"].replace("conv(4, 3)", conv)))
    )
    with pytest.raises(CheckpointError, match="the run folder is damaged") as caught:
        Run.open(run_dir).load_model()
    assert "conv1.weight: file 4x1x3x3, model " in str(caught.value)
    result = cli("predict", str(run_dir), str(image))
    assert result.code == 2 and "the run folder is damaged" in result.err, result.err
    _no_traceback(result)


SPECS = [
    "input(1x12x12) conv(4,3,bias=false) batchnorm relu conv(6,3,groups=2) flatten batchnorm fc(5)",
    "input(3x16x16) conv(8,(3,5),padding=same,stride=2) gap fc(7,bias=false) softmax",
]


@pytest.mark.parametrize("text", [*SPECS, *PRESETS])
def test_the_tensor_shapes_a_spec_needs_are_those_torch_builds(text):
    spec = parse_spec(text) if text not in PRESETS else preset_spec(text)
    spec = spec if spec.input_shape else spec.with_input((1, 28, 28))
    built = {name: tuple(t.shape) for name, t in CnnModel(spec).state_dict().items()}
    assert spec_tensor_shapes(analyze(spec)) == built


def test_the_runs_own_model_json_passes(run_dir):
    assert Run.open(run_dir).classes[0] == "circle"


def test_a_metrics_csv_of_more_rows_than_any_run_is_refused_unread(run_dir, cli):
    # 30 M rows (60 MB) took 7.4 GB and ended in a MemoryError: the rows are counted first
    header = (run_dir / METRICS_FILE).read_text().splitlines()[0]
    row = ",".join(["1"] * len(header.split(",")))
    (run_dir / METRICS_FILE).write_text("\n".join([header] + [row] * (MAX_EPOCH_ROWS + 1)) + "\n")
    result = cli("plot", str(run_dir), "--out", str(run_dir / "curves.png"))
    assert result.code == 2, result.err
    assert f"more than {MAX_EPOCH_ROWS:,} rows" in result.err
    assert "the run folder is damaged" in result.err
    _no_traceback(result)
    with TestClient(create_app(Predictor(Run.open(run_dir), "eager"))) as client:
        answer = client.get("/api/run/curves")
    assert answer.status_code == 500 and "rows" in answer.json()["error"], answer.text


def test_a_metrics_csv_as_long_as_the_limit_is_read(run_dir):
    header = (run_dir / METRICS_FILE).read_text().splitlines()[0]
    row = ",".join(["1"] * len(header.split(",")))
    (run_dir / METRICS_FILE).write_text("\n".join([header] + [row] * 3) + "\n")
    assert len(epoch_rows(Run.open(run_dir))) == 3


@pytest.fixture(scope="module")
def paused(tmp_path_factory) -> Path:
    """A tiny run paused after its first of two epochs: resumable."""
    return _tiny_run(tmp_path_factory.mktemp("paused") / "run", epochs=2, stop_after=1)


def _without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}


def _progress(info: dict, **changes) -> dict:
    return {**info, "progress": {**info["progress"], **changes}}


DAMAGED_RESUME = {
    "no progress": lambda i: _without(i, "progress"),
    "progress as a list": lambda i: {**i, "progress": []},
    "the epoch as text": lambda i: _progress(i, epoch="1"),
    "the epoch 10^12": lambda i: _progress(i, epoch=10**12),
    "a negative step": lambda i: _progress(i, step=-1),
    "a row without train_loss": lambda i: _progress(
        i, history=[_without(i["progress"]["history"][0], "train_loss")]
    ),
    "a row as text": lambda i: _progress(i, history=["epoch 1"]),
    "no optimizer": lambda i: _without(i, "optimizer"),
}


@pytest.mark.parametrize("damage", list(DAMAGED_RESUME), ids=list(DAMAGED_RESUME))
def test_a_damaged_resume_state_is_refused_naming_the_file(paused, tmp_path, cli, damage):
    # a missing key was a KeyError, "1" a TypeError, and epoch 10^12 was accepted
    run = Path(shutil.copytree(paused, tmp_path / "run"))
    path = run / RESUME_FILE
    with safe_open(str(path), "pt") as state:
        tensors = {name: state.get_tensor(name) for name in state.keys()}  # noqa: SIM118
        info = json.loads(state.metadata()["json"])
    save_file(tensors, str(path), metadata={"json": json.dumps(DAMAGED_RESUME[damage](info))})
    result = cli("train", "--resume", str(run))
    assert result.code == 2, result.err
    assert f"error: {path}" in result.err and "damaged" in result.err, result.err
    _no_traceback(result)


def test_plot_of_a_metrics_csv_without_a_column_says_which(run_dir, cli):
    text = (run_dir / METRICS_FILE).read_text().replace("train_loss", "loss", 1)
    (run_dir / METRICS_FILE).write_text(text)
    result = cli("plot", str(run_dir), "--out", str(run_dir / "curves.png"))
    assert result.code == 2, result.err
    assert "has no train_loss column" in result.err and "damaged" in result.err
    _no_traceback(result)


@pytest.mark.parametrize(
    "source, message",
    [
        ("{tmp}", "is a folder, not an image file"),
        ("/dev/zero", "is not a regular file"),
        ("{tmp}/missing.png", "does not exist"),
    ],
)
def test_cam_says_what_its_image_argument_is(run_dir, tmp_path, cli, source, message):
    result = cli("cam", str(run_dir), source.format(tmp=tmp_path), "--out", str(tmp_path / "c.png"))
    assert result.code == 2 and message in result.err, result.err
    _no_traceback(result)


def test_an_index_into_an_empty_split_says_the_split_is_empty():
    with pytest.raises(DataError, match="the test split of shapes is empty: give an image file"):
        check_index("test:0", "the test split of shapes", 0, 0)
    with pytest.raises(DataError, match="has 3 images; use an index from 0 to 2"):
        check_index("test:3", "the test split of shapes", 3, 3)


def test_predict_with_a_foreign_export_names_the_formats(run_dir, image, cli):
    result = cli("predict", str(run_dir), str(image), "--engine", "onnx", "--export", "/etc/passwd")
    assert result.code == 2, result.err
    assert "--format onnx|pt2" in result.err and "--format \n" not in result.err + "\n"
    _no_traceback(result)


# --- 12: a FIFO where a file should be -------------------------------------------------


def _fifo_in_place_of(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


@pytest.mark.timeout(120)  # a guard: before the fix, these blocked forever
@pytest.mark.parametrize("name", [MODEL_META, "model.safetensors"])
def test_a_fifo_in_the_run_folder_is_refused_not_waited_on(run_dir, image, cli, name):
    _fifo_in_place_of(run_dir / name)
    result = cli("predict", str(run_dir), str(image))
    assert result.code == 2
    assert "not a regular file" in result.err
    _no_traceback(result)


def _readers(run_dir: Path, tmp_path: Path) -> dict:
    """Every reader of run and data files, with the FIFO each is given."""
    from cnnlab.data.cifar import read_batch
    from cnnlab.data.idx import read_idx
    from cnnlab.data.images import load_image
    from cnnlab.deploy.engines import EXPORT_FORMAT_VERSION, read_export, sidecar_path

    run = Run.open(run_dir)
    export = run_dir / "model.onnx"
    sidecar_path(export).write_text(
        json.dumps({"format": EXPORT_FORMAT_VERSION, "kind": "onnx", "sha256": "0"})
    )
    return {
        "config.toml": (run_dir / "config.toml", run.config_values),
        "metrics.csv": (run_dir / "metrics.csv", run.epoch_metrics),
        "resume.safetensors": (run_dir / RESUME_FILE, lambda: load_tensors(run_dir / RESUME_FILE)),
        "idx": (tmp_path / "x.idx", lambda: read_idx(tmp_path / "x.idx")),
        "cifar": (tmp_path / "data_batch_1.bin", lambda: read_batch(tmp_path / "data_batch_1.bin")),
        "image": (tmp_path / "a.png", lambda: load_image(tmp_path / "a.png", 1, 28)),
        "export": (export, lambda: read_export(export, run)),
    }


READERS = ["config.toml", "metrics.csv", "resume.safetensors", "idx", "cifar", "image", "export"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("reader", READERS)
def test_every_reader_refuses_a_fifo(run_dir, tmp_path, reader):
    path, read = _readers(run_dir, tmp_path)[reader]
    _fifo_in_place_of(path)
    with pytest.raises(CnnlabError, match="not a regular file"):
        read()


# --- 13 and 20: one writer per run folder; leftovers of killed writes ------------------


def _train_process(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "train", *TINY_ARGS, "--quiet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    """Until `path` exists (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + 300
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_first(tmp_path, cli):
    run = tmp_path / "run"
    first = _train_process("--epochs", "100000", "--out", str(run), "--seed", "1")
    try:
        _wait_for(run / "metrics.csv", first)  # an epoch done: it is training
        assert (run / LOCK_FILE).read_text().split()[0] == str(first.pid)
        second = cli("train", *TINY_ARGS, "--epochs", "2", "--out", str(run), "--seed", "2")
        assert second.code == 2
        assert f"being written by another cnnlab process (pid {first.pid}" in second.err
        resumed = cli("train", "--resume", str(run), "--quiet")
        assert resumed.code == 2
        assert f"pid {first.pid}" in resumed.err
        _no_traceback(second)
        first.send_signal(signal.SIGINT)  # Ctrl-C: it saves and lets go of the folder
        first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert not (run / LOCK_FILE).exists()
    config = (run / "config.toml").read_text()
    assert "seed = 1" in config
    epoch = read_metadata(run / RESUME_FILE)["progress"]["epoch"]
    resumed = cli("train", "--resume", str(run), "--epochs", str(epoch + 1), "--quiet")
    assert resumed.code == 0, resumed.err


@pytest.mark.slow
def test_a_killed_writer_leaves_a_lock_and_temporaries_that_the_next_one_clears(tmp_path, cli):
    run = tmp_path / "run"
    first = _train_process("--epochs", "100000", "--out", str(run))
    try:
        _wait_for(run / "metrics.csv", first)
    finally:
        first.kill()  # SIGKILL: no cleanup at all
        first.wait()
    assert (run / LOCK_FILE).exists()
    leftover = run / ".model.safetensors.k1ll3d.tmp"
    leftover.write_bytes(b"\0" * 1_300_000)  # what a write killed mid-way leaves
    epoch = read_metadata(run / RESUME_FILE)["progress"]["epoch"]
    result = cli("train", "--resume", str(run), "--epochs", str(epoch + 1), "--quiet")
    assert result.code == 0, result.err
    assert not leftover.exists()
    assert not (run / LOCK_FILE).exists()
    assert not list(run.glob(".*.tmp"))


def test_a_lock_of_a_dead_process_is_taken_over(tmp_path, cli):
    dead = subprocess.Popen(["true"])
    dead.wait()
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(f"{dead.pid} somehost\n")
    (run / ".config.toml.abc123.tmp").write_text("half")
    result = cli("train", *TINY_ARGS, "--epochs", "1", "--out", str(run), "--quiet")
    assert result.code == 0, result.err
    assert not (run / LOCK_FILE).exists()
    assert not list(run.glob(".*.tmp"))


def test_the_lock_is_released_when_training_fails(tmp_path, cli):
    run = tmp_path / "run"

    def poison(model, step):  # weights gone NaN: training stops with an error after step 3
        if step == 3:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    settings = dict(model=TINY, data="shapes", train_size=256, test_size=64, batch_size=64)
    with pytest.raises(TrainingDiverged, match="(?i)nan"):
        cnnlab.train(**settings, out=str(run), quiet=True, on_step_end=poison)
    assert (run / "config.toml").exists()  # the lock was taken: the folder was claimed
    assert not (run / LOCK_FILE).exists()


def test_resume_with_epochs_equal_to_the_default_still_asks_for_them(tmp_path, cli):
    """`--resume RUN --epochs 8`, 8 being the default's epochs, stops at 8: a run of 12 paused
    after 1 epoch used to ignore it (equal to the default was taken as not asked) and run to 12."""
    run = tmp_path / "run"
    paused = cli("train", *TINY_ARGS, "--epochs", "12", "stop_after=1", "--out", str(run))
    assert paused.code == 0, paused.err
    resumed = cli("train", "--resume", str(run), "--epochs", "8", "--quiet")
    assert resumed.code == 0, resumed.err
    assert read_metadata(run / RESUME_FILE)["progress"]["epoch"] == 8
