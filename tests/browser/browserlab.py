"""JupyterLab and the system's Chromium, driven from Python: the plumbing of the browser tests.

Used by ``tests/browser`` (the widget tests and ``make screenshots``); small enough for other
browser checks to import. No ``playwright install``: Playwright drives the Chromium that the
system has (Debian/Ubuntu ``apt-get install chromium``, macOS ``brew install --cask chromium``);
``CHROMIUM=/path/to/chrome`` picks another one.

    with LabServer(folder) as lab, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        page.goto(lab.url("lab/tree/03_self_attention.ipynb"))
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "find_chromium",
    "unavailable_reason",
    "launch_chromium",
    "LabServer",
    "LAB_SETTINGS",
    "open_notebook",
    "run_all_cells",
    "notebook_problems",
    "picture",
    "png_title",
    "new_page",
    "scratch_copy",
    "tree_digest",
]

CANDIDATES = (
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/snap/bin/chromium",
    "/usr/bin/google-chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)

# JupyterLab settings for a test: no news toast over the page, no autosave (the served copy stays
# as it was), every cell in the DOM (no windowing), and a steady page for screenshots.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/fileeditor-extension/plugin": {},
}


def find_chromium() -> str | None:
    """The path of a Chromium or Chrome executable: ``$CHROMIUM``, else a usual place, else None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for path in CANDIDATES:
        if Path(path).exists():
            return path
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def unavailable_reason() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -r requirements.txt)"
    if find_chromium() is None:
        return (
            "no Chromium found (Debian/Ubuntu: sudo apt-get install chromium; "
            "macOS: brew install --cask chromium; or set CHROMIUM=/path/to/chrome)"
        )
    return None


