"""Inference speed: eager PyTorch vs folded BatchNorm vs torch.compile vs ONNX Runtime.

Run: .venv/bin/python -m bench.infer_bench [--quick] [--run RUN_FOLDER]
Throughput (images/s) at batch 1, 64, 256 and 1024 and single-image latency for:
- peer eager: seed 000's model in plain PyTorch (NCHW fp32, eval, inference_mode), as a tutorial
  user runs it, and the same under cnnlab's thread rule (one thread below batch 16);
- cnnlab eager: the `default` model as predict, serve and `cnnlab.load` run it (`EagerEngine`:
  BatchNorm folded, the memory layout and thread count by batch size, `inference.memory_format_for`
  and `threads_for`), and the unfolded model in NCHW and in channels_last throughout on all
  threads, to see where the layouts cross (CHANNELS_LAST_FROM_BATCH);
- cnnlab folded: BatchNorm folded into the conv before it (model/fold.py), channels_last, all threads;
- cnnlab torch.compile: inductor on the eager model (compile seconds reported apart);
- cnnlab ONNX Runtime: torch.onnx.export(dynamo=False) of the folded model, ORT_ENABLE_ALL, 2 threads.
Weights: RUN_FOLDER's (bench/run.py passes the default run it trained), else random weights with
randomised BatchNorm statistics. Predictions of every path are compared with cnnlab eager on the
10000 Fashion-MNIST test images. Timings exclude turning uint8 pixels into floats (the same for
every path). Writes bench/results/infer_bench.json.
"""

from __future__ import annotations

import argparse
import copy
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from bench.common import reference_model, write_results
from cnnlab.data import load_dataset
from cnnlab.deploy.engines import EagerEngine
from cnnlab.model.cnn import build_model
from cnnlab.model.fold import fold_batchnorm
from cnnlab.model.inference import normalize, threads_for
from cnnlab.run.folder import Run

BATCHES = (1, 64, 256, 1024)
PEER = "peer eager (seed000, NCHW fp32)"
PEER_ONE_THREAD = "peer eager, one thread below batch 16 (cnnlab's thread rule)"
CL = {"memory_format": torch.channels_last}
EAGER = "cnnlab eager (as predict runs it: BN folded, layout and threads by batch size)"
ONNX = "cnnlab ONNX Runtime, BN folded"


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Untrained BatchNorm is the identity; give it statistics so folding has work to do."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def _on_threads_for_batch(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """`model` under cnnlab's thread rule (`inference.threads_for`), to tell it from the layout."""

    def run(x: torch.Tensor) -> torch.Tensor:
        with threads_for(len(x)):
            return model(x)

    return run


def _time_batches(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int, seconds: float
) -> tuple[float, float]:
    """(images/s, median ms per call) of fn on consecutive slices of x, for about `seconds`."""
    xs = [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)] or [x[:batch]]
    for b in xs[:3]:
        fn(b)
    times = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds or len(times) < 5:
        b = xs[i % len(xs)]
        t = time.perf_counter()
        fn(b)
        times.append(time.perf_counter() - t)
        i += 1
    per_call = statistics.median(times)
    return batch / per_call, per_call * 1000


def _onnx_session(model: nn.Module, example: torch.Tensor, threads: int):
    import onnxruntime as ort

    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (example,),
        buffer,
        dynamo=False,
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


