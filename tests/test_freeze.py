"""Layer freezing (training/freeze.py, `freeze = N`): the first N layers with weights keep the
weights a run started from, BatchNorm statistics included, while the rest train; freeze = 0 is
a run without it; what cannot work is refused; config.toml records it and a resume keeps it."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.errors import ConfigError
from cnnlab.model.cnn import build_model
from cnnlab.run.folder import Run
from cnnlab.training.config import TrainConfig, check, config_of, resolve_config
from cnnlab.training.freeze import freeze_layers, frozen_layers, weighted_layers
from cnnlab.training.plan import plan
from cnnlab.training.setup import build_learner, load_data

# 5 layers with weights (conv1, batchnorm1, conv2, batchnorm2, fc1); relu, maxpool and gap have none
TINY = (
    "conv(4,3,padding=same) batchnorm relu maxpool(2) conv(8,3,padding=same) batchnorm relu "
    "gap fc(10)"
)
SHAPES = {"data": "shapes", "train_size": 96, "test_size": 32, "batch_size": 32, "quiet": True}
FROZEN = ("conv1.", "batchnorm1.")  # freeze=2


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Run:
    """The run the fine-tuning runs start from."""
    out = tmp_path_factory.mktemp("source") / "run"
    return cnnlab.train(model=TINY, epochs=1, out=str(out), **SHAPES)


def _weights(run: Run) -> dict[str, torch.Tensor]:
    return run.load_model().state_dict()


def test_layers_are_counted_as_the_summary_lists_them():
    report = build_model(f"input(1x28x28) {TINY}").report
    assert weighted_layers(report) == ["conv1", "batchnorm1", "conv2", "batchnorm2", "fc1"]
    assert frozen_layers(report, 3) == ["conv1", "batchnorm1", "conv2"]
    res = build_model("input(1x8x8) conv(4,3,padding=same) res(conv(4,3,padding=same)) gap fc(2)")
    assert weighted_layers(res.report) == ["conv1", "res1", "fc1"]  # a res block is one layer


def test_frozen_layers_keep_weights_and_batchnorm_statistics(source_run, tmp_path):
    seen = []

    def watch(model, step):  # during training: frozen BatchNorm in eval mode, the other training
        seen.append((model.batchnorm1.training, model.batchnorm2.training))

    tuned = cnnlab.train(model=TINY, epochs=2, out=str(tmp_path / "tuned"), weights=str(source_run.path),
                         freeze=2, weight_decay=0.1, on_step_end=watch, **SHAPES)  # fmt: skip
    start, end = _weights(source_run), _weights(tuned)
    for name in start:
        if name.startswith(FROZEN):  # weights, running mean and var, batches tracked: as started
            assert torch.equal(start[name], end[name]), name
    for name in ("conv2.weight", "batchnorm2.weight", "batchnorm2.running_mean", "fc1.weight"):
        assert not torch.equal(start[name], end[name]), name
    assert seen and set(seen) == {(False, True)}


def test_the_optimizer_leaves_frozen_parameters_out(source_run):
    config = resolve_config({"model": TINY, **SHAPES, "weights": str(source_run.path), "freeze": 3})
    data = load_data(config, torch.device("cpu"))
    learner, _, _ = build_learner(plan(config, data).config, data, torch.device("cpu"))
    model = learner.model
    held = {id(p) for group in learner.optimizer.param_groups for p in group["params"]}
    for name, parameter in model.named_parameters():
        frozen = name.startswith((*FROZEN, "conv2."))
        assert (id(parameter) in held) is not frozen, name
        assert parameter.requires_grad is not frozen, name
    model.train()  # as the loop does each epoch: the frozen BatchNorm stays in eval
    model(torch.zeros(2, 1, 28, 28))
    assert not model.batchnorm1.training and model.batchnorm2.training


def test_freeze_0_is_a_run_without_it(tmp_path):
    assert resolve_config({"freeze": 0}) == resolve_config({}) == TrainConfig()
    plain = cnnlab.train(model=TINY, epochs=1, out=str(tmp_path / "plain"), **SHAPES)
    zero = cnnlab.train(model=TINY, epochs=1, out=str(tmp_path / "zero"), freeze=0, **SHAPES)
    a, b = _weights(plain), _weights(zero)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_what_cannot_work_is_refused(source_run, tmp_path):
    with pytest.raises(ConfigError, match=r"freeze must be 0 \(nothing frozen\) or more.*not -1"):
        resolve_config({"freeze": -1})
    with pytest.raises(ConfigError, match="freeze must be 0"):
        check(TrainConfig(freeze=-1))
    out = tmp_path / "all"
    with pytest.raises(ConfigError, match=r"freeze=5: this model has 5 layers .*use freeze=4"):
        cnnlab.train(model=TINY, epochs=1, out=str(out), weights=str(source_run.path), freeze=5,
                     **SHAPES)  # fmt: skip
    assert not out.exists()  # refused before a run folder was claimed


def test_freezing_random_weights_warns(cli, tmp_path):
    result = cli("train", "--model", TINY, "--epochs", "1", "--freeze", "1", "--out",
                 str(tmp_path / "r"), *[f"{k}={v}" for k, v in SHAPES.items() if k != "quiet"])  # fmt: skip
    assert result.code == 0, result.err
    said = result.out + result.err
    assert "warning: freeze=1 without starting weights" in said
    assert "first layer with weights frozen (conv1)" in said


def test_config_records_freeze_and_a_resume_keeps_it(source_run, tmp_path):
    asked = dict(model=TINY, epochs=2, weights=str(source_run.path), freeze=2, **SHAPES)
    straight = cnnlab.train(out=str(tmp_path / "straight"), **asked)
    paused = cnnlab.train(out=str(tmp_path / "paused"), stop_after=1, **asked)
    assert "freeze = 2" in (paused.path / "config.toml").read_text()
    assert config_of(paused).freeze == 2 and paused.metrics["stopped"] == "paused"
    resumed = cnnlab.train(resume=paused.path, quiet=True)
    assert resumed.metrics["epochs"] == 2
    start, a, b = _weights(source_run), _weights(straight), _weights(resumed)
    assert all(torch.equal(a[name], b[name]) for name in a)  # as an unbroken run
    assert all(torch.equal(start[n], b[n]) for n in start if n.startswith(FROZEN))
    with pytest.raises(ConfigError, match="freeze cannot change when resuming"):
        cnnlab.train(resume=paused.path, freeze=1)


def test_a_frozen_res_block_keeps_its_inner_batchnorm_in_eval():
    model = build_model(
        "input(1x8x8) conv(4,3,padding=same) res(conv(4,3,padding=same) batchnorm) gap fc(2)"
    )
    assert freeze_layers(model, 2) == ["conv1", "res1"]
    model.train()
    model(torch.zeros(2, 1, 8, 8))
    inner = model.get_submodule("res1.body.batchnorm1")
    assert not inner.training and not inner.weight.requires_grad and model.fc1.weight.requires_grad
