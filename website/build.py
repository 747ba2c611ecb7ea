"""Build the book as an offline static website (``make site``).

    python website/build.py [--notebooks notebooks] [--out site] [--screenshots figures/widgets]

Stages website/book (the Jupyter Book config and the landing, playground, solutions and appendix
pages) with the executed notebooks (never re-executed), the figures, the model card and the
benchmark results (as they are in the repository), and the JavaScript the pages need from
website/node_modules (installed by ``npm ci``: only the parts of MathJax and of the widget renderer
that the pages use) and website/js, writes the table of contents from the notebooks it finds, runs
Jupyter Book, and prints the build time and the site's size. Nothing on the built site is fetched from another host.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
WEBSITE = ROOT / "website"
NODE = WEBSITE / "node_modules"
STAGE = ROOT / ".site-build"

# the npm packages the pages' JavaScript comes from (see vendor())
MATHJAX = NODE / "mathjax" / "es5"
WIDGETS = NODE / "@jupyter-widgets" / "html-manager" / "dist"
GALLERY_MARK = "<!-- nt-site:widget-gallery -->"


def notebook_title(path: Path) -> str:
    """The first heading of a notebook's first markdown cell (its page title)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise ValueError(f"{path}: no '# title' line in any markdown cell; a page needs a title")


def write_toc(stage: Path, chapters: list[str], solutions: list[str]) -> None:
    """_toc.yml: the landing page, the playground, one chapter per notebook, the solutions, the
    appendix."""
    lines = ["format: jb-book", "root: index", "parts:", "  - caption: Try it", "    chapters:"]
    lines += ["      - file: playground", "  - caption: The book", "    chapters:"]
    lines += [f"      - file: notebooks/{name}" for name in chapters]
    lines += ["  - caption: Solutions", "    chapters:", "      - file: solutions"]
    if solutions:
        lines += ["        sections:"]
        lines += [f"          - file: notebooks/solutions/{name}" for name in solutions]
    lines += [
        "  - caption: Appendix",
        "    chapters:",
        "      - file: appendix",
        "        sections:",
        "          - file: appendix/model_card",
        "          - file: appendix/benchmark_results",
    ]
    (stage / "_toc.yml").write_text("\n".join(lines) + "\n")


def widget_gallery(shots: list[Path], chapters: list[str]) -> str:
    """A grid of the widgets' first views (figures/widgets/NN_name.png, from make screenshots; the
    NN_name-control.png shots after a control moved are left out), each linked to its chapter."""
    cards = []
    for shot in shots:
        number, _, name = shot.stem.partition("_")
        chapter = next((c for c in chapters if c.startswith(f"{number}_")), None)
        if "-" in shot.stem or chapter is None:
            continue
        cards.append(
            f":::{{grid-item-card}} {number} · the {name.replace('_', ' ')} widget\n"
            f":link: notebooks/{chapter}\n:link-type: doc\n:img-bottom: figures/widgets/{shot.name}\n"
            f":img-alt: screenshot of the {name.replace('_', ' ')} widget\n:::\n"
        )
    if not cards:
        return "(No widget screenshots yet: `make screenshots` takes them.)"
    return "::::{grid} 1 2 2 2\n:gutter: 2\n\n" + "\n".join(cards) + "::::\n"


