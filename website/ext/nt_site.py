"""Local Sphinx extension of the book's website (loaded from website/ext by Jupyter Book).

Two fixes on every page, at ``html-page-context``:

- drop duplicate ``<script>`` entries (Sphinx 7.4 registers sphinx-thebe's inline script twice,
  filename ``None`` and ``""``, which raises "Identifier 'THEBE_JS_URL' has already been declared"),
  and sphinx-thebe's files altogether: the launch buttons are off, and its script names a CDN;
- after each saved widget, say that moving a slider needs a running kernel, with a link to how to
  run the book; a widget whose state was not saved in the notebook gets a visible warning instead
  (and a build warning), since it would otherwise show nothing at all.

And the live book: after a saved widget over the book model (the attention map, temperature,
sampling, the loop: ``LIVE_KINDS``) it adds a live version, a ``<div class="nt-live">`` that
website/js/nt-live.js draws with the book model running in the page, with the same controls and
starting values: read at build time from the notebook (the saved widget state, the string the
widget's input is computed from, the call's keywords) and the package's defaults (``live_widgets``).
Those pages and the playground (``playground``) get the model's runtime and nt-live.js/.css.
"""

from __future__ import annotations

import ast
import html
import importlib.util
import json
import re
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

STATE_TYPE = "application/vnd.jupyter.widget-state+json"
VIEW_TYPE = "application/vnd.jupyter.widget-view+json"
VIEW_RE = re.compile(
    r'<script type="application/vnd\.jupyter\.widget-view\+json">(?P<json>.*?)</script>', re.S
)
RUN_ANCHOR = "run-the-book-yourself"


def _is_thebe(asset) -> bool:
    name = str(getattr(asset, "filename", asset) or "")
    return "thebe" in name or "THEBE_JS_URL" in str(
        getattr(asset, "attributes", {}).get("body", "")
    )


def _dedupe_scripts(context: dict) -> None:
    seen = set()
    kept = []
    for js in context.get("script_files", []):
        if _is_thebe(js):  # launch buttons are off: its scripts only name a CDN
            continue
        key = (
            getattr(js, "filename", js) or "",
            tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())),
        )
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept
    context["css_files"] = [css for css in context.get("css_files", []) if not _is_thebe(css)]


def _saved_model_ids(context: dict) -> set[str]:
    ids: set[str] = set()
    for js in context.get("script_files", []):
        attributes = getattr(js, "attributes", {})
        if attributes.get("type") == STATE_TYPE:
            ids.update(json.loads(attributes["body"]).get("state", {}))
    return ids


def _annotate_widgets(
    app: Sphinx, pagename: str, context: dict, live: dict[str, dict] | None = None
) -> None:
    """After each saved widget, the note on what moves without a kernel (and its live version, from
    ``live``: the specs of :func:`live_widgets` by model id)."""
    body = context.get("body", "")
    if "widget-view+json" not in body:
        return
    live = live or {}
    saved = _saved_model_ids(context)
    run_link = f"{context['pathto'](app.config.root_doc)}#{RUN_ANCHOR}"
    missing = []

    def note(match: re.Match) -> str:
        model_id = json.loads(match.group("json")).get("model_id")
        if model_id in saved and model_id in live:
            text = (
                '<p class="nt-widget-note">This is the widget\'s saved first view: its picture is '
                "redrawn only by a running Python kernel "
                f'(<a href="{run_link}">run the book yourself</a>). The live version below runs '
                "the book model in your browser, with the same controls.</p>"
            ) + live_div(live[model_id])
        elif model_id in saved:
            text = (
                '<p class="nt-widget-note">This is the widget\'s saved first view. Its controls '
                "move, but the picture is redrawn only by a running Python kernel: "
                f'<a href="{run_link}">run the book yourself</a> to play with it.</p>'
            )
        else:
            missing.append(model_id)
            text = (
                '<p class="nt-widget-missing">This widget was not saved with the notebook, so '
                f'it cannot be shown here: <a href="{run_link}">run the book yourself</a> to see '
                "it.</p>"
            )
        return match.group(0) + text

    context["body"] = VIEW_RE.sub(note, body)
    if missing:
        logger.warning(
            "%s: %d widget(s) without saved state (execute the notebook with the widget state "
            "saved): %s",
            pagename,
            len(missing),
            ", ".join(missing),
        )


