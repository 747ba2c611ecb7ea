"""`make notebooks` leaves nothing that changes from run to run, and keeps what a static reader
needs: the state of the widgets the notebook shows, under stable ids, pictures included."""

from __future__ import annotations

import base64
import copy
import io

import nbformat
import pytest

from nexttoken.execute import STATE_MIME, VIEW_MIME, clean_notebook

REF = "IPY_MODEL_"


def model(name: str, **state) -> dict:
    return {
        "model_name": name,
        "model_module": "@jupyter-widgets/controls",
        "model_module_version": "2.0.0",
        "state": {"_model_name": name, **state},
    }


def view(model_id: str) -> dict:
    return nbformat.v4.new_output(
        "display_data",
        data={VIEW_MIME: {"model_id": model_id, "version_major": 2}, "text/plain": "VBox()"},
    )


def make_nb(ids: list[str], *, shown: bool = True) -> nbformat.NotebookNode:
    """A notebook showing one VBox(children=[slider, output]) under the model ids ``ids``
    (box, slider, output, layout, a nested view in the output, a widget never shown)."""
    box, slider, out, layout, nested, orphan = ids
    state = {
        orphan: model("IntSliderModel", value=3, layout=REF + layout),
        layout: model("LayoutModel", width="480px"),
        nested: model("ButtonModel", description="hi", layout=REF + layout),
        out: model(
            "OutputModel",
            _dom_classes=["nt-x-figure"],
            layout=REF + layout,
            outputs=[{"output_type": "display_data", "data": {VIEW_MIME: {"model_id": nested}}}],
        ),
        slider: model("IntSliderModel", value=1, layout=REF + layout),
        box: model("VBoxModel", _dom_classes=["nt-x"], children=[REF + slider, REF + out]),
    }
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {STATE_MIME: {"state": state, "version_major": 2, "version_minor": 0}}
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    cell = nbformat.v4.new_code_cell("w", execution_count=1, outputs=[view(box)] if shown else [])
    cell.id = "fixed-cell-id"  # committed notebooks keep their cell ids
    cell.metadata["execution"] = {"iopub.execute_input": "2026-11-29T10:00:00Z"}
    nb.cells = [cell]
    return nb


RUN1 = ["a1", "b1", "c1", "d1", "e1", "f1"]
RUN2 = ["z9", "y9", "x9", "w9", "v9", "u9"]


def test_two_runs_give_one_file_without_timing_or_version():
    a = clean_notebook(make_nb(RUN1), "x.ipynb")
    b = clean_notebook(make_nb(RUN2), "x.ipynb")
    assert nbformat.writes(a) == nbformat.writes(b)
    assert "version" not in a.metadata.language_info
    assert "execution" not in a.cells[0].metadata


def test_state_of_shown_widgets_is_kept_with_every_reference_renamed():
    nb = clean_notebook(make_nb(RUN1), "x.ipynb")
    state = nb.metadata.widgets[STATE_MIME]["state"]
    assert len(state) == 5  # the widget never shown is dropped
    text = nbformat.writes(nb)
    for old in RUN1:
        assert f'"{old}"' not in text and REF + old not in text
    box_id = nb.cells[0].outputs[0].data[VIEW_MIME]["model_id"]
    assert len(box_id) == 32 and state[box_id]["state"]["_dom_classes"] == ["nt-x"]
    slider_id, out_id = (c.removeprefix(REF) for c in state[box_id]["state"]["children"])
    assert state[slider_id]["state"]["value"] == 1
    nested = state[out_id]["state"]["outputs"][0]["data"][VIEW_MIME]["model_id"]
    assert state[nested]["state"]["description"] == "hi"
    assert nbformat.validate(nb) is None


def test_clean_is_idempotent_and_names_ids_after_the_notebook():
    once = clean_notebook(make_nb(RUN1), "x.ipynb")
    twice = clean_notebook(copy.deepcopy(once), "x.ipynb")
    assert once == twice
    other = clean_notebook(make_nb(RUN1), "y.ipynb")
    assert set(other.metadata.widgets[STATE_MIME]["state"]).isdisjoint(
        once.metadata.widgets[STATE_MIME]["state"]
    )


def test_no_widget_shown_means_no_state():
    nb = clean_notebook(make_nb(RUN1, shown=False), "x.ipynb")
    assert "widgets" not in nb.metadata


def test_a_shown_widget_without_state_is_an_error():
    nb = make_nb(RUN1)
    nb.metadata.pop("widgets")
    with pytest.raises(ValueError, match="state was not recorded"):
        clean_notebook(nb, "x.ipynb")


def test_widget_pictures_are_pngs_that_name_their_title():
    import matplotlib.pyplot as plt
    from PIL import Image

    from nexttoken.widgets import figure_output, figure_title

    fig, (a1, a2) = plt.subplots(1, 2)
    fig.suptitle("whole")
    a1.set_title("layer 2, head 1")
    plt.close(fig)
    assert figure_title(fig) == "whole | layer 2, head 1"
    out = figure_output(fig)
    assert out["output_type"] == "display_data" and out["data"]["text/plain"].startswith("<Figure")
    with Image.open(io.BytesIO(base64.b64decode(out["data"]["image/png"]))) as im:
        assert im.text["Title"] == "whole | layer 2, head 1"
    assert figure_output(fig) == out  # the same figure, the same bytes


def test_prints_split_by_flush_timing_give_one_output():
    split = make_nb(RUN1)
    split.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="a\n"),
        nbformat.v4.new_output("stream", name="stdout", text="b\n"),
        nbformat.v4.new_output("stream", name="stderr", text="w\n"),
        nbformat.v4.new_output("stream", name="stdout", text="c\n"),
    ]
    whole = make_nb(RUN1)
    whole.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="a\nb\n"),
        nbformat.v4.new_output("stream", name="stderr", text="w\n"),
        nbformat.v4.new_output("stream", name="stdout", text="c\n"),
    ]
    assert nbformat.writes(clean_notebook(split, "x.ipynb")) == nbformat.writes(
        clean_notebook(whole, "x.ipynb")
    )