def copy(src: Path, dst: Path) -> None:
    if not src.exists():
        raise FileNotFoundError(f"{src} is missing (run `npm ci --prefix website` first?)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)


def vendor(static: Path) -> None:
    """Copy the JavaScript and fonts the pages load into the folder served as _static/."""
    copy(MATHJAX / "tex-chtml.js", static / "mathjax" / "tex-chtml.js")
    fonts = MATHJAX / "output" / "chtml" / "fonts" / "woff-v2"
    copy(fonts, static / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2")
    copy(WIDGETS / "embed.js", static / "widgets" / "embed.js")
    copy(WIDGETS / "embed.js.LICENSE.txt", static / "widgets" / "embed.js.LICENSE.txt")
    # Font Awesome: every browser that runs embed.js reads woff2, the first format its CSS offers
    for font in sorted(WIDGETS.glob("*.woff2")):
        copy(font, static / "widgets" / font.name)
    copy(WEBSITE / "js" / "nt-widgets.js", static / "widgets" / "nt-widgets.js")
    copy(WEBSITE / "js" / "nt-site.css", static / "nt-site.css")
    for name in ("nt-live.js", "nt-live.css"):  # the playground and the live widgets' drawing
        copy(WEBSITE / "js" / name, static / name)
    from live import vendor_live  # website/live.py (beside this script)

    vendor_live(static / "live")  # the book model in the page: _static/live/nt-model.js


def stage_book(notebooks: Path, screenshots: Path, stage: Path) -> tuple[int, int]:
    """Assemble the book's sources in ``stage``; returns (chapters, solutions)."""
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(WEBSITE / "book", stage)
    copy(WEBSITE / "ext", stage / "_ext")
    chapters = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    solutions = sorted((notebooks / "solutions").glob("[0-9][0-9]_*.ipynb"))
    if not chapters:
        raise ValueError(f"{notebooks}: no notebooks named NN_*.ipynb to build")
    for path in chapters:
        notebook_title(path)
        copy(path, stage / "notebooks" / path.name)
    for path in solutions:
        notebook_title(path)
        copy(path, stage / "notebooks" / "solutions" / path.name)
    write_toc(stage, [p.stem for p in chapters], [p.stem for p in solutions])
    copy(
        ROOT / "src" / "nexttoken" / "assets" / "MODEL_CARD.md",
        stage / "appendix" / "model_card.md",
    )
    copy(ROOT / "benchmarks" / "RESULTS.md", stage / "appendix" / "benchmark_results.md")
    copy(ROOT / "figures" / "pipeline.png", stage / "figures" / "pipeline.png")
    shots = sorted(screenshots.glob("*.png"))
    for shot in shots:
        copy(shot, stage / "figures" / "widgets" / shot.name)
    index = stage / "index.md"
    text = index.read_text()
    if GALLERY_MARK not in text:
        raise ValueError(f"{index}: the marker {GALLERY_MARK} is missing")
    index.write_text(text.replace(GALLERY_MARK, widget_gallery(shots, [p.stem for p in chapters])))
    vendor(stage / "_vendor")
    return len(chapters), len(solutions)


def prune(site: Path) -> None:
    """Remove what no page loads: source maps (only a developer's tools ask for them), the theme's
    message catalogs (used while building, never by the browser) and its template macros."""
    for path in [*site.rglob("*.map"), *site.glob("_static/*macros.html")]:
        path.unlink()
    shutil.rmtree(site / "_static" / "locales", ignore_errors=True)


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    parser.add_argument("--out", type=Path, default=ROOT / "site")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "figures" / "widgets")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    start = time.perf_counter()
    try:
        if out.exists() and any(out.iterdir()) and not (out / ".buildinfo").exists():
            raise ValueError(f"{out} exists and is not a site built before: not replacing it")
        shutil.rmtree(STAGE, ignore_errors=True)  # a clean build every time: nothing stale survives
        n_chapters, n_solutions = stage_book(
            args.notebooks.resolve(), args.screenshots.resolve(), STAGE / "src"
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"make site: {err}", file=sys.stderr)
        return 2
    jb = Path(sys.executable).with_name("jupyter-book")
    env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1")
    cmd = [str(jb), "build", str(STAGE / "src"), "--path-output", str(STAGE), "--builder", "html"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if re.search(r"WARNING|ERROR", line)]
    if proc.returncode != 0:
        print(log, file=sys.stderr)
        print(f"jupyter-book failed with exit status {proc.returncode}", file=sys.stderr)
        return proc.returncode
    for line in warnings:
        print(line, file=sys.stderr)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(STAGE / "_build" / "html", out)
    prune(out)
    seconds = time.perf_counter() - start
    pages = len(list(out.rglob("*.html")))
    print(
        f"site: {out} ({n_chapters} chapters, {n_solutions} solutions, {pages} HTML files), "
        f"built in {seconds:.1f} s, {size_of(out) / 1e6:.1f} MB "
        f"(MathJax {size_of(out / '_static' / 'mathjax') / 1e6:.1f} MB, "
        f"widget renderer {size_of(out / '_static' / 'widgets') / 1e6:.1f} MB, "
        f"live model {size_of(out / '_static' / 'live') / 1e6:.1f} MB), "
        f"{len(warnings)} build warning(s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
