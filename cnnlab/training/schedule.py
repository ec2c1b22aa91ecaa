"""Learning-rate schedules as pure functions of the step, and the optimizer a config asks for.

A schedule that depends only on the step count needs no state of its own, so
resuming at any step gives exactly the learning rate of an unbroken run.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnlab.training.config import TrainConfig


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak learning rate for optimizer step `step` (0-based).

    onecycle: linear warm-up from 0.1 to 1, then linear down to 0 at the last step;
    cosine:   warm-up, then half a cosine from 1 to 0;
    step:     warm-up, then x gamma every `step_every` epochs;
    constant: warm-up, then 1.
    """
    total = max(1, config.epochs * steps_per_epoch)
    warmup = config.resolved_warmup_steps(steps_per_epoch)
    if step < warmup:
        start = 0.1 if config.schedule == "onecycle" else 0.0
        return start + (1.0 - start) * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)  # 0 -> 1 after the warm-up
    if config.schedule == "onecycle":
        return max(0.0, 1.0 - progress)
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if config.schedule == "step":
        every = config.step_every or max(1, config.epochs // 3)
        return config.gamma ** (step // (every * steps_per_epoch))
    return 1.0


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv and fc weights only; biases and BatchNorm scales are left free."""
    decay, free = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim > 1 else free).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": free, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, Adam or AdamW, at the schedule's first learning rate."""
    groups = parameter_groups(model, config.resolved_weight_decay())
    lr = config.resolved_lr()
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=lr, momentum=config.momentum, nesterov=config.momentum > 0
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr
