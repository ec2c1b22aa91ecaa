"""The run folder, the one hand-off: files (names, model.json schema), checkpoint, writer, folder (reading)."""

from pathlib import Path

# Where runs go by default, relative to the working directory. Here, not only in files.py (which
# loads torch), so that `cnnlab runs --help` can show it without loading torch;
# tests/test_startup.py checks that files.RUNS_DIR is this value.
RUNS_DIR = Path("runs")
