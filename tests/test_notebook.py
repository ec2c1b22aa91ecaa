"""docs/notebook.ipynb: committed without outputs, and it runs top to bottom showing tables and images."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "notebook.ipynb"


def _read():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    return notebook


def test_the_committed_notebook_has_no_outputs():
    """Outputs are not committed (they hold paths, timings, PNG bytes): clear them before saving."""
    code = [cell for cell in _read().cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
def test_the_notebook_runs_and_shows_tables_and_images(tmp_path):
    notebook = _read()
    # The kernel is this interpreter (jupyter_client's native python3 kernel); the run folder
    # goes to tmp_path, the notebook's working directory.
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    html = [out.data["text/html"] for out in outputs if "text/html" in out.get("data", {})]
    # a model report (twice: English, then Korean), a run, an evaluation
    assert len(html) >= 4 and all("<table" in page for page in html)
    assert any("how the size comes about" in page for page in html)
    assert any("크기가 나오는 과정" in page for page in html)
    assert any("metrics.csv" in page for page in html)  # the run's epochs
    assert any("precision" in page and "confusion" in page for page in html)
    images = [out.data["image/png"] for out in outputs if "image/png" in out.get("data", {})]
    assert images  # the feature-map grid, as a PNG
    assert (tmp_path / "runs" / "notebook" / "model.safetensors").is_file()


def test_the_html_views_escape_user_names():
    """Class names come from folder names: a notebook must show them as text, not run them."""
    import torch

    from cnnlab.evaluate.scores import Evaluation
    from cnnlab.model.presets import resolve_model
    from cnnlab.spec.analysis import analyze

    names = ["<script>alert(1)</script>", "cats & dogs"]
    evaluation = Evaluation(
        names, torch.tensor([0, 1, 1]), torch.tensor([[2.0, 0], [0, 1], [3, 0]])
    )
    page = evaluation._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "cats &amp; dogs" in page
    assert "<td>66.67%</td>" in page  # two of three right
    summary = analyze(resolve_model("conv(4, 3) flatten fc(2)", (1, 8, 8)))._repr_html_()
    assert summary.count("<tr>") == 1 + 1 + 3 + 1  # head, input, three layers, totals
    assert "4x6x6" in summary and "floor((8 + 2*0 - 1*(3-1) - 1)/1) + 1 = 6" in summary
