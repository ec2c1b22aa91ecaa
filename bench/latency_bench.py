"""Prediction latency per image: eager torch vs onnxruntime vs the torch.export program.

Run: .venv/bin/python -m bench.latency_bench [--run RUN] [--quick]
Without --run, the default model is trained briefly (weights do not change the timings).
Measures, for each engine, with 1 thread (as `cnnlab serve` runs) and with all cores:
  model       one normalised image through the engine (what `auto` compares)
  end to end  a 28x28 PNG file -> load_image -> normalize -> engine -> softmax (cnnlab predict)
  batch 256   per image, for folders
Prints a table and writes bench/results/latency_bench.json.
"""

from __future__ import annotations

import argparse
import io
import os
import time

import torch
from PIL import Image

from bench.common import write_results
from bench.serve_support import bench_run, percentile, with_exports
from cnnlab.deploy.engines import engine_from_bytes, read_export
from cnnlab.deploy.predict import Predictor, probe_images
from cnnlab.evaluate.scores import split_images
from cnnlab.model.inference import normalize


def _times_us(fn, repeats: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
    return times


def measure(run, threads: int, repeats: int) -> list[dict]:
    """One row per engine at `threads` threads."""
    torch.set_num_threads(threads)
    predictor = Predictor(run, "eager", threads=threads)
    engines = {"eager": predictor.eager}
    for fmt in ("onnx", "pt2"):
        _, data, _ = read_export(run.path / f"model.{fmt}", run)
        engines[fmt] = engine_from_bytes(fmt, data, threads)
    try:
        images, _, _ = split_images(run)
    except Exception:  # noqa: BLE001 (any image does for timing)
        images = probe_images(run.input_shape, 256)
    one = normalize(images[:1], run.mean, run.std)
    batch = normalize(images[torch.arange(256) % len(images)], run.mean, run.std)
    buffer = io.BytesIO()
    Image.fromarray(images[0, 0].numpy()).save(buffer, format="PNG")
    png = buffer.getvalue()
    rows = []
    for name, engine in engines.items():
        model_us = _times_us(lambda e=engine: e.logits(one), repeats)
        predictor.engine = engine

        def end_to_end(p=predictor):
            p.probabilities(p.prepare(png)[None])

        e2e_us = _times_us(end_to_end, repeats)
        batch_us = _times_us(lambda e=engine: e.logits(batch), max(3, repeats // 50), warmup=2)
        rows.append(
            {
                "engine": name,
                "threads": threads,
                "model_p50_us": round(percentile(model_us, 50), 1),
                "model_p99_us": round(percentile(model_us, 99), 1),
                "end_to_end_p50_us": round(percentile(e2e_us, 50), 1),
                "end_to_end_p99_us": round(percentile(e2e_us, 99), 1),
                "batch256_per_image_us": round(percentile(batch_us, 50) / 256, 2),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run folder (default: train the default model briefly)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 100 if args.quick else 1000
    run = with_exports(bench_run(args.run))
    rows = []
    for threads in sorted({1, os.cpu_count() or 1}):
        rows += measure(run, threads, repeats)
    header = f"{'engine':7} {'threads':>7} {'model p50':>10} {'p99':>9} {'e2e p50':>9} {'p99':>9} {'batch256/img':>13}"
    print(f"{run.spec.text()}\nper-image latency in microseconds ({repeats} calls each)")
    print(header)
    for r in rows:
        print(
            f"{r['engine']:7} {r['threads']:>7} {r['model_p50_us']:>10.1f} {r['model_p99_us']:>9.1f} "
            f"{r['end_to_end_p50_us']:>9.1f} {r['end_to_end_p99_us']:>9.1f} {r['batch256_per_image_us']:>13.2f}"
        )
    path = write_results(
        "latency_bench", {"model": run.spec.text(), "repeats": repeats, "rows": rows}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
