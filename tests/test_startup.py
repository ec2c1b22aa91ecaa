"""Start-up: the light commands and every command's --help load no torch, matplotlib or numpy;
the commands that list data sets, read run folders and draw (datasets, runs, plot, diagram)
load no torch.

A check on modules, not on the clock (bench/startup_bench.py times them): a fresh interpreter
runs the commands one after another and reports which heavy packages each one added to
sys.modules. Constants the command line shows (choices, defaults) are kept in torch-free
package __init__ files; the tests at the end check they agree with the modules that use them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "torchvision", "matplotlib", "numpy", "PIL", "onnxruntime")

# What a user types after `cnnlab` to look at a model or at the arithmetic: none needs a tensor.
LIGHT_COMMANDS = [
    ["--help"],
    ["summary", "default"],
    ["summary", "best"],
    ["summary", "input(1x28x28) conv(8,3) relu flatten fc(10)"],
    ["summary", "tutorial", "--explain"],
    ["summary", "default", "--json"],
    ["models"],
    ["spec", "default"],
    ["explain", "conv"],
    ["explain", "conv", "--kernel", "sobel-x"],
    ["explain", "pool"],
    ["explain", "padding"],
    ["explain", "stride"],
    ["kernels", "--list"],
    ["summary", "conv(8,3"],  # an error (exit 2) is light too
]

# Commands that read a run folder or a data set list, or draw from a spec or metrics.csv: none
# needs torch. Listing loads nothing heavy; drawing loads matplotlib (which brings numpy and PIL).
# The probe runs them in order in one process, so the listings come first.
DRAWING = ("matplotlib", "numpy", "PIL")
SPEC = "conv(8,3) relu maxpool(2) flatten fc(10)"
TORCH_FREE_COMMANDS: list[tuple[list[str], tuple[str, ...]]] = [
    (["runs", "runs"], ()),
    (["runs", "runs", "--json"], ()),
    (["datasets"], ()),
    (["datasets", "--json"], ()),
    (["datasets", "--data-dir", "no-such-folder"], ()),
    (["plot", "runs/tiny", "--out", "curves.png"], DRAWING),
    (["plot", "runs/old-run", "--json", "--out", "old.png"], DRAWING),
    (["diagram", "lenet5", "--out", "lenet5.png"], DRAWING),
    (["diagram", SPEC, "--input", "1x28x28", "--out", "spec.png", "--out", "spec.svg"], DRAWING),
    (["diagram", "runs/tiny"], DRAWING),
]
OLD_RUN = Path(__file__).parent / "fixtures" / "old-run"

# Runs each command in this one process (stdout discarded) and prints, per command, its exit
# status and the heavy packages it loaded, as JSON lines.
_PROBE = """
import contextlib, io, json, sys
from cnnlab.cli import build_parser, main
heavy = {heavy!r}
def loaded():
    return sorted(name for name in heavy if name in sys.modules)
commands = json.loads(sys.argv[1])
if sys.argv[2] == "with-helps":
    names = list(build_parser()._subparsers._group_actions[0].choices)
    commands += [[name, "--help"] for name in names]
for argv in commands:
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            code = main(argv)
        except SystemExit as stop:  # --help exits
            code = stop.code
    print(json.dumps({{"argv": argv, "code": code, "loaded": loaded()}}), flush=True)
"""


def _probe(
    commands: list[list[str]], with_helps: bool = False, cwd: Path | None = None
) -> list[dict]:
    code = _PROBE.format(heavy=HEAVY)
    helps = "with-helps" if with_helps else "-"
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(commands), helps],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_light_commands_and_every_help_load_no_torch_matplotlib_or_numpy():
    reports = _probe(LIGHT_COMMANDS, with_helps=True)
    helps = [r for r in reports if r["argv"][1:] == ["--help"]]
    assert len(reports) == len(LIGHT_COMMANDS) + len(helps) and len(helps) >= 15
    for report in reports:
        assert report["loaded"] == [], (
            f"cnnlab {' '.join(report['argv'])} loaded {report['loaded']}"
        )
    # The commands ran (a crash would also load nothing): 0, or 2 for the bad spec.
    codes = {" ".join(r["argv"]): r["code"] for r in reports}
    assert codes["summary conv(8,3"] == 2
    assert all(code == 0 for argv, code in codes.items() if argv != "summary conv(8,3")


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory) -> Path:
    """A folder holding runs/tiny (trained now, with record.json) and runs/old-run (no record)."""
    import cnnlab

    here = tmp_path_factory.mktemp("startup")
    model = "conv(4,3) relu maxpool(2) flatten fc(10)"
    cnnlab.train(model=model, data="shapes", train_size=100, test_size=20, epochs=1,
                 quiet=True, out=str(here / "runs" / "tiny"))  # fmt: skip
    shutil.copytree(OLD_RUN, here / "runs" / "old-run")
    return here


def test_listing_runs_and_data_sets_and_drawing_curves_and_diagrams_load_no_torch(runs_folder):
    """`runs`, `datasets`, `plot` and `diagram` read JSON, CSV and specs: torch stays unloaded."""
    reports = _probe([argv for argv, _ in TORCH_FREE_COMMANDS], cwd=runs_folder)
    assert len(reports) == len(TORCH_FREE_COMMANDS)
    for report, (argv, allowed) in zip(reports, TORCH_FREE_COMMANDS, strict=True):
        assert report["code"] == 0, f"cnnlab {' '.join(argv)} failed"
        extra = sorted(set(report["loaded"]) - set(allowed))
        assert extra == [], f"cnnlab {' '.join(argv)} loaded {extra}"
    assert (runs_folder / "curves.png").is_file()  # the commands did their work
    assert (runs_folder / "spec.svg").is_file() and (
        runs_folder / "runs/tiny/diagram.png"
    ).is_file()


def test_a_command_that_needs_torch_is_seen_loading_it(tmp_path):
    """The probe can fail: `datasets show` renders images with torch."""
    argv = ["datasets", "show", "shapes", "--per-class", "1", "--out", str(tmp_path / "g.png")]
    (report,) = _probe([argv])
    assert report["code"] == 0 and "torch" in report["loaded"]


def test_the_cli_constants_have_one_definition_which_the_torch_modules_use():
    """Defined in the torch-free package __init__s; the modules that check them use the same."""
    from cnnlab import deploy, evaluate, run
    from cnnlab.deploy import predict
    from cnnlab.evaluate import scores
    from cnnlab.run import folder

    assert folder.RUNS_DIR is run.RUNS_DIR
    assert scores.SPLITS is evaluate.SPLITS
    assert predict.ENGINE_CHOICES is deploy.ENGINE_CHOICES
    assert predict.INVERT_CHOICES is deploy.INVERT_CHOICES


def test_cnnlab_data_exports_resolve_lazily():
    """`from cnnlab.data import X` still works for every exported name (PEP 562 __getattr__)."""
    import cnnlab.data as data
    from cnnlab.data.dataset import Dataset
    from cnnlab.data.registry import load_dataset

    assert data.Dataset is Dataset and data.load_dataset is load_dataset
    for name in data.__all__:
        assert callable(getattr(data, name))
