"""Learning-rate schedules as pure functions of the step, and the optimizer a config asks for.

A schedule that depends only on the step count needs no state of its own, so
resuming at any step gives exactly the learning rate of an unbroken run.
"""

from __future__ import annotations

import math
import sys
import threading

import torch
from torch import nn

from cnnlab.training.config import TrainConfig
from cnnlab.training.plan import peak_lr, planned_steps, warmup_steps, weight_decay


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak learning rate for optimizer step `step` (0-based).

    onecycle: linear warm-up from 0.1 to 1, then linear down to 0 at the last step;
    cosine:   warm-up, then half a cosine from 1 to 0;
    step:     warm-up, then x gamma every `step_every` epochs;
    constant: warm-up, then 1.
    The run's last step is total_steps - 1 when total_steps is set (--budget), else the last
    step of the last epoch.
    """
    total = max(1, planned_steps(config, steps_per_epoch))
    warmup = warmup_steps(config, steps_per_epoch)
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


def parameter_groups(model: nn.Module, weight_decay: float, bn_lr_scale: float = 1.0) -> list[dict]:
    """Weight decay on conv and fc weights only; biases and BatchNorm scales are left free.

    bn_lr_scale != 1: BatchNorm's scales and biases get a third group (no decay) whose
    learning rate is bn_lr_scale x the schedule's (`lr_scale`, applied by `set_lr`).
    """
    batchnorm = set()
    if bn_lr_scale != 1.0:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                batchnorm.update(id(p) for p in module.parameters(recurse=False))
    decay, free, scaled = [], [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        if id(parameter) in batchnorm:
            scaled.append(parameter)
        else:
            (decay if parameter.ndim > 1 else free).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": free, "weight_decay": 0.0},
    ]
    if scaled:
        groups.append({"params": scaled, "weight_decay": 0.0, "lr_scale": bn_lr_scale})
    return groups


def prefetch_optimizer_import() -> None:
    """Start importing torch._dynamo on a daemon thread.

    torch.optim's optimizers import torch._dynamo on their first call (1.2 CPU s on this
    machine, ~5% of a 1.25E budget); started before the data is read (zlib and numpy release
    the GIL), the import mostly runs on the second core. make_optimizer needs no join: Python's
    import lock makes its own import wait for this one to finish.
    """
    if "torch._dynamo" not in sys.modules:
        threading.Thread(target=_import_dynamo, name="import-dynamo", daemon=True).start()


def _import_dynamo() -> None:
    try:
        import torch._dynamo  # noqa: F401  (the import is the point)
    except Exception:  # noqa: BLE001  the optimizer's own import raises it where it is seen
        return


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, Adam or AdamW, at the schedule's first learning rate."""
    groups = parameter_groups(model, weight_decay(config), config.bn_lr_scale)
    lr = peak_lr(config)
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=lr, momentum=config.momentum, nesterov=config.momentum > 0
        )
    elif config.optimizer == "adam":
        optimizer = torch.optim.Adam(groups, lr=lr)
    else:
        optimizer = torch.optim.AdamW(groups, lr=lr)
    set_lr(optimizer, lr)  # each group's lr_scale (bn_lr_scale) applied, as at every step
    return optimizer


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate: `lr`, times the group's lr_scale where it has one."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def steps_in_epoch(config: TrainConfig, epoch: int, steps_per_epoch: int) -> int:
    """The optimizer steps epoch `epoch` (0-based) takes: all, or fewer where total_steps ends it."""
    left = planned_steps(config, steps_per_epoch) - epoch * steps_per_epoch
    return max(0, min(steps_per_epoch, left))
