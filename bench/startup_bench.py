"""Start-up: wall seconds of the light `cnnlab` commands, each a fresh process (median of N).

Run: .venv/bin/python -m bench.startup_bench [--repeats 5]
The commands need no torch (issue 15's goal: <= 0.3 s each). Each is timed from process start
to exit with its output discarded; the Python interpreter's own start is included, since a user
waits for it too. Also reports which heavy modules (torch, matplotlib, numpy) each command
imported, read from `python -X importtime`, and the CPU seconds (user + system) each process used:
on a loaded machine wall time grows with the load (a process gets a share of a core), CPU time much
less, so it tells start-up work apart from waiting for a core.
Writes bench/results/startup_bench.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

GOAL_S = 0.3  # issue 15: `cnnlab --help`, `summary`, `explain` <= 0.3 s; `datasets`, `runs` too
HEAVY = ("torch", "matplotlib", "numpy")

# The commands of the goal, as a user types them after `cnnlab`.
COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "summary default": ["summary", "default"],
    "summary best": ["summary", "best"],
    "summary SPEC": ["summary", "input(1x28x28) conv(8,3) relu flatten fc(10)"],
    "explain conv": ["explain", "conv"],
    "models": ["models"],
    "spec default": ["spec", "default"],
    "kernels --list": ["kernels", "--list"],
    "datasets": ["datasets"],
    "runs": ["runs"],  # a runs/ folder under the working directory, or none
}


def _command(args: list[str]) -> list[str]:
    # `python -m cnnlab` is what the installed `cnnlab` script runs, minus the script's lookup.
    return [sys.executable, "-m", "cnnlab", *args]


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_runs(args: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """(wall, CPU) seconds of `cnnlab ARGS` as a new process, `repeats` times, after a warm-up."""
    subprocess.run(_command(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    walls, cpus = [], []
    for _ in range(repeats):
        cpu, started = _cpu_of_children(), time.perf_counter()
        subprocess.run(_command(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu_of_children() - cpu)
    return walls, cpus


def heavy_imports(args: list[str]) -> list[str]:
    """The heavy top-level packages `cnnlab ARGS` imports (from -X importtime's stderr)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cnnlab", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    return [name for name in HEAVY if name in names]


def bench(repeats: int = 5) -> dict:
    """Per command: median and all wall seconds, heavy imports, and the goal met or not."""
    results: dict = {"goal_s": GOAL_S, "repeats": repeats, "load": round(os.getloadavg()[0], 2)}
    commands = {}
    for name, args in COMMANDS.items():
        runs, cpus = timed_runs(args, repeats)
        median = statistics.median(runs)
        commands[name] = {
            "median_s": round(median, 3),
            "runs_s": [round(r, 3) for r in runs],
            "cpu_median_s": round(statistics.median(cpus), 3),
            "imports": heavy_imports(args),
            "met": median <= GOAL_S,
        }
        cpu = commands[name]["cpu_median_s"]
        print(f"cnnlab {name}: {median:.3f} s ({cpu:.3f} s CPU) {commands[name]['imports']}")
    results["commands"] = commands
    results["python_alone_s"] = round(statistics.median(_python_alone() for _ in range(repeats)), 3)
    return results


def _python_alone() -> float:
    """The floor: an interpreter that imports nothing of cnnlab."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"])
    return time.perf_counter() - started


def markdown(results: dict) -> str:
    lines = [
        f"## Start-up (median of {results['repeats']}, goal <= {results['goal_s']} s wall; "
        f"`python -c pass` alone {results['python_alone_s']} s; load {results['load']})",
        "",
        "| command | median s | CPU s | heavy imports | met |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["commands"].items():
        heavy = ", ".join(r["imports"]) or "none"
        lines.append(
            f"| `cnnlab {name}` | {r['median_s']} | {r['cpu_median_s']} | {heavy} "
            f"| {'yes' if r['met'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per command (median)")
    args = parser.parse_args()
    results = bench(args.repeats)
    print("\n" + markdown(results))
    from bench.common import write_results  # imports torch (machine facts): after the timing

    print(f"written {write_results('startup_bench', results)}")


if __name__ == "__main__":
    main()
