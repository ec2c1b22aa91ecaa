"""Load figures for `cnnlab serve`: requests/s and p50/p99 latency at 1, 8 and 32 concurrent clients.

Run: .venv/bin/python -m bench.serve_bench [--run RUN] [--engine auto eager ...] [--seconds 10]
Starts a real `cnnlab serve RUN --port 0` process per engine and sends single-image
predictions (a 28x28 PNG test image, multipart, as the page sends) over loopback from
client threads with one keep-alive connection each. Clients and server share this
machine's cores, so the figures are a floor. Prints a table and writes
bench/results/serve_bench.json.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from bench.common import write_results
from bench.serve_support import bench_run, percentile, with_exports
from cnnlab.evaluate.scores import split_images

BOUNDARY = "cnnlab-bench-boundary"


def multipart(png: bytes) -> bytes:
    """A multipart/form-data body with the image in field 'file'."""
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def start_server(run_path: Path, engine: str, log: Path) -> tuple[subprocess.Popen, str, str]:
    """`cnnlab serve` on a free port; (process, host:port, its engine line)."""
    out = open(log, "w")  # noqa: SIM115 (the server writes here while it runs)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cnnlab",
            "serve",
            str(run_path),
            "--port",
            "0",
            "--engine",
            engine,
            "--max-in-flight",
            "256",
        ],  # fmt: skip
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text()
        found = re.search(r"http://(127\.0\.0\.1:\d+)/", text)
        if found and "engine:" in text:
            return process, found.group(1), text.splitlines()[1]
        if process.poll() is not None:
            raise RuntimeError(text)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def client(address: str, body: bytes, stop_at: float, latencies: list, errors: list) -> None:
    """Send predictions on one keep-alive connection until `stop_at`."""
    host, port = address.split(":")
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        try:
            connection.request("POST", "/api/predict", body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            ok = response.status == 200 and b'"prediction"' in data
        except (OSError, http.client.HTTPException):
            ok = False
            connection.close()
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
        elapsed = time.perf_counter() - start
        (latencies if ok else errors).append(elapsed)
    connection.close()


def load_level(address: str, body: bytes, clients: int, seconds: float) -> dict:
    """Requests/s, p50/p99 latency (ms) and errors with `clients` concurrent clients."""
    # warm-up: a second of traffic not counted
    client(address, body, time.perf_counter() + 1.0, [], [])
    latencies: list[float] = []
    errors: list[float] = []
    start = time.perf_counter()
    stop_at = start + seconds
    threads = [
        threading.Thread(target=client, args=(address, body, stop_at, latencies, errors))
        for _ in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run folder (default: train the default model briefly)")
    parser.add_argument("--engine", nargs="+", default=["auto", "eager"], help="engines to serve")
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    args = parser.parse_args()
    run = with_exports(bench_run(args.run))
    images, _, _ = split_images(run)
    buffer = io.BytesIO()
    Image.fromarray(images[0, 0].numpy()).save(buffer, format="PNG")
    body = multipart(buffer.getvalue())
    results = []
    for engine in args.engine:
        log = Path(tempfile.mkdtemp(prefix="cnnlab-serve-bench-")) / "serve.log"
        process, address, engine_line = start_server(run.path, engine, log)
        try:
            for clients in args.clients:
                row = {
                    "engine": engine,
                    "server_engine": engine_line,
                    **load_level(address, body, clients, args.seconds),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)
    command = "python -m bench.serve_bench " + " ".join(sys.argv[1:])
    print(f"\n{command}\n{run.spec.text()}; {len(buffer.getvalue())}-byte PNG per request")
    print(
        f"{'engine':8} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'requests':>8}"
    )
    for r in results:
        print(
            f"{r['engine']:8} {r['clients']:>7} {r['requests_per_s']:>8.1f} {r['p50_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['errors']:>6} {r['requests']:>8}"
        )
    for engine in args.engine:
        line = next(r["server_engine"] for r in results if r["engine"] == engine)
        print(f"{engine}: {line}")
    path = write_results(
        "serve_bench", {"command": command, "model": run.spec.text(), "rows": results}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
