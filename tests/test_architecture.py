"""The layout holds: the import layers, small functions, and docs/ARCHITECTURE.md naming every module."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cnnlab"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
MAX_FUNCTION_LINES = 60
# ls cnnlab/ reads in pipeline order: these folders, plus the two bottom modules and the entry points.
STAGES = ["spec", "model", "data", "training", "run", "evaluate", "figures", "explain", "deploy"]
FRONT_ENDS = ["server", "cli"]
TOP_MODULES = {"__init__.py", "__main__.py", "errors.py", "fileio.py", "text.py", "i18n.py"}
# Package data beside the code, not a stage: the gettext catalogues (cnnlab/i18n.py reads them).
DATA_FOLDERS = ["locale"]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "static" not in p.parts)


def _functions(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_import_layers_hold():
    """lint-imports checks the contract in pyproject.toml (no upward import, even inside a function)."""
    lint_imports = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run(
        [lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout  # the layers, and no stage after training reads it


def test_the_contract_names_every_package():
    """A new stage folder must be placed in a layer, or the contract silently ignores it."""
    contract = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    layered = set(re.findall(r"cnnlab\.(\w+)", contract.split("[tool.importlinter]", 1)[1]))
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert packages | modules <= layered


def test_top_level_is_the_pipeline():
    """cnnlab/ holds one folder per stage and front end, and only the bottom modules beside them."""
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    files = {p.name for p in PACKAGE.glob("*.py")}
    assert folders == set(STAGES + FRONT_ENDS + DATA_FOLDERS)
    assert files == TOP_MODULES


def test_no_function_is_longer_than_60_lines():
    long = [
        f"{path.relative_to(ROOT)}:{line} {name} ({length} lines)"
        for path in _modules()
        for name, line, length in _functions(path)
        if length > MAX_FUNCTION_LINES
    ]
    assert not long, "split these functions:\n" + "\n".join(long)


def _named_modules(text: str) -> set[str]:
    """Every `cnnlab/...py` path named in the text, and every `name.py` listed in a package's row."""
    named = set(re.findall(r"`(cnnlab/[\w/]+\.py)`", text))
    for row in re.findall(r"^\| `(cnnlab/\w+)/` \|(.*)$", text, flags=re.M):
        folder, cells = row
        named |= {f"{folder}/{name}" for name in re.findall(r"`(\w+\.py)`", cells)}
    return named


def test_architecture_doc_names_every_module_and_only_real_ones():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    named = _named_modules(text)
    real = {str(p.relative_to(ROOT)) for p in _modules()}
    # Package __init__ files and __main__ may be named, need not be.
    required = {m for m in real if not m.endswith(("__init__.py", "__main__.py"))}
    assert named - real == set(), "docs/ARCHITECTURE.md names modules that do not exist"
    assert required - named == set(), "docs/ARCHITECTURE.md does not name these modules"


@pytest.mark.parametrize(
    "module",
    ["cnnlab.spec.summary", "cnnlab.spec.analysis", "cnnlab.model.presets", "cnnlab.errors"],
)
def test_pure_layers_do_not_load_torch(module):
    """The spec layer (and presets) explain a model without torch: `cnnlab summary` starts fast."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
