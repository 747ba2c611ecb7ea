"""Crawl the built website in Chromium, offline, and report everything that is broken.

The site is served on 127.0.0.1 (a port of its own); every request to any other host is aborted and
counted as a failure, and Chromium cannot resolve any other host at all. From the start page every
internal HTML page reachable by links is visited; on each one:

- no request fails (aborted, network error or HTTP status >= 400) and no JS error is raised;
- every ``<img>`` has loaded (``naturalWidth > 0``), and the page fits a phone's width (the crawl
  runs on a 390 x 844 screen: nothing scrolls sideways but code blocks and wide tables);
- every formula is typeset by MathJax (each Sphinx ``.math`` element holds an ``mjx-container``)
  and no raw TeX (``$$``, ``\\(``, ``\\[``, ``\\begin{``) is left in the page's text;
- every saved widget (a ``widget-view+json`` script) is rendered by the widget manager, shows no
  "Error displaying widget", and its saved picture (a ``data:image/png``, where the saved state
  holds one) has loaded;
- then every internal link (``<a href>`` and ``<link href>``: icons, style sheets) resolves (pages
  visited, other files fetched) and every ``#fragment`` names an element on its target page.

``crawl(site_dir)`` returns a ``Report``; ``Report.failures`` is empty when all is well.
"""

from __future__ import annotations

import functools
import http.server
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

CHROMIUM = "/usr/bin/chromium"
VIEW_TYPE = "application/vnd.jupyter.widget-view+json"
STATE_TYPE = "application/vnd.jupyter.widget-state+json"
PHONE = (390, 844)  # the crawl's screen, in CSS pixels: a phone held upright

# Evaluated in each page once it has loaded, MathJax has finished and the widgets have rendered.
PAGE_FACTS_JS = r"""
() => {
  const skip = new Set(["SCRIPT", "STYLE", "PRE", "CODE", "TEXTAREA", "MJX-CONTAINER", "KBD", "SAMP"]);
  const rawTex = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const pattern = /\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{/;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    let el = node.parentElement, skipped = false;
    for (; el; el = el.parentElement) {
      if (skip.has(el.tagName) || el.classList.contains("highlight")) { skipped = true; break; }
    }
    if (!skipped && pattern.test(node.textContent)) rawTex.push(node.textContent.trim().slice(0, 80));
  }
  const formulas = [...document.querySelectorAll(".math")];
  const views = [...document.querySelectorAll('script[type="__VIEW__"]')].map((s) => {
    const area = s.previousElementSibling;
    const rendered = !!(area && area.classList.contains("widget-subarea") &&
                        area.querySelector(".jupyter-widgets"));
    const imgs = area ? [...area.querySelectorAll("img")] : [];
    return {
      model_id: JSON.parse(s.textContent).model_id,
      rendered,
      error: !!(area && /Error displaying widget|Loading widget/.test(area.textContent)),
      pictures: imgs.filter((i) => i.src.startsWith("data:image/png") && i.naturalWidth > 0).length,
    };
  });
  const state = document.querySelector('script[type="__STATE__"]');
  return {
    images: [...document.images].map((i) => ({src: i.currentSrc || i.src,
                                                 ok: i.complete && i.naturalWidth > 0})),
    formulas: formulas.length,
    typeset: formulas.filter((f) => f.querySelector("mjx-container")).length,
    rawTex,
    links: [...document.querySelectorAll("a[href], link[href]")].map((a) => a.href),
    ids: [...document.querySelectorAll("[id]")].map((e) => e.id)
           .concat([...document.querySelectorAll("a[name]")].map((a) => a.name)),
    views,
    savedModels: state ? Object.keys(JSON.parse(state.textContent).state || {}) : [],
    savedPictures: !!state && state.textContent.includes("image/png"),
    kernelNotes: document.querySelectorAll("p.nt-widget-note a[href]").length,
    width: document.documentElement.scrollWidth,
  };
}
""".replace("__VIEW__", VIEW_TYPE).replace("__STATE__", STATE_TYPE)