def bench(quick: bool = False, run_folder: str | Path | None = None) -> dict:
    """Throughput and latency per path and batch size; prediction agreement with cnnlab eager."""
    seconds = 0.6 if quick else 2.0
    data = load_dataset("fashion-mnist")
    threads = torch.get_num_threads()
    if run_folder and Path(run_folder, "model.json").is_file():
        run = Run.open(run_folder)
        model, mean, std, source = run.load_model(), run.mean, run.std, str(run_folder)
    else:
        torch.manual_seed(0)
        model = build_model("default", data.image_shape)
        _randomise_batchnorm(model)
        mean, std, source = data.mean, data.std, "random weights, randomised BatchNorm"
    model.eval()
    x_nchw = normalize(data.test_images, mean, std)  # (10000, 1, 28, 28) fp32
    x_cl = x_nchw.contiguous(memory_format=torch.channels_last)
    peer = reference_model(1, 10, 28).eval()
    x_peer = data.test_images.float() / 255.0  # the peer's ToTensor input

    engine = EagerEngine(model)  # `model` stays as it is; the engine keeps folded copies
    folded = fold_batchnorm(model).to(memory_format=torch.channels_last)
    paths: dict[str, tuple[Callable, torch.Tensor]] = {
        PEER: (peer, x_peer),
        PEER_ONE_THREAD: (_on_threads_for_batch(peer), x_peer),
        EAGER: (engine.logits, x_nchw),
        "cnnlab eager, NCHW throughout": (model, x_nchw),
        "cnnlab eager, channels_last throughout": (copy.deepcopy(model).to(**CL), x_cl),
        "cnnlab eager, BN folded (channels_last)": (folded, x_cl),
    }
    extra: dict[str, float] = {}
    try:
        started = time.perf_counter()
        compiled = torch.compile(folded, dynamic=False)
        with torch.inference_mode():
            compiled(x_cl[:256])
        extra["torch.compile first-call seconds (batch 256)"] = round(
            time.perf_counter() - started, 1
        )
        paths["cnnlab torch.compile (inductor), BN folded"] = (compiled, x_cl)
    except Exception as error:  # inductor needs a C++ compiler; report, don't fail the bench
        extra["torch.compile error"] = str(error).splitlines()[0][:200]
    try:
        paths[ONNX] = (
            _onnx_session(fold_batchnorm(model), x_nchw[:2], threads),
            x_nchw,
        )
    except Exception as error:
        extra["onnxruntime error"] = str(error).splitlines()[0][:200]

    reference = _predict(engine.logits, x_nchw)
    results: dict = {"weights": source, "threads": threads, **extra, "paths": {}}
    for name, (fn, x) in paths.items():
        entry: dict = {}
        with torch.inference_mode():
            for batch in BATCHES:
                if "compile" in name and batch not in (1, 256):
                    continue  # each new shape recompiles (dynamic=False); keep the bench short
                ips, ms = _time_batches(fn, x, batch, seconds if batch > 1 else seconds / 2)
                entry[f"batch_{batch}_images_per_s"] = round(ips)
                if batch == 1:
                    entry["latency_ms_batch_1"] = round(ms, 3)
        if not name.startswith("peer"):
            predicted = _predict(fn, x)
            entry["predictions_differing"] = int((predicted.argmax(1) != reference.argmax(1)).sum())
            entry["max_abs_logit_difference"] = float((predicted - reference).abs().max())
        results["paths"][name] = entry
        print(name, entry, flush=True)
    return results


@torch.inference_mode()
def _predict(fn: Callable, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch]).float() for i in range(0, len(x), batch)])


def markdown(results: dict) -> str:
    """One table: images/s per batch size and latency per path."""
    lines = [
        f"## Inference ({results['threads']} threads; weights: {results['weights']})",
        "",
        "| path | b=1 img/s | b=64 | b=256 | b=1024 | latency ms (b=1) | predictions differing |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in results["paths"].items():
        cells = [
            f"{e[f'batch_{b}_images_per_s']:,}" if f"batch_{b}_images_per_s" in e else "-"
            for b in BATCHES
        ]
        lines.append(
            f"| {name} | {' | '.join(cells)} | {e.get('latency_ms_batch_1', '-')} "
            f"| {e.get('predictions_differing', '-')} |"
        )
    for key, value in results.items():
        if key.startswith("torch.compile") or key.endswith("error"):
            lines.append(f"\n{key}: {value}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timings")
    parser.add_argument("--run", help="a run folder of the default model (else random weights)")
    args = parser.parse_args()
    results = bench(args.quick, args.run)
    print(markdown(results))
    print(f"written {write_results('infer_bench', results)}")


if __name__ == "__main__":
    main()
