"""The built website in a real browser (``make site-check``; ``make test`` runs it where Chromium is).

Crawls the whole site from its landing page, offline, and fails on anything broken (see sitecheck.py
for what is checked on every page); then shows that the check catches breakage: one image removed,
MathJax pointed back at a CDN, the widget renderer missing, a dead #fragment.

    SITE_DIR=site CHROMIUM=/usr/bin/chromium python -m pytest tests/site/check_site.py -s
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from sitecheck import CHROMIUM, crawl

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("SITE_DIR", ROOT / "site"))
BROWSER = os.environ.get("CHROMIUM", CHROMIUM)


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no site at {SITE}: build it with `make site`")
    return SITE


@pytest.fixture(scope="module")
def report(site):
    import pytest_socket

    # set up before the per-test fixture of conftest.py: restrict Python to 127.0.0.1 here too
    pytest_socket.socket_allow_hosts(["127.0.0.1"], allow_unix_socket=True)
    return crawl(site, chromium=BROWSER)


def test_every_page_is_clean(report):
    print("\nsite check:", report.summary())
    assert report.failures == [], "\n".join(report.failures)


def test_the_crawl_saw_the_whole_book(site, report):
    """Every HTML page of the site is reachable from the landing page, and has content to check."""
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert set(report.pages) == pages, f"not reachable from index.html: {pages - set(report.pages)}"
    notebooks = list((site / "notebooks").rglob("*.html"))  # chapters and solutions
    assert len(notebooks) >= 20
    assert report.images > len(notebooks) and report.formulas > 0 and report.widgets > 0
    assert report.kernel_notes == report.widgets  # each widget says it needs a kernel to move
    assert any("05_logits_and_softmax" in href for href in report.search_pages), report.search_pages


def test_no_page_names_another_host_for_what_it_loads(site):
    """No <script>, <link>, <img> or <iframe> in any page points at another host (a CDN)."""
    remote = re.compile(
        r'<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)="(?:https?:)?//', re.I
    )
    offenders = [
        p.relative_to(site).as_posix() for p in site.rglob("*.html") if remote.search(p.read_text())
    ]
    assert offenders == []


@pytest.fixture
def broken(site, tmp_path) -> Path:
    """A copy of the site to break."""
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    return copy


def _one_page(site: Path, page: str) -> list[str]:
    return crawl(site, start=page, max_pages=1, search=None, chromium=BROWSER).failures


def _widget_page(site: Path) -> str:
    for page in sorted(site.glob("notebooks/*.html")):
        if "widget-state+json" in page.read_text():
            return page.relative_to(site).as_posix()
    pytest.skip("no page with a saved widget")


def test_a_removed_image_is_caught(broken):
    html = (broken / "index.html").read_text()
    image = re.search(r'<img [^>]*src="(_images/[^"]+)"', html).group(1)
    (broken / image).unlink()
    failures = _one_page(broken, "index.html")
    assert any("image not loaded" in f for f in failures), failures


def test_mathjax_from_a_cdn_is_caught(broken):
    page = broken / "notebooks" / "05_logits_and_softmax.html"
    html = page.read_text()
    cdn = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
    html, n = re.subn(r'src="[./]*_static/mathjax/tex-chtml\.js[^"]*"', f'src="{cdn}"', html)
    assert n == 1
    page.write_text(html)
    failures = _one_page(broken, page.relative_to(broken).as_posix())
    assert any("request to another host blocked" in f and cdn in f for f in failures), failures
    assert any("formulas not typeset" in f for f in failures), failures


def test_a_missing_widget_renderer_is_caught(broken):
    page = _widget_page(broken)
    (broken / "_static" / "widgets" / "embed.js").unlink()
    failures = _one_page(broken, page)
    assert any("HTTP 404" in f and "embed.js" in f for f in failures), failures
    assert any("not rendered" in f for f in failures), failures


def test_a_dead_fragment_is_caught(broken):
    page = broken / "index.html"
    html = page.read_text()
    page.write_text(html.replace("</body>", '<a href="index.html#no-such-part">x</a></body>', 1))
    failures = _one_page(broken, "index.html")
    assert any("no element with id 'no-such-part'" in f for f in failures), failures
