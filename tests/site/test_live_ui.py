"""The live book on the website: the playground and the live widgets of chapters 03, 05, 06, 07.

Two parts:

- what the build reads from the notebooks for the live widgets (website/ext/nt_site.py's
  ``live_widgets``: the controls, their starting values, the prompt): plain unit tests;
- the built site in Chromium, offline (every other host blocked), driven by the keyboard at a phone's
  width (390 px) and at a desktop's: the playground's chips, bars and heatmap follow the prompt and
  the controls, "generate 20" appends 20 tokens, bad input shows a message, each chapter's live
  widget starts on the numbers its notebook prints and responds to its controls, a page without
  WebAssembly says so, and no page logs a console error. These need a built site and run when
  SITE_DIR names it (``make site-check`` does; one page load per page, about 40 s):

    SITE_DIR=site CHROMIUM=/usr/bin/chromium python -m pytest tests/site/test_live_ui.py -q -s

With UPDATE_SCREENSHOTS=1 they also save figures/widgets/site_playground.png and site_live_05.png.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest
from sitecheck import CHROMIUM, serve

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
SHOTS = ROOT / "figures" / "widgets"
CHAPTERS = {
    "attention": "03_self_attention",
    "temperature": "05_logits_and_softmax",
    "sampling": "06_choosing_the_next_token",
    "loop": "07_the_autoregressive_loop",
}
PHONE, DESKTOP = (390, 844), (1280, 900)
HIDE_HEADER = (  # the theme's sticky bars would cover the widget in a screenshot
    ".bd-header, .bd-header-article, .skip-link { visibility: hidden !important; }"
)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


nt_site = _load("nt_site_live", ROOT / "website" / "ext" / "nt_site.py")
build = _load("website_build_live", ROOT / "website" / "build.py")


def _specs(name: str) -> list[dict]:
    notebook = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    return list(nt_site.live_widgets(notebook, nt_site._package_dir()).values())


def _printed_top10(name: str) -> list[tuple[str, str]]:
    """The notebook's printed top 10 at T = 1 (chapter 05: ``' be'  logit 6.19  prob 0.079``), as
    (token text, probability) pairs."""
    for cell in json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]:
        if "torch.topk(probs, 10)" in "".join(cell["source"]):
            text = "".join("".join(o.get("text", "")) for o in cell["outputs"])
            rows = re.findall(r"^\s*'(.*?)'\s+logit\s+\S+\s+prob\s+(\S+)$", text, re.M)
            assert len(rows) == 10, text
            return rows
    raise AssertionError(f"{name}: no cell printing the top 10")


def _visible(s: str) -> str:
    return s.replace(" ", "\u2423").replace("\n", "\u21b5").replace("\t", "\u21e5")


# ---- what the build reads from the notebooks --------------------------------------------------


def test_live_widgets_take_the_notebooks_controls_starting_values_and_prompts():
    (att,) = _specs(CHAPTERS["attention"])
    assert att["kind"] == "attention"
    assert att["prompt"] == "To be, or not to be, that is the question"
    assert [(c["name"], c["value"], c["min"], c["max"], c["step"]) for c in att["controls"]] == [
        ("layer", 0, 0, 3, 1),
        ("head", 0, 0, 3, 1),
    ]
    (temp,) = _specs(CHAPTERS["temperature"])
    assert (temp["kind"], temp["prompt"], temp["options"]["k"]) == (
        "temperature",
        "To be, or not to",
        10,
    )
    assert [(c["name"], c["value"], c["min"], c["max"], c["step"]) for c in temp["controls"]] == [
        ("temperature", 1.0, 0.1, 3.0, 0.05)
    ]
    (samp,) = _specs(CHAPTERS["sampling"])
    assert (samp["kind"], samp["prompt"]) == ("sampling", "To be, or not to")
    assert [(c["name"], c["value"], c["min"], c["max"]) for c in samp["controls"]] == [
        ("temperature", 1.0, 0.0, 2.0),
        ("top-k", 0, 0, 100),
        ("top-p", 1.0, 0.05, 1.0),
        ("seed", 0, 0, 20),
    ]
    assert (samp["options"]["max_new_tokens"], samp["options"]["n"]) == (40, 15)
    (loop,) = _specs(CHAPTERS["loop"])
    assert (loop["kind"], loop["prompt"]) == ("loop", "To be, or not to")
    assert [(c["name"], c["description"]) for c in loop["controls"]] == [
        ("next", "next token"),
        ("reset", "reset"),
    ]
    o = loop["options"]
    assert (o["temperature"], o["seed"], o["n_top"]) == (0.8, 0, 5)


def test_chapters_without_a_widget_over_the_book_model_get_no_live_widget():
    assert _specs("01_text_to_tokens") == []
    assert _specs("04_the_decoder_block") == []


def _notebook(*sources: str, view: str = "v1") -> dict:
    cells = [{"cell_type": "code", "source": s, "outputs": [], "metadata": {}} for s in sources]
    cells[-1]["outputs"] = [{"data": {nt_site.VIEW_TYPE: {"model_id": view}}}]
    return {"cells": cells, "metadata": {}}


def test_the_prompt_is_followed_through_assignments_and_the_calls_keywords_win():
    nb = _notebook(
        'prompt = "old"\nprompt = "Hark"\nwith ctx():\n    ids = enc.encode(prompt)',
        "next_token_widget(model, enc, prompt, temperature=0.3)",
    )
    spec = nt_site.live_widgets(nb, nt_site._package_dir())["v1"]
    assert spec["prompt"] == "Hark"
    assert (spec["options"]["temperature"], spec["options"]["seed"]) == (0.3, 0)
    nb = _notebook("x = load()", "temperature_widget(x, labels)")
    with pytest.raises(ValueError, match="no string literal"):
        nt_site.live_widgets(nb, nt_site._package_dir())


def test_the_playground_is_the_first_page_after_the_landing_page(tmp_path):
    build.write_toc(tmp_path, ["00_a"], [])
    toc = (tmp_path / "_toc.yml").read_text()
    assert toc.index("- file: playground") < toc.index("- file: notebooks/00_a")
    assert (ROOT / "website" / "book" / "playground.md").is_file()


# ---- the built site in Chromium ---------------------------------------------------------------

SITE = os.environ.get("SITE_DIR")
browser_only = pytest.mark.skipif(
    not SITE, reason="the live site in Chromium runs with SITE_DIR set (make site-check)"
)


@pytest.fixture(scope="module")
def browser():
    import pytest_socket
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a busy 2-core machine can be slow; a failure still fails

    pytest_socket.socket_allow_hosts(["127.0.0.1"], allow_unix_socket=True)
    site = Path(SITE)
    if not (site / "playground.html").is_file():
        pytest.fail(f"no playground at {site}: build the site with `make site`")
    with serve(site) as base, sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", CHROMIUM),
            headless=True,
            args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
        )
        # one context for every page: the model and the wasm are fetched and compiled once
        context = chromium.new_context(service_workers="block")
        yield context, base
        context.close()
        chromium.close()


class Page:
    """One page, offline, with its console errors, page errors and failed requests recorded."""

    def __init__(self, browser, name: str, size=PHONE, init_script: str | None = None):
        context, base = browser
        self.problems: list[str] = []
        origin = base.rstrip("/")

        def route(r):
            if r.request.url.startswith((origin, "data:", "blob:")):
                r.continue_()
            else:
                self.problems.append(f"request to another host: {r.request.url}")
                r.abort("blockedbyclient")

        self.page = context.new_page()
        self.page.set_viewport_size({"width": size[0], "height": size[1]})
        self.page.route("**/*", route)
        self.page.set_default_timeout(60_000)
        if init_script:
            self.page.add_init_script(init_script)
        self.page.on(
            "console",
            lambda m: (
                self.problems.append(f"console error: {m.text}") if m.type == "error" else None
            ),
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on(
            "requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}")
        )
        self.page.on(
            "response",
            lambda r: (
                self.problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None
            ),
        )
        self.page.goto(base + name, wait_until="load")

    def live(self, index: int = 0):
        root = self.page.locator("div.nt-live").nth(index)
        root.scroll_into_view_if_needed()  # a chapter's widget starts when it comes near the screen
        self.page.wait_for_function(
            "el => el.dataset.ntState === 'ready' && Number(el.dataset.ntUpdates) > 0",
            arg=root.element_handle(),
            timeout=60_000,
        )
        return root

    def idle(self, root) -> None:
        """Wait until the widget has finished redrawing (the state settles on ready)."""
        self.page.wait_for_function(
            "el => el.dataset.ntState === 'ready'", arg=root.element_handle()
        )

    def fits(self, width: int) -> None:
        scroll = self.page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"the page scrolls sideways at {width} px: {scroll} px wide"

    def close(self) -> None:
        self.page.close()
        assert self.problems == [], "\n".join(self.problems)


def _focused_class(page) -> str:
    return page.evaluate(
        "() => { const e = document.activeElement; return e.tagName.toLowerCase() + '.' + "
        "[...e.classList].filter(c => c.startsWith('nt-')).join('.'); }"
    )


@browser_only
def test_playground_by_keyboard_at_phone_and_desktop_widths(browser):
    from playwright.sync_api import expect

    p = Page(browser, "playground.html", PHONE)
    page = p.page
    root = p.live()
    chips = root.locator(".nt-chip")
    bars = root.locator("li.nt-bar")
    caption = root.locator(".nt-live-part").first.locator(".nt-caption")
    message = root.locator(".nt-live-msg")
    expect(message).to_be_hidden()

    # the first view: the prompt's tokens and the notebooks' printed top 10 at T = 1
    assert chips.count() == 6
    assert [chips.nth(i).inner_text() for i in range(6)] == [
        "To",
        "\u2423be",
        ",",
        "\u2423or",
        "\u2423not",
        "\u2423to",
    ]
    rows = [
        (b.locator(".nt-bar-label").inner_text(), b.locator(".nt-bar-value").inner_text())
        for b in bars.all()
    ]
    printed = _printed_top10(CHAPTERS["temperature"])
    assert rows == [(_visible(t), f"{p_} kept") for t, p_ in printed]

    # the focus order, by the keyboard alone
    root.locator("textarea").focus()
    order = [_focused_class(page)]
    for _ in range(12):
        page.keyboard.press("Tab")
        order.append(_focused_class(page))
    assert order == [
        "textarea.nt-live-prompt",
        "span.nt-chip",
        "input.nt-live-temperature",
        "input.nt-live-top-k",
        "input.nt-live-top-p",
        "input.nt-live-seed",
        "input.nt-live-greedy",
        "button.nt-live-next",
        "button.nt-live-generate",
        "button.nt-live-reset",
        "select.nt-live-layer",
        "select.nt-live-head",
        "canvas.nt-heatmap",
    ]

    # typing extends the chips; a focused chip shows its id; arrow keys move between chips
    root.locator("textarea").focus()
    page.keyboard.press("Control+End")
    page.keyboard.type(" be")
    expect(chips).to_have_count(7)
    page.keyboard.press("Tab")
    page.keyboard.press("End")
    last = chips.nth(6)
    expect(last).to_be_focused()
    assert last.inner_text() == "\u2423be" and last.get_attribute("title") == "id " + (
        chips.nth(1).get_attribute("data-id")
    )
    tip = page.evaluate("e => getComputedStyle(e, '::after').content", last.element_handle())
    assert tip == json.dumps(chips.nth(1).get_attribute("data-id"))  # the id, shown on focus

    # temperature and top-k by the keyboard: the kept set follows
    def field(name: str, text: str) -> None:
        root.locator(f"input.nt-live-{name}").focus()
        page.keyboard.press("Control+A")
        page.keyboard.type(text)

    field("temperature", "0.5")
    field("top-k", "3")
    expect(caption).to_contain_text("T = 0.5, top_k = 3, top_p = None: 3 of 4,096 tokens kept")
    p.idle(root)
    assert root.locator("li.nt-kept").count() == 3 and root.locator("li.nt-dropped").count() == 7

    # bad input: a visible message naming the problem, and nothing else breaks
    for name, text, says in [
        ("temperature", "-1", 'temperature must be a finite number \u2265 0 (got "-1")'),
        ("temperature", "1e999", 'temperature must be a finite number \u2265 0 (got "1e999")'),
        ("temperature", "abc", 'temperature must be a finite number \u2265 0 (got "abc")'),
        ("top-k", "2.5", "top-k must be an integer from 0 (off) to 4096"),
        ("top-p", "0", "top-p must be a number in (0, 1]"),
        ("seed", "-3", "seed must be an integer from 0"),
    ]:
        good = root.locator(f"input.nt-live-{name}").input_value()
        field(name, text)
        expect(message).to_be_visible()
        expect(message).to_contain_text(says)
        assert root.locator(f"input.nt-live-{name}").get_attribute("aria-invalid") == "true"
        field(name, good)
        expect(message).to_be_hidden()

    # "next token" (greedy, by Enter) adds one chip; "generate 20" (sampled, seeded) adds 20
    field("top-k", "0")
    field("temperature", "1")
    n = chips.count()
    root.locator("button.nt-live-next").focus()
    page.keyboard.press("Enter")
    expect(chips).to_have_count(n + 1)
    root.locator("input.nt-live-greedy").focus()
    page.keyboard.press("ArrowRight")  # the radio group: sample (seeded)
    assert root.locator("input.nt-live-sampled").is_checked()
    root.locator("button.nt-live-generate").focus()
    page.keyboard.press("Space")
    expect(chips).to_have_count(n + 21)
    p.idle(root)
    first = [c.get_attribute("data-id") for c in chips.all()]
    root.locator("button.nt-live-reset").click()
    expect(chips).to_have_count(7)
    root.locator("input.nt-live-greedy").check()  # the same clicks again
    root.locator("button.nt-live-next").click()
    expect(chips).to_have_count(7 + 1)
    root.locator("input.nt-live-sampled").check()
    root.locator("button.nt-live-generate").click()
    expect(chips).to_have_count(7 + 21)
    p.idle(root)
    assert [c.get_attribute("data-id") for c in chips.all()] == first  # the same seed, same tokens

    # the attention heatmap follows the layer, the head and the arrow keys
    att = root.locator(".nt-live-part").nth(1)
    canvas = att.locator("canvas.nt-heatmap")
    before = canvas.evaluate("c => c.toDataURL()")
    att.locator("select.nt-live-layer").focus()
    page.keyboard.press("ArrowDown")
    expect(att.locator(".nt-caption")).to_contain_text("layer 1, head 0 over 28 tokens")
    p.idle(root)
    assert canvas.evaluate("c => c.toDataURL()") != before
    canvas.focus()
    readout = att.locator(".nt-readout")
    was = readout.inner_text()
    page.keyboard.press("ArrowDown")
    expect(readout).not_to_have_text(was)
    assert "(row 1) looks at" in readout.inner_text()
    p.fits(PHONE[0])

    # the prompt: empty, longer than the context (a sliding window), longer than the page takes
    prompt = root.locator("textarea")
    prompt.fill("")
    expect(message).to_contain_text("The prompt is empty")
    prompt.fill("To be, or not to be, " * 40)
    expect(message).to_be_hidden()
    note = root.locator("#" + prompt.get_attribute("id") + "-note")
    expect(note).to_contain_text("longer than the model's context of 256 tokens")
    expect(att.locator(".nt-caption")).to_contain_text("over 256 tokens")
    prompt.fill("x" * 20001)
    expect(message).to_contain_text("the playground takes at most 20,000")
    prompt.fill("To be, or not to")
    expect(message).to_be_hidden()
    expect(chips).to_have_count(6)
    p.idle(root)

    # desktop width: still fits; the screenshot
    page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})
    p.fits(DESKTOP[0])
    if os.environ.get("UPDATE_SCREENSHOTS"):
        root.locator("button.nt-live-generate").click()
        expect(chips).to_have_count(26)
        p.idle(root)
        page.evaluate("document.activeElement.blur()")
        root.screenshot(path=SHOTS / "site_playground.png", style=HIDE_HEADER)
    p.close()


@browser_only
def test_without_webassembly_the_playground_says_so(browser):
    from playwright.sync_api import expect

    p = Page(browser, "playground.html", PHONE, init_script="delete window.WebAssembly;")
    message = p.page.locator("div.nt-live .nt-live-msg")
    expect(message).to_be_visible()
    expect(message).to_contain_text("needs WebAssembly")
    assert p.page.locator("div.nt-live").get_attribute("data-nt-state") == "error"
    p.close()


def _chapter(browser, kind: str) -> Page:
    return Page(browser, f"notebooks/{CHAPTERS[kind]}.html", PHONE)


@browser_only
def test_live_attention_map_in_chapter_03(browser):
    from playwright.sync_api import expect

    p = _chapter(browser, "attention")
    root = p.live()
    # the frozen saved view stays, the live one follows it
    assert p.page.locator(".nt-widget-note + div.nt-live").count() == 1
    canvas = root.locator("canvas.nt-heatmap")
    expect(root.locator(".nt-caption")).to_have_text("layer 0, head 0")
    before = canvas.evaluate("c => c.toDataURL()")
    root.locator("input.nt-live-layer").focus()
    p.page.keyboard.press("ArrowRight")
    expect(root.locator(".nt-caption")).to_have_text("layer 1, head 0")
    root.locator("input.nt-live-head").focus()
    p.page.keyboard.press("End")
    expect(root.locator(".nt-caption")).to_have_text("layer 1, head 3")
    p.idle(root)
    assert canvas.evaluate("c => c.toDataURL()") != before
    p.fits(PHONE[0])
    p.close()


@browser_only
def test_live_temperature_in_chapter_05_starts_on_the_printed_numbers(browser):
    from playwright.sync_api import expect

    p = _chapter(browser, "temperature")
    root = p.live()
    rows = lambda: [  # noqa: E731
        (b.locator(".nt-bar-label").inner_text(), b.locator(".nt-bar-value").inner_text())
        for b in root.locator("li.nt-bar").all()
    ]
    assert rows() == [(_visible(t), v) for t, v in _printed_top10(CHAPTERS["temperature"])]
    assert "H = " in root.locator("svg.nt-entropy").inner_html()
    slider = root.locator("input.nt-live-temperature")
    slider.focus()
    for _ in range(10):
        p.page.keyboard.press("ArrowLeft")  # 1.00 -> 0.50, by the saved step of 0.05
    expect(root.locator(".nt-caption")).to_have_text("top 10 tokens at T = 0.50")
    p.idle(root)
    cooler = rows()
    assert cooler[0][0] == rows()[0][0] and float(cooler[0][1]) > 0.079  # sharper at T < 1
    p.fits(PHONE[0])
    if os.environ.get("UPDATE_SCREENSHOTS"):
        p.page.set_viewport_size({"width": 900, "height": 900})
        p.idle(root)
        p.page.evaluate("document.activeElement.blur()")
        root.screenshot(path=SHOTS / "site_live_05.png", style=HIDE_HEADER)
    p.close()


@browser_only
def test_live_sampling_in_chapter_06_follows_top_k_and_its_seed(browser):
    from playwright.sync_api import expect

    p = _chapter(browser, "sampling")
    root = p.live()
    caption = root.locator(".nt-caption")
    text = root.locator("pre.nt-live-text")
    expect(caption).to_have_text("T = 1, top_k = None, top_p = None: 4,096 tokens possible; seed 0")
    assert root.locator("li.nt-bar").count() == 15
    assert text.inner_text().startswith("To be, or not to|")
    seed0 = text.inner_text()
    root.locator("input.nt-live-top-k").focus()
    for _ in range(3):
        p.page.keyboard.press("ArrowRight")
    expect(caption).to_have_text("T = 1, top_k = 3, top_p = None: 3 tokens possible; seed 0")
    p.idle(root)
    assert root.locator("li.nt-kept").count() == 3 and root.locator("li.nt-dropped").count() == 12
    root.locator("input.nt-live-top-k").focus()
    p.page.keyboard.press("Home")
    root.locator("input.nt-live-seed").focus()
    p.page.keyboard.press("ArrowRight")
    expect(caption).to_contain_text("4,096 tokens possible; seed 1")
    p.idle(root)
    assert text.inner_text() != seed0
    p.page.keyboard.press("ArrowLeft")
    expect(caption).to_contain_text("seed 0")
    p.idle(root)
    assert text.inner_text() == seed0  # the same seed, the same continuation
    p.fits(PHONE[0])
    p.close()


@browser_only
def test_live_loop_in_chapter_07_steps_and_resets(browser):
    from playwright.sync_api import expect

    p = _chapter(browser, "loop")
    root = p.live()
    head = root.locator(".nt-caption").first
    text = root.locator("pre.nt-live-text")
    expect(head).to_have_text("after 0 step(s):")
    expect(text).to_have_text("To be, or not to|")
    button = root.locator("button.nt-live-next")
    button.focus()
    for n in (1, 2, 3):
        p.page.keyboard.press("Enter")
        expect(head).to_have_text(f"after {n} step(s):")
    p.idle(root)
    expect(root.locator(".nt-caption").nth(1)).to_contain_text("step 3: chose")
    assert root.locator("li.nt-bar").count() == 5 and root.locator("li.nt-chosen").count() <= 1
    three = text.inner_text()
    assert three != "To be, or not to|"
    root.locator("button.nt-live-reset").click()
    expect(head).to_have_text("after 0 step(s):")
    for n in (1, 2, 3):
        button.click()
        expect(head).to_have_text(f"after {n} step(s):")
    p.idle(root)
    assert text.inner_text() == three  # the same clicks, the same text
    p.fits(PHONE[0])
    p.close()