def launch_chromium(playwright, **kwargs):
    """A headless Chromium from the system, launched by Playwright (no downloaded browser)."""
    path = find_chromium()
    if path is None:
        raise RuntimeError(unavailable_reason())
    return playwright.chromium.launch(executable_path=path, headless=True, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """A JupyterLab server on 127.0.0.1, a free port and a random token, serving ``root``.

    Its settings, config, runtime and workspace folders are throwaway ones (see
    :data:`LAB_SETTINGS`), so nothing of the reader's own JupyterLab is read or written.
    ``disabled_extensions`` (e.g. ``["@jupyter-widgets/jupyterlab-manager"]``) are switched off
    through ``page_config.json``: that is how a test proves it notices a broken widget manager.
    """

    def __init__(
        self,
        root: Path,
        *,
        disabled_extensions: Iterable[str] = (),
        startup_timeout: float = 120.0,
    ):
        self.root = Path(root)
        self.disabled = list(disabled_extensions)
        self.startup_timeout = startup_timeout
        self.token = secrets.token_hex(16)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._home: tempfile.TemporaryDirectory | None = None

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{sep}token={self.token}"

    def notebook_url(self, name: str) -> str:
        """The notebook ``name`` alone in a new, empty workspace (the default workspace would
        reopen every notebook opened before on this server)."""
        return self.url(f"lab/workspaces/w{secrets.token_hex(4)}/tree/{name}")

    def _environment(self, home: Path) -> dict[str, str]:
        settings = home / "settings"
        for plugin, values in LAB_SETTINGS.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        config = home / "config"
        (config / "labconfig").mkdir(parents=True)
        if self.disabled:
            page_config = {"disabledExtensions": dict.fromkeys(self.disabled, True)}
            (config / "labconfig" / "page_config.json").write_text(json.dumps(page_config))
        env = dict(os.environ)
        env.update(
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTER_CONFIG_DIR=str(config),
            JUPYTER_DATA_DIR=str(home / "data"),
            JUPYTER_RUNTIME_DIR=str(home / "runtime"),
            JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self) -> LabServer:
        self._home = tempfile.TemporaryDirectory(prefix="nt-lab-")
        home = Path(self._home.name)
        self.port = _free_port()
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.expose_app_in_browser=True",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log = open(home / "server.log", "w+b")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=self._environment(home),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited at start:\n{self.server_log()}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer in {self.startup_timeout:.0f} s")

    def trust(self, paths: Iterable[Path]) -> None:
        """Sign notebooks as this server's user would with ``jupyter trust``: JupyterLab renders
        widget views saved in a notebook (and its HTML, JavaScript) only when it is trusted."""
        import nbformat
        from nbformat.sign import NotebookNotary

        notary = NotebookNotary(data_dir=str(Path(self._home.name) / "data"))
        for path in paths:
            notary.sign(nbformat.read(path, as_version=4))

    def shutdown_kernels(self) -> None:
        """Shut down every kernel the server runs (a page closed leaves its kernel running)."""
        with urllib.request.urlopen(self.url("api/kernels"), timeout=10) as r:
            kernels = json.load(r)
        for k in kernels:
            req = urllib.request.Request(self.url(f"api/kernels/{k['id']}"), method="DELETE")
            urllib.request.urlopen(req, timeout=30).close()

    def server_log(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:  # kernels run in their own sessions: let the server shut them down first
                req = urllib.request.Request(self.url("api/shutdown"), method="POST")
                urllib.request.urlopen(req, timeout=10).close()
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.proc = None
        self.log.close()
        if self._home is not None:
            self._home.cleanup()

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def tree_digest(folder: Path) -> str:
    """One hash of every notebook under ``folder`` (names and bytes; JupyterLab's own
    ``.ipynb_checkpoints`` aside)."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


def scratch_copy(notebooks: Path, where: Path) -> Path:
    """Copy the folder ``notebooks`` to ``where/notebooks`` and return that copy: what a test
    serves, so the original is never touched. Beside it, links to the rest of the repository
    (``benchmarks/``, ``figures/``, ...) so notebooks that look up ``../benchmarks`` find it."""
    repo = Path(__file__).resolve().parents[2]
    dest = Path(where) / "notebooks"
    shutil.copytree(notebooks, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for entry in repo.iterdir():
        if entry.name != "notebooks" and not entry.name.startswith("."):
            (Path(where) / entry.name).symlink_to(entry)
    return dest


# --- a notebook page -------------------------------------------------------------------------

IDLE = r"() => /\| Idle/.test(document.querySelector('#jp-main-statusbar')?.innerText ?? '')"
PROMPTS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
    .map(e => e.innerText.trim())"""


def new_page(browser):
    """A page of a fixed size (steady screenshots) that collects the errors the page raises in
    ``page.page_errors``."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
    page.set_default_timeout(60_000)
    page.page_errors = []
    page.on("pageerror", lambda e: page.page_errors.append(str(e)))
    return page


def open_notebook(page, lab: LabServer, name: str, timeout: float = 120.0) -> None:
    """Open ``name`` (relative to the server's root) and wait until its kernel is idle."""
    page.goto(lab.notebook_url(name))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout * 1000)
    page.wait_for_function(IDLE, timeout=timeout * 1000)


def run_all_cells(page, timeout: float = 300.0) -> list[str]:
    """Clear every output, run every cell (JupyterLab stops at a cell that raises), wait until
    nothing runs; returns the code prompts that are not ``[n]:`` (empty when every cell ran)."""
    page.evaluate(
        """async () => {
            await window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');
            await window.jupyterapp.commands.execute('notebook:run-all-cells');
        }"""
    )
    page.wait_for_function(
        f"() => ({IDLE})() && !({PROMPTS})().some(t => t.includes('*'))", timeout=timeout * 1000
    )
    return [p for p in page.evaluate(PROMPTS) if not re.fullmatch(r"\[\d+\]:", p)]


def notebook_problems(page) -> list[str]:
    """What a reader would see go wrong on the page: stderr or error outputs, widgets that did not
    load, widget views shown as their text fallback."""
    return page.evaluate(
        r"""() => {
            const out = [];
            const nb = document.querySelector('.jp-Notebook');
            for (const e of nb.querySelectorAll(
                '[data-mime-type="application/vnd.jupyter.stderr"], [data-mime-type="application/vnd.jupyter.error"]'))
                out.push('stderr/error output: ' + e.innerText.slice(0, 500));
            for (const text of ['Loading widget', 'Error displaying widget', 'Error rendering'])
                if (nb.innerText.includes(text)) out.push('the page says "' + text + '"');
            for (const e of nb.querySelectorAll('.jp-OutputArea-output[data-mime-type="text/plain"]'))
                if (/^(VBox|HBox)\(/.test(e.innerText)) out.push('a widget shown as text: ' + e.innerText.slice(0, 80));
            return out;
        }"""
    )


def picture(page, css: str) -> str:
    """The ``src`` of the PNG that the widget with class ``css`` shows (``""`` if none)."""
    img = page.locator(f".{css} .{css}-figure img")
    if img.count() != 1:
        return ""
    return img.get_attribute("src") or ""


def png_title(src: str) -> str:
    """The ``Title`` text chunk of a ``data:image/png;base64,...`` URL."""
    import base64
    import io

    from PIL import Image

    prefix = "data:image/png;base64,"
    if not src.startswith(prefix):
        raise ValueError(f"not a PNG data URL: {src[:40]!r}")
    with Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :]))) as im:
        return im.text.get("Title", "")


if __name__ == "__main__":  # `python tests/browser/browserlab.py`: why the browser tests can't run
    print(unavailable_reason() or "")
