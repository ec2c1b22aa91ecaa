"""A fine-tuning step of `lite0` (EfficientNet-Lite0 from ImageNet weights) in each precision
and memory layout, side by side in one process: what its recipe's `precision` rests on.

Run: .venv/bin/python -m bench.lite0_step [--threads 2] [--steps 16] [--batch 16] [--size 128]
The three variants take their steps in turn (each sees the same load); the first two steps of
each are not timed (oneDNN builds its kernels). Prints the median ms per step and the ratio to
fp32 channels_last, and writes bench/results/lite0_step.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bench.common import write_results
from cnnlab.model.cnn import CnnModel, model_for_data
from cnnlab.training.pretrained import imagenet_lite0, load_start

UNTIMED = 2
VARIANTS = (  # name, memory layout, autocast dtype (None: fp32)
    ("fp32 channels_last", torch.channels_last, None),
    ("bf16 channels_last", torch.channels_last, torch.bfloat16),
    ("fp32 contiguous", torch.contiguous_format, None),
)


def _learner(size: int, layout: torch.memory_format) -> tuple[CnnModel, torch.optim.Optimizer]:
    spec, _ = model_for_data("lite0", (3, size, size), 4, 200)
    torch.manual_seed(0)
    model = CnnModel(spec)
    load_start(model, imagenet_lite0(), "imagenet")
    model = model.to(memory_format=layout).train()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def _step(model, optimizer, x: torch.Tensor, y: torch.Tensor, dtype) -> float:
    """One optimizer step's wall seconds."""
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        loss = F.cross_entropy(model(x).float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 4, (args.batch,), generator=torch.Generator().manual_seed(0))
    learners = {name: _learner(args.size, layout) for name, layout, _ in VARIANTS}
    times: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    for step in range(UNTIMED + args.steps):
        for name, layout, dtype in VARIANTS:
            seconds = _step(*learners[name], x.contiguous(memory_format=layout), y, dtype)
            if step >= UNTIMED:
                times[name].append(seconds)
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians[VARIANTS[0][0]]
    for name, median in medians.items():
        print(f"{name:20s} {median * 1000:7.1f} ms/step  {median / base:5.2f}x")
    write_results("lite0_step", {"args": vars(args), "median_s": medians})


if __name__ == "__main__":
    main()
