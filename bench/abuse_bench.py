"""Abuse on loopback: what a real `cnnlab serve` answers to slow clients, bursts and huge images.

Run: .venv/bin/python -m bench.abuse_bench [--run RUN] [--slow 64] [--burst 200]
Run by hand, not a test. Every case is bounded in count and time, on 127.0.0.1 only:

  slow clients  N clients announce a 1000-byte body and send 1 byte a second, and N more
                dribble their headers; meanwhile normal requests are sent one after another.
                Records the normal requests' statuses (they must not get 503), the dribblers'
                answers (408 after --body-timeout) and how many header dribblers were cut off.
  burst         many concurrent predictions from a thread pool: statuses and latency.
  abandoned     waves of 5000x5000 RGBA PNGs against --timeout 0.3: statuses, and the
                server's RSS and thread count (/proc/PID/status) before, at peak and after.

Writes bench/results/abuse_bench.json through bench/common.py.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.common import write_results
from bench.serve_support import Served, bench_run, percentile

BODY_TIMEOUT_S = 5
HEADER_TIMEOUT_S = 3


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    """A uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def small_png() -> bytes:
    """A 28x28 stroke, the size the page sends after resizing."""
    picture = np.zeros((28, 28), np.uint8)
    picture[6:22, 12:16] = 255
    return png(picture)


def post(url: str, body: bytes, timeout: float = 60) -> tuple[int, float]:
    """(status, seconds) of one raw-PNG prediction; status 0 for a transport error."""
    started = time.perf_counter()
    try:
        status = httpx.post(
            f"{url}/api/predict", content=body, headers={"content-type": "image/png"},
            timeout=timeout,
        ).status_code  # fmt: skip
    except httpx.HTTPError:
        status = 0
    return status, time.perf_counter() - started


def body_dribbler(port: int, seconds: float, answers: list) -> None:
    """Announce 1000 body bytes, send one a second; record the server's status line (or none)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=seconds + 30)
    head = b"POST /api/predict HTTP/1.1\r\nHost: b\r\nContent-Type: image/png\r\n"
    sock.sendall(head + b"Content-Length: 1000\r\n\r\n")
    sock.settimeout(1.0)
    deadline = time.monotonic() + seconds
    reply = b""
    try:
        while time.monotonic() < deadline and not reply:
            sock.sendall(b"x")
            try:
                reply = sock.recv(256)
            except TimeoutError:
                continue
    except OSError:
        pass
    finally:
        sock.close()
    answers.append(int(reply.split()[1]) if reply.startswith(b"HTTP/1.1") else None)


def header_dribbler(port: int, seconds: float, cut_off: list) -> None:
    """Send a header byte a second; record whether the server closed the connection in time."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=seconds + 30)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: h\r\n")
    sock.settimeout(1.0)
    deadline, closed = time.monotonic() + seconds, False
    try:
        while time.monotonic() < deadline and not closed:
            sock.sendall(b"X")
            try:
                closed = sock.recv(256) == b""
            except TimeoutError:
                continue
    except OSError:
        closed = True
    finally:
        sock.close()
    cut_off.append(closed)


def slow_clients(server: Served, count: int, normal: int) -> dict:
    """`count` body dribblers and `count` header dribblers while `normal` requests are sent."""
    seconds = BODY_TIMEOUT_S + 10  # long enough to see the 408 / the cut-off
    answers: list = []
    cut_off: list = []
    threads = [
        threading.Thread(target=body_dribbler, args=(server.port, seconds, answers))
        for _ in range(count)
    ] + [
        threading.Thread(target=header_dribbler, args=(server.port, seconds, cut_off))
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # every dribbler connected and sending
    during = [post(server.url, small_png()) for _ in range(normal)]
    for thread in threads:
        thread.join()
    return {
        "dribblers": count,
        "body_timeout_s": BODY_TIMEOUT_S,
        "header_timeout_s": HEADER_TIMEOUT_S,
        "normal_statuses": dict(Counter(str(s) for s, _ in during)),
        "normal_p50_ms": round(percentile([t for _, t in during], 50) * 1000, 1),
        "body_dribbler_answers": dict(Counter(str(a) for a in answers)),
        "header_dribblers_cut_off": sum(cut_off),
    }


def burst(server: Served, count: int, clients: int = 64) -> dict:
    """`count` predictions from `clients` threads at once."""
    body = small_png()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: post(server.url, body), range(count)))
    seconds = time.perf_counter() - started
    latencies = [t for _, t in results]
    return {
        "requests": count,
        "clients": clients,
        "statuses": dict(Counter(str(s) for s, _ in results)),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "seconds": round(seconds, 2),
    }


def abandoned(server: Served, waves: int = 3, size: int = 8) -> dict:
    """Waves of huge PNGs against a short time limit; the server's RSS and threads."""
    huge = png(np.full((5000, 5000, 4), 200, np.uint8), "RGBA")
    before = server.proc_status()
    peak = dict(before)
    statuses: Counter = Counter()
    with ThreadPoolExecutor(size) as pool:
        for _ in range(waves):
            wave = [pool.submit(post, server.url, huge, 120) for _ in range(size)]
            while not all(f.done() for f in wave):
                now = server.proc_status()
                peak = {k: max(peak[k], now[k]) for k in peak}
                time.sleep(0.05)
            statuses.update(str(f.result()[0]) for f in wave)
    time.sleep(2.0)  # let the last abandoned decodes finish
    return {
        "png_bytes": len(huge),
        "requests": waves * size,
        "statuses": dict(statuses),
        "before": before,
        "peak": peak,
        "after": server.proc_status(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run folder (default: train a small one)")
    parser.add_argument("--slow", type=int, default=64, help="dribbling clients of each kind")
    parser.add_argument("--normal", type=int, default=20, help="normal requests among them")
    parser.add_argument("--burst", type=int, default=200, help="requests in the burst")
    args = parser.parse_args()
    run = bench_run(args.run)
    logs = Path(tempfile.mkdtemp(prefix="cnnlab-abuse-"))
    limits = ["--body-timeout", str(BODY_TIMEOUT_S), "--header-timeout", str(HEADER_TIMEOUT_S)]
    server = Served(run.path, logs / "serve.log", *limits)
    try:
        results = {
            "slow_clients": slow_clients(server, args.slow, args.normal),
            "burst": burst(server, args.burst),
        }
    finally:
        server.stop()
    short = Served(run.path, logs / "serve-short.log", "--timeout", "0.3")
    try:
        results["abandoned"] = abandoned(short)
    finally:
        short.stop()
    tracebacks = sum(p.read_text().count("Traceback") for p in logs.glob("*.log"))
    results["tracebacks_in_server_logs"] = tracebacks
    path = write_results("abuse_bench", results)
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
