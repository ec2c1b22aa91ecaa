"""The head-first phase (training/headfirst.py, `head_epochs = N`): the last fc trains alone on
cached features before the whole network; it changes nothing else, learns from the features, is
said and recorded, and a resume does not run it again."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.errors import ConfigError
from cnnlab.model.inference import normalize
from cnnlab.run.folder import Run
from cnnlab.training import distributed
from cnnlab.training.budget import BudgetClock
from cnnlab.training.config import resolve_config
from cnnlab.training.headfirst import body_features, fit_head, train_head_first
from cnnlab.training.loop import _job
from cnnlab.training.plan import plan
from cnnlab.training.progress import TrainingReporter
from cnnlab.training.setup import autocast, build_learner, load_data

# flatten: 8x7x7 = 392 features a head can separate 96 images on, whatever the convs learnt
TINY = (
    "conv(4,3,padding=same) batchnorm relu maxpool(2) conv(8,3,padding=same) batchnorm relu "
    "maxpool(2) flatten dropout(0.2) fc(10)"
)
SHAPES = {"data": "shapes", "train_size": 96, "test_size": 32, "batch_size": 32, "quiet": True}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Run:
    """A run to start from (its weights, as --weights RUN takes them)."""
    out = tmp_path_factory.mktemp("source") / "run"
    return cnnlab.train(model=TINY, epochs=3, out=str(out), **SHAPES)


def _job_and_learner(tmp_path, **settings):
    config = resolve_config({"model": TINY, **SHAPES, **settings})
    data = load_data(config, torch.device("cpu"))
    planned = plan(config, data)
    learner, _spec, _notes = build_learner(planned.config, data, torch.device("cpu"))
    report = TrainingReporter(None, quiet=True)
    world = distributed.world_from_env()
    job = _job(
        planned, tmp_path, world, torch.device("cpu"), data, report, BudgetClock.from_now(), True
    )
    return job, learner


def test_only_the_fc_changes_and_it_learns(source_run, tmp_path):
    job, learner = _job_and_learner(tmp_path, weights=str(source_run.path), head_epochs=30)
    model = learner.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    features = body_features(model, job)
    assert features.shape == (96, 392)
    untrained = (model.fc1(features).argmax(1) == job.data.train[1]).float().mean().item()
    line = train_head_first(job, learner)
    after = model.state_dict()
    for name in before:  # every weight and BatchNorm statistic before the fc: bitwise as it was
        if not name.startswith("fc1."):
            assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["fc1.weight"], after["fc1.weight"])
    trained = (model.fc1(features).argmax(1) == job.data.train[1]).float().mean().item()
    assert trained > untrained + 0.3 and trained > 0.6  # 10 classes: chance is 0.1
    assert "fc1 alone for 30 epochs on the features of 96 training images" in line
    assert model.training  # the loop's mode is given back


def test_features_are_the_body_in_eval_mode(source_run, tmp_path):
    job, learner = _job_and_learner(tmp_path, weights=str(source_run.path), head_epochs=1)
    model = learner.model.train()
    features = body_features(model, job)
    model.eval()
    x = normalize(job.data.train[0][:5], job.data.mean, job.data.std)
    with torch.no_grad(), autocast(job.device, job.amp_dtype):  # as the loop computes (bf16 here)
        expected = _upto_fc(model, x).float()
    torch.testing.assert_close(features[:5], expected.flatten(1), rtol=1e-5, atol=1e-5)


def _upto_fc(model, x):
    for name, layer in model.named_children():
        if name == "fc1":
            return x
        x = layer(x)


def test_fit_head_is_deterministic_in_the_seed(source_run, tmp_path):
    weights = []
    for _ in range(2):
        job, learner = _job_and_learner(tmp_path, weights=str(source_run.path), head_epochs=3)
        features = body_features(learner.model, job)
        fit_head(learner.model.fc1, features, job, dropout=0.2)
        weights.append(learner.model.fc1.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_a_run_says_it_records_it_and_a_resume_skips_it(source_run, tmp_path):
    out = tmp_path / "tuned"
    run = cnnlab.train(model=TINY, epochs=2, stop_after=1, out=str(out), weights=str(source_run.path),
                       head_epochs=4, **SHAPES)  # fmt: skip
    log = (out / "train.log").read_text()
    assert log.count("head first: fc1 alone for 4 epochs") == 1
    assert run.config_values()["head_epochs"] == 4
    cnnlab.train(resume=str(out), stop_after=0)
    assert (out / "train.log").read_text().count("head first:") == 1  # not again on resume


def test_no_head_epochs_and_negative_ones(tmp_path):
    job, learner = _job_and_learner(tmp_path)
    before = learner.model.fc1.weight.detach().clone()
    assert train_head_first(job, learner) == ""  # head_epochs = 0: nothing happens
    assert torch.equal(before, learner.model.fc1.weight)
    with pytest.raises(ConfigError, match="head_epochs"):
        resolve_config({"head_epochs": -1})


def test_lite0s_recipe_freezes_and_fits_the_head_first_only_from_starting_weights():
    pretrained = resolve_config({"model": "lite0"})
    assert (pretrained.weights, pretrained.freeze, pretrained.head_epochs) == ("imagenet", 13, 10)
    scratch = resolve_config({"model": "lite0", "weights": "none"})
    assert (scratch.freeze, scratch.head_epochs) == (0, 0)  # nothing to keep, no features
    asked = resolve_config({"model": "lite0", "weights": "none", "head_epochs": 3})
    assert asked.head_epochs == 3  # what the user gives still wins
