"""`make notebooks` leaves nothing that changes from run to run."""

from __future__ import annotations

import nbformat

from nexttoken.execute import clean_notebook


def widget_output(model_id: str) -> dict:
    return nbformat.v4.new_output(
        "display_data",
        data={
            "application/vnd.jupyter.widget-view+json": {"model_id": model_id, "version_major": 2},
            "text/plain": "VBox()",
        },
    )


def make_nb(model_id: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    cell = nbformat.v4.new_code_cell("w", execution_count=1, outputs=[widget_output(model_id)])
    cell.id = "fixed-cell-id"  # committed notebooks keep their cell ids
    cell.metadata["execution"] = {"iopub.execute_input": "2026-11-29T10:00:00Z"}
    nb.cells = [cell]
    return nb


def test_clean_drops_state_timing_and_version_and_renumbers_widgets():
    a = clean_notebook(make_nb("random-id-1"), "x.ipynb")
    b = clean_notebook(make_nb("another-random-id"), "x.ipynb")
    assert "widgets" not in a.metadata
    assert "version" not in a.metadata.language_info
    assert "execution" not in a.cells[0].metadata
    assert nbformat.writes(a) == nbformat.writes(b)  # two runs, one file
    view = a.cells[0].outputs[0].data["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] != "random-id-1" and len(view["model_id"]) == 32
