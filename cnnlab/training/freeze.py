"""Layer freezing (`freeze = N`): the first N layers with weights keep the weights training
started from (`weights`: a run folder, a .safetensors file, imagenet).

Layers are counted as `cnnlab summary MODEL` shows them: the top-level rows whose params
column is above 0, from the input on (conv1, batchnorm1, conv2, ...; a res block is one layer,
frozen whole); layers without weights (relu, maxpool, dropout) are not counted and keep their
ordinary behaviour. A frozen layer's parameters get requires_grad=False, so the optimizer never
holds them (schedule.parameter_groups skips them: no step, no weight decay), and a frozen
BatchNorm (also inside a frozen res block) stays in eval mode: it normalises with its running
mean and variance and never updates them, whatever `model.train()` the loop, the range test or
the budget's timing calls (a forward pre-hook puts it back in eval before each forward).

Deterministic in the spec and the count: a resumed run freezes the same layers from the
`freeze` its config.toml records, then loads its checkpoint over them. freeze = 0 touches
nothing. Torch-free at import (plan.py checks the count before any model is built).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.errors import ConfigError
from cnnlab.i18n import _

if TYPE_CHECKING:
    from torch import nn

    from cnnlab.spec.analysis import ModelReport


def weighted_layers(report: ModelReport) -> list[str]:
    """The top-level layers with weights, in order: ['conv1', 'batchnorm1', ..., 'fc1']."""
    return [layer.name for layer in report.layers if layer.params > 0]


def frozen_layers(report: ModelReport, count: int) -> list[str]:
    """The first `count` layers with weights; a ConfigError when that leaves none to train."""
    weighted = weighted_layers(report)
    if count >= len(weighted):
        raise ConfigError(
            _(
                "freeze={count}: this model has {total} layers with weights ({first} to "
                "{last}), so freezing {count} leaves none to train; use freeze={most} or fewer "
                "(`cnnlab summary MODEL` lists the layers: those with params above 0 count)"
            ).format(
                count=count,
                total=len(weighted),
                first=weighted[0] if weighted else "-",
                last=weighted[-1] if weighted else "-",
                most=max(0, len(weighted) - 1),
            )
        )
    return weighted[:count]


def frozen_text(names: list[str]) -> str:
    """'; first 2 layers with weights frozen (conv1, batchnorm1)' for the recipe line ('' for
    none); a long list shows its first and last layers."""
    if not names:
        return ""
    shown = ", ".join(names) if len(names) <= 4 else f"{names[0]} ... {names[-1]}"
    if len(names) == 1:
        return _("; first layer with weights frozen ({names})").format(names=shown)
    return _("; first {count} layers with weights frozen ({names})").format(
        count=len(names), names=shown
    )


def freeze_layers(model: nn.Module, count: int) -> list[str]:
    """Freeze the first `count` layers with weights of a CnnModel (see the module's docstring);
    returns their names. Call it before the optimizer is made."""
    if count == 0:
        return []
    from torch import nn  # here: plan.py imports this module without torch

    names = frozen_layers(model.report, count)
    for name in names:
        layer = model.get_submodule(name)
        layer.requires_grad_(False)
        for module in layer.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
                module.register_forward_pre_hook(_stay_in_eval)
    return names


def _stay_in_eval(module: nn.Module, args: tuple) -> None:
    """A frozen BatchNorm's forward pre-hook: eval mode, whatever train() set (running stats
    unchanged, normalised with them)."""
    module.training = False
