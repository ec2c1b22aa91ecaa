"""Class imbalance: the per-class counts training starts with, the warning, and the two remedies.

`balance="weight"` weights the loss by inverse class frequency; `balance="sample"` draws each
epoch's batches so that every class is equally likely. Both are pure functions of the labels
(and, for sampling, of the epoch's seeded generator), so a resumed run stays exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cnnlab.i18n import _

IMBALANCE_RATIO = 3.0  # largest / smallest class above this gets a warning
MAX_SHOWN = 20  # classes named in the counts line


def counts_line(classes: Sequence[str], counts: Sequence[int]) -> str:
    """'classes: cat 120, dog 100, fox 60' (the first MAX_SHOWN, then how many more)."""
    shown = [f"{name} {count}" for name, count in zip(classes, counts, strict=True)]
    more = ""
    if len(shown) > MAX_SHOWN:
        more = _(", ... and {count} more").format(count=len(shown) - MAX_SHOWN)
    return _("classes: {counts}").format(counts=", ".join(shown[:MAX_SHOWN]) + more)


def imbalance_warning(classes: Sequence[str], counts: Sequence[int], balance: str) -> str | None:
    """A warning (or, with a remedy on, a note) when largest / smallest > IMBALANCE_RATIO; else None."""
    largest = max(range(len(counts)), key=lambda i: counts[i])
    smallest = min(range(len(counts)), key=lambda i: counts[i])
    high, low = counts[largest], counts[smallest]
    if low * IMBALANCE_RATIO >= high:
        return None
    names = {"large": classes[largest], "small": classes[smallest], "high": high, "low": low}
    what = (
        _(
            "classes are imbalanced: {large} has {ratio}x as many training images as {small} "
            "({high} vs {low})"
        ).format(ratio=f"{high / low:.1f}", **names)
        if low
        else _(
            "classes are imbalanced: {small} has no training images left (after the validation "
            "split), {large} has {high}"
        ).format(**names)
    )
    if balance != "none":
        return _("note: {what}; --balance {balance} evens them out").format(
            what=what, balance=balance
        )
    return _(
        "warning: {what}, so a model can score well by favouring the large classes. Try "
        "--balance weight (a class-weighted loss) or --balance sample (batches with every class "
        "equally likely), or add images of the small classes; `cnnlab eval` shows the balanced "
        "accuracy and the majority-class baseline"
    ).format(what=what)


def loss_weights(counts: Sequence[int], balance: str) -> torch.Tensor | None:
    """(K,) cross-entropy weights N / (K * count) for balance='weight' (mean 1 per image); else None."""
    if balance != "weight":
        return None
    n = torch.tensor(counts, dtype=torch.float32)
    # an absent class (none left after the validation split) never appears as a target
    return n.sum() / (len(counts) * n.clamp(min=1))


def epoch_order(
    labels: torch.Tensor, counts: Sequence[int], balance: str, generator: torch.Generator
) -> torch.Tensor:
    """(N,) indices of an epoch's images: a permutation, or for balance='sample' N draws with
    every class equally likely (with replacement; within a class, every image equally likely)."""
    n = len(labels)
    if balance != "sample":
        return torch.randperm(n, generator=generator)
    count = torch.tensor(counts, dtype=torch.int64)
    by_class = labels.cpu().argsort(stable=True)  # image indices grouped by class, in class order
    starts = count.cumsum(0) - count  # where each class's group begins in by_class
    present = torch.nonzero(count > 0).squeeze(1)
    drawn = present[torch.randint(len(present), (n,), generator=generator)]  # (N,) classes
    offset = (torch.rand(n, generator=generator) * count[drawn]).long()
    offset = torch.minimum(offset, count[drawn] - 1)  # rand() < 1, but float rounding may reach 1
    return by_class[starts[drawn] + offset]
