"""Is `shapes` learnable but not trivial? Train the reference CNN for a fixed number of epochs.

Run: .venv/bin/python -m bench.shapes_learn [--epochs 10] [--seed 0]
Adam at 2e-3 decaying linearly to zero over the run, batch 128, no augmentation.
Prints test accuracy and training seconds after each epoch and writes
bench/results/shapes_learn.json. The goal: about 96-99% within a minute on 2 cores.
A count of epochs (not a time budget) keeps the accuracy the same on a busy machine.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bench.common import reference_model, write_results
from cnnlab.data import load_dataset


def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mean: float, std: float
) -> float:
    """Test accuracy in [0, 1]."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), 1000):
            xb = (x[i : i + 1000].float() / 255 - mean) / std
            correct += int((model(xb).argmax(1) == y[i : i + 1000]).sum())
    model.train()
    return correct / len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=10, help="passes over the 24000 training images"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    ds = load_dataset("shapes", seed=args.seed)
    gen_s = time.perf_counter() - t0
    mean, std = ds.mean[0], ds.std[0]
    model = reference_model(1, ds.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x, y = ds.train_images, ds.train_labels
    n = len(y)
    g = torch.Generator().manual_seed(args.seed)
    history, trained = [], 0.0
    total_steps, step = args.epochs * -(-n // args.batch), 0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, args.batch):
            for group in opt.param_groups:  # linear decay to zero
                group["lr"] = 2e-3 * (1 - step / total_steps)
            idx = perm[i : i + args.batch]
            xb = (x[idx].float() / 255 - mean) / std
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        trained += time.perf_counter() - start
        acc = evaluate(model, ds.test_images, ds.test_labels, mean, std)
        history.append({"epoch": epoch, "train_seconds": round(trained, 1), "test_accuracy": acc})
        print(f"epoch {epoch}: {trained:5.1f} s trained, test accuracy {acc:.4f}")
    result = {
        "generate_seconds": round(gen_s, 2),
        "history": history,
        "final_accuracy": history[-1]["test_accuracy"],
    }
    print(f"written {write_results(f'shapes_learn_seed{args.seed}', result)}")


if __name__ == "__main__":
    main()
