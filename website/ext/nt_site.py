"""Local Sphinx extension of the book's website (loaded from website/ext by Jupyter Book).

Two fixes on every page, at ``html-page-context``:

- drop duplicate ``<script>`` entries (Sphinx 7.4 registers sphinx-thebe's inline script twice,
  filename ``None`` and ``""``, which raises "Identifier 'THEBE_JS_URL' has already been declared"),
  and sphinx-thebe's files altogether: the launch buttons are off, and its script names a CDN;
- after each saved widget, say that moving a slider needs a running kernel, with a link to how to
  run the book; a widget whose state was not saved in the notebook gets a visible warning instead
  (and a build warning), since it would otherwise show nothing at all.
"""

from __future__ import annotations

import json
import re

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

STATE_TYPE = "application/vnd.jupyter.widget-state+json"
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


def _annotate_widgets(app: Sphinx, pagename: str, context: dict) -> None:
    body = context.get("body", "")
    if "widget-view+json" not in body:
        return
    saved = _saved_model_ids(context)
    run_link = f"{context['pathto'](app.config.root_doc)}#{RUN_ANCHOR}"
    missing = []

    def note(match: re.Match) -> str:
        model_id = json.loads(match.group("json")).get("model_id")
        if model_id in saved:
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


def _on_page(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    _dedupe_scripts(context)
    _annotate_widgets(app, pagename, context)


def setup(app: Sphinx) -> dict:
    app.connect("html-page-context", _on_page, priority=900)  # after myst-nb adds its scripts
    app.add_css_file("nt-site.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
