"""Every widget of the book, run in JupyterLab in Chromium, and every control changed once.

One JupyterLab server per notebook (a server keeps a notebook's kernel across page loads). The page
clears the outputs and runs all cells; then no stderr, no page error, no widget that failed to load;
the widget is found by its CSS class and shows a PNG; each control is changed once (sliders by one
keyboard step, so one step is one redraw) and the picture must change and name the new value in
its title. The widget's first view and its view after the first change are compared with (or, with
``--update-screenshots``, written to) figures/widgets/.
"""

from __future__ import annotations

import pytest
from browserlab import (
    LabServer,
    new_page,
    notebook_problems,
    open_notebook,
    picture,
    png_title,
    run_all_cells,
    scratch_copy,
    tree_digest,
)
from shots import SCREENSHOTS, check_or_write
from widgets import WIDGETS, Control, Widget

REDRAW_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module", params=WIDGETS, ids=lambda w: w.notebook.removesuffix(".ipynb"))
def ran(request, browser, committed_notebooks, disabled_extensions, tmp_path_factory):
    """A fresh server on a scratch copy of notebooks/, the widget's notebook open and run."""
    widget: Widget = request.param
    root = scratch_copy(committed_notebooks, tmp_path_factory.mktemp("lab"))
    before = tree_digest(root)
    with LabServer(root, disabled_extensions=disabled_extensions) as lab:
        lab.trust([root / widget.notebook])
        page = new_page(browser)
        try:
            open_notebook(page, lab, widget.notebook)
            not_run = run_all_cells(page)
            assert not not_run, f"{len(not_run)} cells did not run: {notebook_problems(page)}"
            yield widget, page
        finally:
            page.close()
    assert tree_digest(root) == before, "the served copy was saved: autosave must be off"


def control_locator(page, widget: Widget, control: Control):
    css = f"{widget.css}-{control.name.replace('_', '-')}"
    found = page.locator(f".{widget.css} .{css}")
    assert found.count() == 1, f"no single control .{css} in .{widget.css}"
    return found


def change(page, widget: Widget, control: Control) -> str:
    """Change ``control`` once, the way a reader would; returns what it shows afterwards."""
    el = control_locator(page, widget, control)
    if control.kind == "slider":
        handle, readout = el.locator(".noUi-handle"), el.locator(".widget-readout")
        now, top = handle.get_attribute("aria-valuenow"), handle.get_attribute("aria-valuemax")
        shown = readout.inner_text()
        handle.focus()  # one keyboard step is one value change, so one redraw
        handle.press("ArrowLeft" if float(now) >= float(top) else "ArrowRight")
        page.wait_for_function(
            "([r, v]) => r.innerText !== v", arg=[readout.element_handle(), shown]
        )
        return readout.inner_text().strip()  # the value as the reader sees it
    if control.kind == "dropdown":
        select = el.locator("select")
        n, i = select.evaluate("s => [s.options.length, s.selectedIndex]")
        select.select_option(index=(i + 1) % n)
        return select.evaluate("s => s.options[s.selectedIndex].textContent").replace("\xa0", " ")
    if control.kind == "text":
        box = el.locator("input, textarea").first
        box.fill(control.text)
        box.press("Enter")
        return control.text
    if control.kind == "button":
        el.click()
        return ""
    raise ValueError(f"unknown control kind {control.kind!r}")


def wait_new_picture(page, widget: Widget, old: str) -> str:
    page.wait_for_function(
        """([css, old]) => {
            const img = document.querySelector(`.${css} .${css}-figure img`);
            return img && img.src.startsWith('data:image/png') && img.src !== old;
        }""",
        arg=[widget.css, old],
        timeout=REDRAW_TIMEOUT_MS,
    )
    return picture(page, widget.css)


def test_runs_clean_and_shows_its_widget(ran, update_screenshots):
    widget, page = ran
    assert page.locator(f".{widget.css}").count() == 1, (
        f"widget .{widget.css} not on the page (is the widget manager working?)"
    )
    assert picture(page, widget.css).startswith("data:image/png"), "the widget shows no PNG"
    assert notebook_problems(page) == []
    assert page.page_errors == []
    shot = page.locator(f".{widget.css}").screenshot(animations="disabled")
    problem = check_or_write(shot, SCREENSHOTS / f"{widget.slug}.png", update_screenshots)
    assert problem is None, problem


def test_every_control_redraws_what_it_says(ran, update_screenshots):
    widget, page = ran
    first = picture(page, widget.css)
    assert first.startswith("data:image/png"), f"widget .{widget.css} shows no PNG"
    shown = first
    for i, control in enumerate(widget.controls):
        value = change(page, widget, control)
        if not control.redraws:  # its readout changed (checked in change); the picture did not
            continue
        new = wait_new_picture(page, widget, shown)
        title = png_title(new)
        if control.back_to_start:
            assert new == first, f"{control.name}: the picture is not the first one again"
        if control.expect is not None:
            want = control.expect(value)
            assert want in title, f"{control.name} = {value!r}: title {title!r} lacks {want!r}"
        if i == 0:
            shot = page.locator(f".{widget.css}").screenshot(animations="disabled")
            path = SCREENSHOTS / f"{widget.slug}-{control.name.replace('_', '-')}.png"
            problem = check_or_write(shot, path, update_screenshots)
            assert problem is None, problem
        shown = new
    assert notebook_problems(page) == []
    assert page.page_errors == []


def test_every_notebook_with_a_widget_is_driven(committed_notebooks):
    """A widget added to a notebook needs its entry in widgets.WIDGETS (its controls)."""
    view = "application/vnd.jupyter.widget-view+json"
    shown = {p.name for p in committed_notebooks.glob("*.ipynb") if view in p.read_text("utf-8")}
    driven = {w.notebook for w in WIDGETS}
    assert shown <= driven, f"widgets no browser test drives: {sorted(shown - driven)}"
    assert driven <= {p.name for p in committed_notebooks.glob("*.ipynb")}
