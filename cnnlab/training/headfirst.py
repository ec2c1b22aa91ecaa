"""The head-first phase (`head_epochs = N`): before the whole network trains, its last fc trains
alone for N epochs on the cached features of the training images.

Why: a network started from pretrained weights (lite0 from ImageNet) gets a fresh last fc for the
data's classes. Trained together from the first step, that random fc sends random gradients into
the pretrained layers and moves them off what they learnt before the fc means anything (Kumar et
al. 2022, "Fine-tuning can distort pretrained features"; fastai's `fine_tune` trains the head
alone for an epoch first). Here the fc learns first, on features computed once: everything
before the fc runs one forward pass over the training images in eval mode (BatchNorm with its
running statistics, no dropout, no augmentation), then the fc alone takes N epochs of AdamW
steps on those (N, F) features, a few milliseconds each. The whole network then trains as
planned, from a head that already separates the classes.

The phase changes only the fc: the layers before it (weights and BatchNorm statistics) are
bitwise as they started. Deterministic in the seed; a resumed run skips it (its checkpoint holds
the head), a run restarted by the divergence guard runs it again.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.i18n import _
from cnnlab.model.inference import eval_batch_size, normalize
from cnnlab.training.balance import loss_weights
from cnnlab.training.setup import autocast

if TYPE_CHECKING:
    from cnnlab.training.loop import Job
    from cnnlab.training.setup import Learner

HEAD_SEED_OFFSET = 7_777  # the head phase's batch order: its own stream, from the run's seed


def train_head_first(job: Job, learner: Learner) -> str:
    """Train the model's last fc alone for `head_epochs` epochs on cached features; returns the
    line that says so ("" when the model does not end in an fc: nothing to do)."""
    model, epochs = learner.model, job.config.head_epochs
    if epochs <= 0 or not isinstance(model[-1], nn.Linear):
        return ""
    started = time.perf_counter()
    head = model[-1]
    features = body_features(model, job)  # (N, F)
    dropout = model[-2].p if len(model) > 1 and isinstance(model[-2], nn.Dropout) else 0.0
    accuracy = fit_head(head, features, job, dropout)
    return _(
        "head first: {layer} alone for {epochs} epochs on the features of {images} training "
        "images ({seconds:.1f}s, training accuracy {accuracy:.2%}), then the whole network"
    ).format(
        layer=head_name(model),
        epochs=epochs,
        images=len(features),
        seconds=time.perf_counter() - started,
        accuracy=accuracy,
    )


def head_name(model: nn.Sequential) -> str:
    """The last layer's name as `cnnlab summary` shows it ('fc1')."""
    return next(reversed(model._modules))


@torch.no_grad()
def body_features(model: nn.Sequential, job: Job) -> torch.Tensor:
    """(N, F): what every layer before the last fc gives for each training image, in eval mode.

    no_grad, not inference_mode: the features are the fc's inputs in training, and autograd
    keeps a layer's input for its weight's gradient."""
    body = nn.Sequential(*list(model.children())[:-1])  # the same modules, not copies
    data, config = job.data, job.config
    was_training = model.training
    body.eval()
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    parts, batch = [], eval_batch_size(model)  # lite0 at 128 px: 8 (model/inference.py)
    try:
        for start in range(0, len(data.train[0]), batch):
            images = data.train[0][start : start + batch]
            x = normalize(images, data.mean, data.std).contiguous(memory_format=layout)
            with autocast(job.device, job.amp_dtype):
                parts.append(body(x).float().flatten(1))
    finally:
        model.train(was_training)
    return torch.cat(parts)


def fit_head(head: nn.Linear, features: torch.Tensor, job: Job, dropout: float) -> float:
    """AdamW steps on `head` alone, batch and lr as the run's, the lr falling along half a
    cosine to 0; the loss as the loop's (class weights, label smoothing). Returns the training
    accuracy of its last epoch."""
    config, labels = job.config, job.data.train[1]
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    weight = loss_weights(job.data.class_counts, config.balance)
    weight = None if weight is None else weight.to(features.device)
    order_generator = torch.Generator().manual_seed(config.seed + HEAD_SEED_OFFSET)
    batch, images = config.batch_size, len(features)
    steps = math.ceil(images / batch) * config.head_epochs
    step, correct = 0, 0
    for _epoch in range(config.head_epochs):
        order = torch.randperm(images, generator=order_generator).to(features.device)
        correct = 0
        for first in range(0, images, batch):
            chosen = order[first : first + batch]
            for group in optimizer.param_groups:  # half a cosine, from the lr to 0
                group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            x = F.dropout(features[chosen], dropout, training=True) if dropout else features[chosen]
            logits = head(x)
            loss = F.cross_entropy(
                logits, labels[chosen], weight=weight, label_smoothing=config.label_smoothing
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == labels[chosen]).sum())
            step += 1
    return correct / images