# ---- live widgets: the notebook's widget, driven in the page by the in-browser book model ----------

# the package's widget function -> the kind of live widget website/js/nt-live.js draws for it
LIVE_KINDS = {
    "attention_widget": "attention",
    "temperature_widget": "temperature",
    "sampling_widget": "sampling",
    "next_token_widget": "loop",
}
# (package file, function) whose keyword defaults a live widget also needs, per kind
LIVE_DEFAULTS = {
    "attention": [],
    "temperature": [("widgets/logits.py", "temperature_widget")],
    "sampling": [
        ("widgets/sampling.py", "sampling_widget"),
        ("viz/sampling.py", "distribution_text_figure"),
    ],
    "loop": [("widgets/loop.py", "next_token_widget"), ("loop.py", "next_step")],
}
CONTROL_MODELS = {"IntSliderModel", "FloatSliderModel", "ButtonModel"}
LIVE_JS, LIVE_CSS = "nt-live.js", "nt-live.css"  # under _static/ (website/build.py copies them)
RUNTIME_JS = "live/nt-model.js"  # the book model in the page (website/live.py): window.nexttoken


def _package_dir() -> Path:
    """The nexttoken package's source folder, found without importing it (and torch)."""
    spec = importlib.util.find_spec("nexttoken")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the nexttoken package is not installed: pip install -e .")
    return Path(next(iter(spec.submodule_search_locations)))


def function_defaults(path: Path, name: str) -> dict:
    """The literal keyword defaults of function ``name`` in the Python file ``path``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            args = node.args
            pairs = list(
                zip(args.args[len(args.args) - len(args.defaults) :], args.defaults, strict=True)
            )
            pairs += [
                (a, d)
                for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                if d is not None
            ]
            return {a.arg: ast.literal_eval(d) for a, d in pairs}
    raise ValueError(f"{path}: no function {name}()")


def _statements(source: str) -> list[ast.stmt]:
    try:
        return ast.parse(source).body
    except SyntaxError:  # a cell with IPython syntax: it defines nothing the widgets read
        return []


def _resolve_text(node: ast.AST, names: dict[str, ast.AST], seen: frozenset = frozenset()):
    """The string constant an expression is computed from (``ids = enc.encode(line)`` -> the text
    assigned to ``line``), following the names it reads, left to right; None if there is none."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    reads = [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in names]
    for name in dict.fromkeys(reads):
        if name not in seen:
            text = _resolve_text(names[name], names, seen | {name})
            if text is not None:
                return text
    return None


def _widget_call(cell: dict) -> ast.Call | None:
    for stmt in _statements(cell["source"]):
        for node in ast.walk(stmt):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in LIVE_KINDS
            ):
                return node
    return None


def _controls(state: dict, model_id: str) -> list[dict]:
    """The sliders and buttons under the saved widget ``model_id``, in the order they show, each as
    {name, type, description, value, min, max, step}; ``name`` is from its ``nt-<kind>-<name>``
    CSS class."""
    found = []

    def visit(mid: str) -> None:
        model = state.get(mid, {})
        s = model.get("state", {})
        if model.get("model_name") in CONTROL_MODELS:
            classes = [c for c in s.get("_dom_classes", []) if c.count("-") >= 2]
            item = {
                "name": classes[0].split("-", 2)[2] if classes else s.get("description", ""),
                "type": model["model_name"].removesuffix("Model").lower(),
            }
            item.update({k: s[k] for k in ("description", "value", "min", "max", "step") if k in s})
            found.append(item)
        for child in s.get("children", []):
            visit(child.removeprefix("IPY_MODEL_"))

    visit(model_id)
    return found


