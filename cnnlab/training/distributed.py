"""Data-parallel training over processes with torch.distributed (gloo on CPU, nccl on CUDA).

Two ways in, one code path:
  cnnlab train --nproc 2 ...                        spawns the processes on this machine
  torchrun --nproc-per-node 2 -m cnnlab train ...   torchrun (one or many machines) sets
                                                    RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT
Each rank trains on its share of every batch; only rank 0 writes files.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.i18n import _


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The world torchrun (or cnnlab's own spawner) describes in the environment; one process otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(
        rank=int(os.environ["RANK"]),
        size=size,
        local_rank=int(os.environ.get("LOCAL_RANK", os.environ["RANK"])),
        local_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(size))),
    )


def init(world: World, device: torch.device) -> None:
    """Join the process group: nccl for CUDA, gloo otherwise."""
    if world.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=world.rank, world_size=world.size)


def barrier() -> None:
    """Wait for every rank, if distributed."""
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flags: torch.Tensor) -> torch.Tensor:
    """Element-wise max of a small flag tensor over all ranks (so every rank stops at the same step)."""
    if dist.is_initialized():
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return flags


def average_buffers(model: nn.Module) -> None:
    """Average floating buffers (BatchNorm running statistics) so every rank ends the epoch identical."""
    if not dist.is_initialized():
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer /= dist.get_world_size()


def same_on_all_ranks(model: nn.Module) -> bool:
    """Whether every rank holds bitwise the same weights and buffers (a SHA-256 of each, compared)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    if not dist.is_initialized():
        return True
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest.hexdigest())
    return len(set(digests)) == 1


def free_port() -> int:
    """A free TCP port on loopback for the rendezvous of spawned processes."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(config_toml: str, nproc: int, resume: str | None) -> None:
    """Run `cnnlab train` as `nproc` processes on this machine (as torchrun would) and wait for them.

    Fresh interpreters rather than multiprocessing's spawn: a user's script is
    never re-imported, so `cnnlab.train(nproc=2)` works without a __main__ guard.
    Rank 0 talks to the terminal; the other ranks' output is shown only if they fail.

    Hand-written rather than torch.distributed.run (torchrun), which cannot keep three
    behaviours: on Ctrl-C its agent forwards a second SIGINT to ranks that already got the
    terminal's (a second Ctrl-C stops a rank at once, unsaved) and re-raises it as a
    SignalException traceback; a rank that saved and exited 130 counts as failed
    (ChildFailedError report, exit 1 instead of 130); and it sets OMP_NUM_THREADS=1 in the
    launcher's own os.environ, which `cnnlab.train(nproc=2)` must leave untouched.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cnnlab-ddp-") as tmp:
        config_path = Path(tmp) / "config.toml"
        config_path.write_text(config_toml)
        argv = [sys.executable, "-m", "cnnlab", "train", "--config", str(config_path)]
        if resume:
            argv += ["--resume", resume]
        processes, logs = [], []
        for rank in range(nproc):
            env = dict(
                os.environ,
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=str(nproc),
                LOCAL_WORLD_SIZE=str(nproc),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
            )
            log = None if rank == 0 else open(Path(tmp) / f"rank{rank}.log", "w+")  # noqa: SIM115
            logs.append(log)
            processes.append(subprocess.Popen(argv, env=env, stdout=log, stderr=log))
        codes = _wait_all(processes)
        failed = [(rank, code) for rank, code in enumerate(codes) if code not in (0, INTERRUPTED)]
        for rank, code in failed:
            if logs[rank] is not None:
                logs[rank].seek(0)
                print(
                    f"--- rank {rank} (exit code {code}) ---\n{logs[rank].read()[-4000:]}",
                    file=sys.stderr,
                )
        for log in logs:
            if log is not None:
                log.close()
    if failed:
        rank, code = failed[0]
        raise CnnlabError(
            _(
                "training process {rank} stopped with exit code {code} (its message is above)"
            ).format(rank=rank, code=code)
        )


INTERRUPTED = 130  # a rank stopped by Ctrl-C, its run saved


def _wait_all(processes: list[subprocess.Popen]) -> list[int]:
    """Wait for every process; if one fails, stop the rest. Ctrl-C reaches the ranks, which save and stop."""
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None) if _main_thread() else None
    try:
        while True:
            codes = [p.poll() for p in processes]
            if all(code is not None for code in codes):
                return codes
            if any(code not in (None, 0, INTERRUPTED) for code in codes):
                for p in processes:
                    if p.poll() is None:
                        p.terminate()
            time.sleep(0.1)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
