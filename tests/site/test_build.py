"""Unit tests of the website build's pure parts (website/build.py, website/ext/nt_site.py).

Collected by ``make unit``: no browser, no network, no Jupyter Book run.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import pytest

WEBSITE = Path(__file__).resolve().parents[2] / "website"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


build = _load("website_build", WEBSITE / "build.py")
nt_site = _load("nt_site", WEBSITE / "ext" / "nt_site.py")


def _notebook(path: Path, markdown: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown)])
    nbformat.write(nb, path)
    return path


def test_notebook_title_is_the_first_h1(tmp_path):
    path = _notebook(tmp_path / "03_x.ipynb", "Intro\n# 03 · Self-attention\n## part")
    assert build.notebook_title(path) == "03 · Self-attention"


def test_a_notebook_without_a_title_is_refused(tmp_path):
    path = _notebook(tmp_path / "03_x.ipynb", "## only a section")
    with pytest.raises(ValueError, match="no '# title' line"):
        build.notebook_title(path)


def test_toc_has_every_chapter_the_solutions_and_the_appendix(tmp_path):
    build.write_toc(tmp_path, ["00_a", "01_b"], ["00_a_solutions"])
    toc = (tmp_path / "_toc.yml").read_text()
    for line in [
        "root: index",
        "- file: notebooks/00_a",
        "- file: notebooks/01_b",
        "- file: solutions",
        "- file: notebooks/solutions/00_a_solutions",
        "- file: appendix/model_card",
        "- file: appendix/benchmark_results",
    ]:
        assert line in toc
    assert toc.index("notebooks/00_a\n") < toc.index("notebooks/01_b") < toc.index("solutions")


def test_gallery_shows_first_views_only_linked_to_their_chapter():
    shots = [Path("03_attention.png"), Path("03_attention-layer.png"), Path("42_nowhere.png")]
    grid = build.widget_gallery(shots, ["03_self_attention", "05_logits"])
    assert grid.count("grid-item-card") == 1
    assert ":link: notebooks/03_self_attention" in grid
    assert "figures/widgets/03_attention.png" in grid
    assert "make screenshots" in build.widget_gallery([], ["03_self_attention"])


class _Js:
    def __init__(self, filename, **attributes):
        self.filename, self.attributes = filename, attributes


def _context(body: str, saved: list[str]) -> dict:
    state = json.dumps({"version_major": 2, "version_minor": 0, "state": dict.fromkeys(saved, {})})
    scripts = [
        _Js("doctools.js"),
        _Js("doctools.js"),
        _Js(None, body="const THEBE_JS_URL = 'https://unpkg.com/thebe'"),
        _Js(None, type=nt_site.STATE_TYPE, body=state),
    ]
    return {
        "body": body,
        "script_files": scripts,
        "css_files": ["sphinx-thebe.css", "nt-site.css"],
        "pathto": lambda doc: "../index.html",
    }


def _view(model_id: str) -> str:
    return f'<script type="application/vnd.jupyter.widget-view+json">{{"model_id": "{model_id}"}}</script>'


class _App:
    class config:  # noqa: N801 (Sphinx's attribute name)
        root_doc = "index"


def test_page_fixes_scripts_and_annotates_widgets():
    context = _context(_view("aaa") + _view("bbb"), saved=["aaa"])
    nt_site._on_page(_App, "notebooks/03", "page.html", context, None)
    names = [js.filename for js in context["script_files"]]
    assert names.count("doctools.js") == 1  # duplicate dropped
    assert not any("THEBE" in str(js.attributes.get("body", "")) for js in context["script_files"])
    assert context["css_files"] == ["nt-site.css"]
    body = context["body"]
    assert body.count('class="nt-widget-note"') == 1  # the saved widget: needs a kernel to move
    assert body.count('class="nt-widget-missing"') == 1  # the unsaved one: said, not hidden
    assert body.count('href="../index.html#run-the-book-yourself"') == 2


def test_an_output_folder_that_is_not_a_site_is_never_replaced(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert build.main(["--out", str(tmp_path)]) == 2
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert "not a site built before" in capsys.readouterr().err