def live_widgets(notebook: dict, package: Path) -> dict[str, dict]:
    """The live widgets of a notebook (its JSON), by the model id of the saved widget each goes with.

    Each is ``{"kind", "prompt", "controls", "options"}``: the prompt the widget's cell computes its
    input from (the string literal its arguments are computed from), the sliders and buttons with
    their saved starting values, and the keyword values the widget is called with (the call's
    literals over the package functions' defaults, see ``LIVE_DEFAULTS``).
    """
    state = notebook.get("metadata", {}).get("widgets", {}).get(STATE_TYPE, {}).get("state", {})
    names: dict[str, ast.AST] = {}
    found = {}
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        if isinstance(cell["source"], list):
            cell = dict(cell, source="".join(cell["source"]))
        call = _widget_call(cell)
        if call is not None:
            views = [
                o["data"][VIEW_TYPE]["model_id"]
                for o in cell.get("outputs", [])
                if VIEW_TYPE in o.get("data", {})
            ]
            kind = LIVE_KINDS[call.func.id]
            options = {}
            for file, function in LIVE_DEFAULTS[kind]:
                options.update(function_defaults(package / file, function))
            for kw in call.keywords:
                if kw.arg is not None:
                    options[kw.arg] = ast.literal_eval(kw.value)
            prompt = next(
                (t for a in call.args if (t := _resolve_text(a, names)) is not None), None
            )
            if prompt is None:
                raise ValueError(f"{call.func.id}(): no string literal its arguments come from")
            for model_id in views:
                found[model_id] = {
                    "kind": kind,
                    "prompt": prompt,
                    "controls": _controls(state, model_id),
                    "options": options,
                }
        assigns = [
            node
            for stmt in _statements(cell["source"])
            for node in ast.walk(stmt)
            if isinstance(node, ast.Assign)  # also inside `with` and `for` blocks
        ]
        for node in sorted(assigns, key=lambda n: (n.lineno, n.col_offset)):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node.value
    return found


def model_config(package: Path) -> dict:
    """What the live widgets need of the book model's config (the shipped book_model.json)."""
    config = json.loads((package / "assets" / "book_model.json").read_text())["config"]
    return {k: config[k] for k in ("vocab_size", "block_size", "n_layer", "n_head")}


def live_div(spec: dict) -> str:
    """The element nt-live.js turns into a live widget (``spec``: kind, prompt, controls, ...)."""
    data = html.escape(json.dumps(spec, sort_keys=True), quote=True)
    return f'<div class="nt-live" data-nt-live="{data}"></div>'


# a live widget written in a page's source (the playground): its JSON gets the model's config
SOURCE_LIVE_RE = re.compile(r"<div class=\"nt-live\" data-nt-live='(?P<json>[^']*)'></div>")


def _live_page(app: Sphinx, pagename: str, context: dict) -> dict[str, dict]:
    """The live widgets of this page by saved model id (after filling those its source holds); adds
    the model's runtime and nt-live.js/.css to the page when it has any."""
    body = context.get("body", "")
    env = getattr(app, "env", None)  # None: a stand-in app with no sources (the unit tests')
    source = Path(env.doc2path(pagename)) if env is not None else None
    live = {}
    if "widget-view+json" in body and source is not None and source.suffix == ".ipynb":
        live = live_widgets(json.loads(source.read_text()), _package_dir())
    if not live and not SOURCE_LIVE_RE.search(body):
        return {}
    config = model_config(_package_dir())
    for spec in live.values():
        spec["config"] = config
    context["body"] = SOURCE_LIVE_RE.sub(
        lambda m: live_div({**json.loads(html.unescape(m.group("json"))), "config": config}), body
    )
    # deferred scripts run in order: nt-live.js after the runtime has defined window.nexttoken
    app.add_js_file(RUNTIME_JS, loading_method="defer")
    app.add_js_file(LIVE_JS, loading_method="defer")
    app.add_css_file(LIVE_CSS)
    return live


def _on_page(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    live = _live_page(app, pagename, context)
    _dedupe_scripts(context)
    _annotate_widgets(app, pagename, context, live)


def setup(app: Sphinx) -> dict:
    app.connect("html-page-context", _on_page, priority=900)  # after myst-nb adds its scripts
    app.add_css_file("nt-site.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