# Resolves once MathJax 3 has typeset the page (or at once on a page without MathJax).
MATHJAX_DONE_JS = """
() => (window.MathJax && MathJax.startup && MathJax.startup.promise)
  ? MathJax.startup.promise.then(() => true) : true
"""

# True once every widget view whose model was saved has been rendered (or has failed visibly).
WIDGETS_DONE_JS = """
() => {
  const views = document.querySelectorAll('script[type="__VIEW__"]');
  if (!views.length) return true;
  const state = document.querySelector('script[type="__STATE__"]');
  if (!state) return true;
  return [...views].every((s) => {
    const area = s.previousElementSibling;
    return area && area.classList.contains("widget-subarea") && area.children.length &&
      [...area.querySelectorAll("img")].every((i) => i.complete);
  });
}
""".replace("__VIEW__", VIEW_TYPE).replace("__STATE__", STATE_TYPE)


@dataclass
class Report:
    """What the crawl saw; ``failures`` lists every broken thing as 'page: what'."""

    pages: list[str] = field(default_factory=list)
    images: int = 0
    formulas: int = 0
    internal_links: int = 0
    fragments: int = 0
    external_links: int = 0
    widgets: int = 0
    kernel_notes: int = 0
    requests: int = 0
    search_hits: int = -1
    search_pages: list[str] = field(default_factory=list)
    requested: set[str] = field(default_factory=set)  # site paths the browser asked for
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.pages)} pages, {self.requests} requests, {self.images} images, "
            f"{self.formulas} formulas, {self.internal_links} internal links "
            f"({self.fragments} with a #fragment), {self.external_links} external links "
            f"(not followed), {self.widgets} widgets, search 'softmax': {self.search_hits} "
            f"results; {len(self.failures)} failures"
        )


