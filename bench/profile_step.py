"""Where a training step's time goes: torch.profiler over the default recipe's step, grouped.

Run: .venv/bin/python -m bench.profile_step [--model default] [--threads 2] [--steps 40] [--compile]
A step is what cnnlab's loop does: index a batch, augment it, normalise, forward under the
recipe's autocast, cross-entropy, backward, optimizer step. Operator self-times are grouped into
convolution forward/backward, BatchNorm, pooling, activations, optimizer, augmentation and data,
and the rest; "Python, framework and profiler overhead" is the profiled step's wall time minus
the operators' self time (measured on the calling thread, so it is wall time with the OpenMP
team working inside it). The step is also cut into phases with record_function.
--compile runs the model through torch.compile (inductor) and reports the first step, which
compiles the forward and backward graphs, apart from the steady steps.
Writes bench/results/profile_step.json and prints a table.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile, record_function

from bench.common import write_results
from cnnlab.data import load_dataset
from cnnlab.data.augment import augment_batch, parse_policy
from cnnlab.model.cnn import adapt_to_data, build_model
from cnnlab.model.inference import normalize
from cnnlab.model.presets import resolve_model
from cnnlab.training.config import resolve_config
from cnnlab.training.schedule import make_optimizer
from cnnlab.training.setup import autocast, autocast_dtype

PHASES = (
    "phase: batch (index, augment, normalise)",
    "phase: forward + loss",
    "phase: backward",
    "phase: optimizer step",
)
GROUPS = (
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("mkldnn_convolution", "convolution", "conv2d")),
    ("BatchNorm", ("batch_norm",)),
    ("pooling", ("pool",)),
    ("activations (ReLU)", ("relu", "threshold", "clamp")),
    ("fc (matmul)", ("addmm", "::mm", "linear")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("optimizer", ("_foreach", "sgd", "adam", "Optimizer")),
    ("augmentation and batch", ("gather", "index", "where", "randint", "rand", "pad", "flip")),
    ("zeroing and copies", ("fill_", "zero_", "copy_", "_to_copy", "empty", "clone")),
)


def group_of(name: str) -> str:
    """The group an operator's name belongs to."""
    for group, needles in GROUPS:
        if any(n in name for n in needles):
            return group
    return "other operators"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = resolve_config({"model": args.model, "data": "fashion-mnist"})
    data = load_dataset("fashion-mnist")
    spec, _ = adapt_to_data(resolve_model(config.model), data.image_shape, len(data.classes))
    model = build_model(spec).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    net = torch.compile(model) if args.compile else model
    policy = parse_policy(config.augment, data)
    dtype = autocast_dtype(torch.device("cpu"), config.precision)
    generator = torch.Generator().manual_seed(0)
    images, labels = data.train_images, data.train_labels
    order = torch.randperm(len(labels), generator=generator)
    bs = config.batch_size

    def step(i: int) -> None:
        with record_function(PHASES[0]):
            batch = order[(i * bs) % (len(order) - bs) :][:bs]
            x = augment_batch(images[batch], policy, generator)
            x = normalize(x, data.mean, data.std).contiguous(memory_format=torch.channels_last)
        with record_function(PHASES[1]), autocast(torch.device("cpu"), dtype):
            logits = net(x)
            loss = F.cross_entropy(logits.float(), labels[batch], label_smoothing=0.1)
        with record_function(PHASES[2]):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with record_function(PHASES[3]):
            optimizer.step()

    started = time.perf_counter()
    step(0)  # with --compile: the compile of the forward and backward graphs
    first_step_s = time.perf_counter() - started
    for i in range(1, 10):  # oneDNN picks and caches its kernels in the first steps
        step(i)
    load_before = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    for i in range(args.steps):
        step(i)
    wall_per_step = (time.perf_counter() - started) / args.steps
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(args.steps):
            step(i)
    profiled_ms = (time.perf_counter() - started) / args.steps * 1000
    groups: dict[str, float] = {}
    phases: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key in PHASES:  # a phase's total time, operators included
            phases[event.key] = event.cpu_time_total / 1000 / args.steps
            continue
        if event.key.startswith("Optimizer.") or event.key.startswith("ProfilerStep"):
            continue  # wrappers: their operators are counted below them
        # Self time on the calling thread: wall time of the operator, its OpenMP team included.
        ms = event.self_cpu_time_total / 1000 / args.steps
        groups[group_of(event.key)] = groups.get(group_of(event.key), 0.0) + ms
    wall_ms = wall_per_step * 1000
    # Shares are of the profiled step (the profiler itself slows a step down a little).
    groups["Python, framework and profiler overhead (wall - operators)"] = max(
        0.0, profiled_ms - sum(groups.values())
    )
    result = {
        "model": args.model,
        "batch_size": bs,
        "threads": args.threads,
        "precision": str(dtype or torch.float32).removeprefix("torch."),
        "compiled": args.compile,
        "first_step_s": round(first_step_s, 2),
        "load_before": load_before,
        "step_ms": round(wall_ms, 2),
        "profiled_step_ms": round(profiled_ms, 2),
        "images_per_s": round(bs / wall_per_step),
        "groups_ms": {k: round(v, 3) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "phases_ms": {k: round(phases.get(k, 0.0), 3) for k in PHASES},
    }
    result["phases_ms"]["outside the phases (Python loop, profiler)"] = round(
        max(0.0, profiled_ms - sum(phases.values())), 3
    )
    compiled = f", torch.compile (first step {first_step_s:.1f} s)" if args.compile else ""
    print(
        f"{args.model}: batch {bs}, {args.threads} threads, {result['precision']}{compiled}, "
        f"load {load_before}"
    )
    print(
        f"step {wall_ms:.2f} ms = {result['images_per_s']:,} images/s ({profiled_ms:.2f} ms profiled)\n"
    )
    print(f"{'where (profiled step)':<60} {'ms/step':>8} {'share':>6}")
    for name, ms in result["groups_ms"].items():
        print(f"{name:<60} {ms:>8.2f} {ms / profiled_ms:>6.0%}")
    print(f"\n{'phase (profiled step)':<60} {'ms/step':>8} {'share':>6}")
    for name, ms in result["phases_ms"].items():
        print(f"{name:<60} {ms:>8.2f} {ms / profiled_ms:>6.0%}")
    print(f"\nwritten {write_results('profile_step', result)}")


if __name__ == "__main__":
    main()
