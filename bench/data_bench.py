"""Data layer benchmarks: loading Fashion-MNIST, generating `shapes`, and augmentation vs a training step.

Run: .venv/bin/python -m bench.data_bench [--quick]
Prints a table and writes bench/results/data_bench.json. Goals: Fashion-MNIST from the
system files into tensors under 2 s; batched augmentation under 10% of the reference
model's training step (batch 128, forward + backward + Adam).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from bench.common import median_time, reference_model, write_results
from cnnlab.data import load_dataset
from cnnlab.data.augment import augment_batch, parse_policy
from cnnlab.data.synthetic import DEFAULT_TEST, DEFAULT_TRAIN, generate_shapes
from cnnlab.errors import DataError

BATCH = 128


def bench_fashion(repeats: int) -> dict:
    """Median seconds to load Fashion-MNIST (gz IDX -> checked uint8 tensors + mean/std)."""
    try:
        load_dataset("fashion-mnist", download=False)  # warm the page cache
    except DataError as error:
        return {"skipped": str(error).splitlines()[0]}
    median, runs = median_time(lambda: load_dataset("fashion-mnist", download=False), repeats)
    return {"median_s": round(median, 3), "runs_s": [round(r, 3) for r in runs], "goal_s": 2.0}


def bench_shapes(repeats: int) -> dict:
    """Median seconds to generate the default shapes train + test sets."""
    generate_shapes(1000)  # first-call setup out of the measurement
    median, runs = median_time(
        lambda: (generate_shapes(DEFAULT_TRAIN, 0, 0), generate_shapes(DEFAULT_TEST, 0, 1)), repeats
    )
    return {
        "images": DEFAULT_TRAIN + DEFAULT_TEST,
        "median_s": round(median, 3),
        "runs_s": [round(r, 3) for r in runs],
    }


def step_time(images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    """Median seconds of one training step of the reference model at batch 128."""
    model = reference_model(images.shape[1], 10, images.shape[2])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i in range(steps + 3):
        x = images[i * BATCH : (i + 1) * BATCH].float().div_(255)
        y = labels[i * BATCH : (i + 1) * BATCH]
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 3:  # the first steps allocate and pick kernels
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def augment_time(images: torch.Tensor, policy_text: str, ds, batches: int) -> float:
    """Median seconds to augment one uint8 batch of 128 with the given policy."""
    policy = parse_policy(policy_text, ds)
    gen = torch.Generator().manual_seed(0)
    times = []
    for i in range(batches):
        x = images[(i % 100) * BATCH : (i % 100 + 1) * BATCH]
        start = time.perf_counter()
        augment_batch(x, policy, gen)
        times.append(time.perf_counter() - start)
    return statistics.median(times[3:])


def bench_augment(name: str, steps: int, batches: int) -> dict:
    """Augmentation per batch and per epoch, against the training step, for one data set."""
    ds = load_dataset(name, download=False)
    step = step_time(ds.train_images, ds.train_labels, steps)
    per_epoch = -(-len(ds.train_labels) // BATCH)
    out = {
        "dataset": name,
        "step_ms": round(step * 1000, 2),
        "batches_per_epoch": per_epoch,
        "policies": {},
    }
    for text in ("standard", "translate=2,cutout=8,affine=10"):
        if "flip" in text and not ds.flip_ok:
            continue
        aug = augment_time(ds.train_images, text, ds, batches)
        out["policies"][str(parse_policy(text, ds))] = {
            "augment_ms_per_batch": round(aug * 1000, 3),
            "augment_s_per_epoch": round(aug * per_epoch, 3),
            "train_s_per_epoch": round(step * per_epoch, 2),
            "percent_of_step": round(100 * aug / step, 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats, steps, batches = (3, 10, 30) if args.quick else (7, 30, 200)
    results = {
        "threads": torch.get_num_threads(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }
    if results["load_average_at_start"] > 0.5:
        print(
            f"note: load average {results['load_average_at_start']} at start; other work skews these timings\n"
        )
    results["fashion_mnist_load"] = bench_fashion(repeats)
    results["shapes_generate"] = bench_shapes(repeats)
    results["augment"] = []
    for name in ("shapes", "fashion-mnist"):
        try:
            results["augment"].append(bench_augment(name, steps, batches))
        except DataError as error:
            results["augment"].append({"dataset": name, "skipped": str(error).splitlines()[0]})
    print_table(results)
    print(f"\nwritten {write_results('data_bench', results)}")


def print_table(results: dict) -> None:
    """The numbers as a small plain-text table."""
    fm = results["fashion_mnist_load"]
    sh = results["shapes_generate"]
    print(f"{'what':<52} {'result':>12}  goal")
    print("-" * 74)
    if "skipped" in fm:
        print(f"{'load fashion-mnist (system files)':<52} {'skipped':>12}  {fm['skipped']}")
    else:
        print(f"{'load fashion-mnist (system files), median':<52} {fm['median_s']:>10.3f} s  < 2 s")
    label = f"generate shapes ({sh['images']} images), median"
    print(f"{label:<52} {sh['median_s']:>10.3f} s  a few s")
    for a in results["augment"]:
        if "skipped" in a:
            print(f"{a['dataset'] + ': skipped':<52} {'':>12}  {a['skipped']}")
            continue
        print(f"{a['dataset'] + ': train step (batch 128), median':<52} {a['step_ms']:>9.2f} ms")
        for policy, p in a["policies"].items():
            label = f"  augment {policy}"
            print(
                f"{label:<52} {p['percent_of_step']:>10.2f} %  < 10% ({p['augment_ms_per_batch']:.3f} ms/batch)"
            )


if __name__ == "__main__":
    main()
