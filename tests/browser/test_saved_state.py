"""Each notebook, opened in JupyterLab without running anything, shows every widget's first view.

`make notebooks` saves the widget state in the notebooks (nexttoken.execute); this test opens each
notebook that shows a widget, in a trusted copy (JupyterLab renders saved widget views of trusted
notebooks only; ``make lab`` trusts the book's notebooks), runs no cell, and checks that every
widget is drawn from that state with the very PNG the state holds. ``--notebooks-dir DIR`` checks
another folder (e.g. freshly executed copies) instead of notebooks/.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from browserlab import LabServer, new_page, notebook_problems, open_notebook, picture, scratch_copy

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"  # when run without the option
VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"


def shows_widgets(path: Path) -> bool:
    return VIEW in path.read_text(encoding="utf-8")


def pytest_generate_tests(metafunc):
    if "notebook" in metafunc.fixturenames:
        folder = Path(metafunc.config.getoption("--notebooks-dir", NOTEBOOKS)).resolve()
        names = sorted(
            str(p.relative_to(folder))
            for p in folder.rglob("*.ipynb")
            if ".ipynb_checkpoints" not in p.parts and shows_widgets(p)
        )
        metafunc.parametrize("notebook", names)


def expected_pictures(nb: nbformat.NotebookNode, name: str) -> dict[str, str]:
    """CSS class of each widget the notebook shows -> the PNG (base64) its saved state holds."""
    state = nb.metadata.get("widgets", {}).get(STATE, {}).get("state")
    assert state, f"{name} has no saved widget state: run `make notebooks`"
    found = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            view = out.get("data", {}).get(VIEW)
            if view is None:
                continue
            model = state.get(view["model_id"])
            assert model, f"{name}: widget {view['model_id']} shown but not in the saved state"
            classes = [
                c
                for c in model["state"].get("_dom_classes", [])
                if c.startswith("nt-") and c != "nt-widget"
            ]
            assert classes, f"{name}: a widget without an nt- CSS class"
            css = classes[0]
            figures = [
                m["state"]
                for m in state.values()
                if f"{css}-figure" in m["state"].get("_dom_classes", [])
            ]
            assert len(figures) == 1, f"{name}: no single saved .{css}-figure"
            outputs = figures[0].get("outputs", [])
            assert outputs and "image/png" in outputs[0]["data"], f"{name}: .{css} saved no PNG"
            found[css] = outputs[0]["data"]["image/png"]
    return found


@pytest.fixture(scope="module")
def lab(request, committed_notebooks, disabled_extensions, tmp_path_factory):
    folder = Path(request.config.getoption("--notebooks-dir", NOTEBOOKS)).resolve()
    root = scratch_copy(folder, tmp_path_factory.mktemp("saved"))
    with LabServer(root, disabled_extensions=disabled_extensions) as server:
        server.trust(p for p in root.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        yield server


def test_widget_shows_its_saved_picture_without_running(lab, browser, notebook):
    nb = nbformat.read(lab.root / notebook, as_version=4)
    pictures = expected_pictures(nb, notebook)
    page = new_page(browser)
    try:
        open_notebook(page, lab, notebook)
        for css in pictures:
            page.wait_for_selector(f".{css} .{css}-figure img", state="attached", timeout=60_000)
        for css, png in pictures.items():
            assert picture(page, css) == f"data:image/png;base64,{png}", (
                f".{css} does not show the PNG saved in the notebook"
            )
        prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
        assert not any("*" in p for p in prompts), "a cell ran"
        assert notebook_problems(page) == []
        assert page.page_errors == []
    finally:
        page.close()
        lab.shutdown_kernels()
