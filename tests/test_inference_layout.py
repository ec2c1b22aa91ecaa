"""Inference by batch size: the same logits in either layout, and the layout and thread count the rules pick.

`memory_format_for` says channels_last from CHANNELS_LAST_FROM_BATCH images on (1 on the
machine it was measured on, see model/inference.py); the tests also set the threshold to 8,
so that both layouts run and each batch size is seen taking its side of the rule.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.deploy.engines import EagerEngine
from cnnlab.model import inference
from cnnlab.model.cnn import build_model
from cnnlab.model.inference import logits_in_batches, memory_format_for

NCHW, NHWC = torch.contiguous_format, torch.channels_last


@pytest.fixture
def model() -> nn.Module:
    """The default preset with random weights and BatchNorm statistics that are not the identity."""
    torch.manual_seed(0)
    net = build_model("default", (1, 28, 28))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _layouts_run(engine: EagerEngine) -> list[tuple[torch.memory_format, bool, bool]]:
    """Record, for every conv that runs, (the copy's layout, input in it, weight in it)."""
    seen: list = []
    models = {layout: engine.model_in(layout) for layout in (NCHW, NHWC)}  # copied before hooks
    for layout, net in models.items():
        for conv in (m for m in net.modules() if isinstance(m, nn.Conv2d)):

            def record(module, inputs, layout=layout):
                (x,) = inputs
                seen.append(
                    (
                        layout,
                        x.is_contiguous(memory_format=layout),
                        module.weight.is_contiguous(memory_format=layout),
                    )
                )

            conv.register_forward_pre_hook(record)
    return seen


def test_the_rule_switches_at_its_threshold(monkeypatch):
    for batch in (1, 2, 64, 1024):
        expected = NHWC if batch >= inference.CHANNELS_LAST_FROM_BATCH else NCHW
        assert memory_format_for(batch) == expected
    monkeypatch.setattr(inference, "CHANNELS_LAST_FROM_BATCH", 8)
    assert [memory_format_for(b) for b in (1, 7, 8, 256)] == [NCHW, NCHW, NHWC, NHWC]


def test_eager_engine_runs_each_batch_in_the_rules_layout_with_the_same_logits(model, monkeypatch):
    monkeypatch.setattr(inference, "CHANNELS_LAST_FROM_BATCH", 8)
    x = torch.randn(64, 1, 28, 28)
    with torch.inference_mode():
        reference = model(x)  # NCHW, the model as built
    engine = EagerEngine(model)
    seen = _layouts_run(engine)
    one = engine.logits(x[:1])
    assert seen and all(entry == (NCHW, True, True) for entry in seen)  # 3 convs, NCHW
    seen.clear()
    many = engine.logits(x)
    # every conv runs the channels_last copy, its input and its weights in that layout
    assert seen and all(entry == (NHWC, True, True) for entry in seen)
    torch.testing.assert_close(one, reference[:1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(many, reference, rtol=1e-4, atol=1e-5)
    assert next(model.parameters()).is_contiguous()  # the caller's model is left as it was


def test_eager_engine_follows_the_measured_rule_at_batch_1_and_256(model):
    engine = EagerEngine(model)
    seen = _layouts_run(engine)
    x = torch.randn(256, 1, 28, 28)
    with torch.inference_mode():
        reference = model(x)
    for batch in (1, 256):
        seen.clear()
        torch.testing.assert_close(
            engine.logits(x[:batch]), reference[:batch], rtol=1e-4, atol=1e-5
        )
        assert {entry[0] for entry in seen} == {memory_format_for(batch)}


def test_logits_in_batches_agree_in_either_layout(model, monkeypatch):
    monkeypatch.setattr(inference, "CHANNELS_LAST_FROM_BATCH", 8)
    images = torch.randint(0, 256, (21, 1, 28, 28), dtype=torch.uint8)
    mean, std = (0.3,), (0.35,)
    nchw = logits_in_batches(model, images, mean, std, batch_size=10, channels_last=False)
    by_size = logits_in_batches(model, images, mean, std, batch_size=10)  # 10, 10: NHWC; 1: NCHW
    torch.testing.assert_close(by_size, nchw, rtol=1e-4, atol=1e-5)
    assert by_size.shape == (21, 10)


def _threads_seen(engine: EagerEngine) -> list[int]:
    """The thread count each conv of either layout's copy runs under, in call order."""
    seen: list[int] = []
    models = [engine.model_in(layout) for layout in (NCHW, NHWC)]  # copied before the hooks
    for net in models:
        for conv in (m for m in net.modules() if isinstance(m, nn.Conv2d)):
            conv.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    return seen


def test_small_batches_run_on_one_thread_and_the_count_comes_back(model):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(inference.SPLIT_FROM_BATCH, 1, 28, 28)
        with torch.inference_mode():
            reference = model(x)  # before the hooks: the NCHW copy is `model` itself
        engine = EagerEngine(model)
        seen = _threads_seen(engine)
        small = engine.logits(x[:1])
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
        seen.clear()
        split = engine.logits(x)
        assert seen == [2, 2, 2] and torch.get_num_threads() == 2
        torch.testing.assert_close(small, reference[:1], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(split, reference, rtol=1e-4, atol=1e-5)
    finally:
        torch.set_num_threads(before)


def test_the_thread_rule_keeps_a_count_of_one_and_restores_after_an_error():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with inference.threads_for(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        with pytest.raises(RuntimeError), inference.threads_for(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("a failing forward")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_evaluation_batches_shrink_with_the_widest_layer():
    """A power of two; 256 images of a 28x28 model fit, lite0's 96x64x64 maps at 128 px do not."""
    cases = {("default", (1, 28, 28)): 128, ("default", (3, 64, 64)): 32}
    cases[("lite0", (3, 128, 128))] = 8  # 96 x 64 x 64 x 4 bytes = 1.5 MiB an image
    for (name, shape), expected in cases.items():
        net = build_model(name, shape)
        assert inference.eval_batch_size(net) == expected, name
    assert inference.eval_batch_size(nn.Linear(3, 2)) == inference.EVAL_BATCH  # no shape report


def test_the_batch_size_does_not_change_the_logits(model):
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    chosen = logits_in_batches(model, images, (0.3,), (0.3,))
    for batch in (1, 7, 40):
        other = logits_in_batches(model, images, (0.3,), (0.3,), batch_size=batch)
        torch.testing.assert_close(chosen, other, rtol=1e-4, atol=1e-4)
