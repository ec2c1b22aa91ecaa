"""The run folder, the one hand-off: files (names, model.json schema), checkpoint, writer, folder (reading)."""

from pathlib import Path

# Where runs go by default, relative to the working directory. Defined here, not in files.py
# (which loads torch), so that `cnnlab runs --help` shows it without loading torch.
RUNS_DIR = Path("runs")
