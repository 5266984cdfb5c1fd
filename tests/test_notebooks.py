"""The example notebooks run top to bottom offline (executed with nbclient, so they cannot rot) and are committed
without outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples" / "notebooks").glob("*.ipynb"))


def test_the_four_notebooks_are_there_without_outputs():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_quickstart",
        "02_swap_reasoners",
        "03_evaluate_a_folder",
        "04_train_on_the_demo_world",
    ]
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip its outputs"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in NOTEBOOKS])
@pytest.mark.slow  # each loads the SmolLM2 reasoner in a fresh kernel: about a minute on two idle cores, more when busy
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch, smollm2_gguf):
    # the kernel is this interpreter (its `python3` kernel spec finds `python` on PATH), offline like the tests
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