class _StaticHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files as a static host does: no directory listings, no log lines."""

    def list_directory(self, path):
        self.send_error(404, "No directory listings on a static host")

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A browser that closes a connection early (a page left mid-load) is not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_StaticHandler, directory=str(site))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _is_page(url: str) -> bool:
    path = urlsplit(url).path
    return path.endswith(".html") or path.endswith("/")


def crawl(
    site: Path,
    start: str = "index.html",
    max_pages: int | None = None,
    search: str | None = "softmax",
    chromium: str = CHROMIUM,
    timeout_ms: int = 20_000,
    viewport: tuple[int, int] = PHONE,
) -> Report:
    """Visit every page reachable from ``start`` (at most ``max_pages``) and check it; see module doc."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    site = Path(site)
    if not (site / start).is_file():
        raise FileNotFoundError(f"{site / start} does not exist: build the site first (make site)")
    report = Report()
    with serve(site) as base, sync_playwright() as p:
        origin = urlsplit(base).netloc
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            # no host but the site's resolves, whatever a page asks for
            args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
        )
        context = browser.new_context(
            service_workers="block", viewport={"width": viewport[0], "height": viewport[1]}
        )
        current = {"page": start}

        def fail(what: str) -> None:
            report.failures.append(f"{current['page']}: {what}")

        def route(r):
            if r.request.url.startswith("data:") or urlsplit(r.request.url).netloc == origin:
                r.continue_()
            else:
                fail(f"request to another host blocked: {r.request.url}")
                r.abort("blockedbyclient")

        context.route("**/*", route)
        page = context.new_page()
        page.set_default_timeout(timeout_ms)

        def on_request(req):
            report.requests += 1
            if urlsplit(req.url).netloc == origin:
                report.requested.add(urlsplit(req.url).path.lstrip("/"))

        def on_failed(req):
            if urlsplit(req.url).netloc == origin:  # other hosts are reported by route()
                fail(f"request failed: {req.url} ({req.failure})")

        def on_response(resp):
            if resp.status >= 400:
                fail(f"HTTP {resp.status}: {resp.url}")

        page.on("request", on_request)
        page.on("requestfailed", on_failed)
        page.on("response", on_response)
        page.on("pageerror", lambda err: fail(f"JS error: {err}"))
        page.on(
            "console",
            lambda msg: fail(f"console error: {msg.text}") if msg.type == "error" else None,
        )

        queue = [urljoin(base, start)]
        seen = set(queue)
        ids: dict[str, set[str]] = {}
        links: list[tuple[str, str]] = []  # (page it is on, absolute URL)
        while queue and (max_pages is None or len(report.pages) < max_pages):
            url = queue.pop(0)
            name = url[len(base) :]
            current["page"] = name
            report.pages.append(name)
            try:
                page.goto(url, wait_until="load")
                page.wait_for_load_state("networkidle")
                page.evaluate(MATHJAX_DONE_JS)
                page.wait_for_function(WIDGETS_DONE_JS)
            except PlaywrightError as err:
                fail(f"page did not finish loading: {str(err).splitlines()[0]}")
            facts = page.evaluate(PAGE_FACTS_JS)
            if facts["width"] > viewport[0]:
                fail(f"page wider than the screen: {facts['width']} px > {viewport[0]} px")
            for img in facts["images"]:
                report.images += 1
                if not img["ok"]:
                    fail(f"image not loaded: {img['src'][:100]}")
            report.formulas += facts["formulas"]
            if facts["typeset"] != facts["formulas"]:
                fail(
                    f"{facts['formulas'] - facts['typeset']} of {facts['formulas']} formulas not typeset"
                )
            for text in facts["rawTex"]:
                fail(f"raw TeX left in the text: {text!r}")
            saved = set(facts["savedModels"])
            for view in facts["views"]:
                report.widgets += 1
                if view["model_id"] not in saved:
                    fail(f"widget {view['model_id']} has no saved state: the page cannot show it")
                elif not view["rendered"] or view["error"]:
                    fail(f"widget {view['model_id']} not rendered")
                elif view["pictures"] == 0 and facts["savedPictures"]:
                    fail(f"widget {view['model_id']} shows no saved picture")
            report.kernel_notes += facts["kernelNotes"]
            if facts["kernelNotes"] < sum(v["model_id"] in saved for v in facts["views"]):
                fail("a widget without the note that moving its controls needs a running kernel")
            ids[url] = set(facts["ids"])
            for link in facts["links"]:
                target, _ = urldefrag(link)
                if urlsplit(link).netloc != origin:
                    if urlsplit(link).scheme in ("http", "https"):
                        report.external_links += 1
                    continue
                links.append((name, link))
                if _is_page(target) and target not in seen:
                    seen.add(target)
                    queue.append(target)

        # every internal link resolves, every fragment names an element of its target page
        status: dict[str, int] = {}
        for name, link in links:
            current["page"] = name
            target, fragment = urldefrag(link)
            report.internal_links += 1
            if target not in ids:
                if target not in status:
                    status[target] = context.request.get(target).status
                if status[target] != 200:
                    fail(f"link to {target[len(base) :]} answers HTTP {status[target]}")
                    continue
            if fragment:
                report.fragments += 1
                if target in ids and fragment not in ids[target]:
                    fail(f"link {link[len(base) :]}: no element with id {fragment!r}")
                elif target not in ids and _is_page(target):
                    fail(f"link {link[len(base) :]}: page not crawled, fragment not checked")

        if search is not None:
            current["page"] = f"search.html?q={search}"
            page.goto(urljoin(base, f"search.html?q={search}"), wait_until="load")
            try:
                # results are listed one by one; the summary is written once the last is in
                page.wait_for_function(
                    "() => !!document.querySelector('#search-results .search-summary')?.innerText",
                    timeout=timeout_ms,
                )
            except PlaywrightError:
                pass
            results = page.locator("#search-results ul.search li a")
            report.search_hits = page.locator("#search-results ul.search li").count()
            report.search_pages = [
                results.nth(i).get_attribute("href") for i in range(results.count())
            ]
            if report.search_hits == 0:
                fail(f"search for {search!r} found nothing")
        browser.close()
    return report
