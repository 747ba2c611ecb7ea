"""Browser tests: JupyterLab served from a scratch copy of the notebooks, driven in Chromium.

Run with ``make browser`` (``make test`` runs them when Chromium and Playwright are here). They need
TCP to 127.0.0.1, so unlike the unit tests they allow sockets, to that address only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browserlab import launch_chromium, unavailable_reason

ROOT = Path(__file__).resolve().parents[2]
WIDGET_MANAGER = "@jupyter-widgets/jupyterlab-manager"


def pytest_addoption(parser):
    group = parser.getgroup("nexttoken browser tests")
    group.addoption(
        "--notebooks-dir",
        type=Path,
        default=ROOT / "notebooks",
        help="folder whose notebooks' saved widget state is checked (default: notebooks/)",
    )
    group.addoption(
        "--update-screenshots",
        action="store_true",
        help="write figures/widgets/*.png instead of comparing with them (make screenshots)",
    )
    group.addoption(
        "--disable-lab-extension",
        action="append",
        default=[],
        metavar="NAME",
        help=f"switch a JupyterLab extension off (e.g. {WIDGET_MANAGER}) to see the tests fail",
    )


def pytest_collection_modifyitems(config, items):
    reason = unavailable_reason()
    if reason:
        skip = pytest.mark.skip(reason=f"browser tests skipped: {reason}")
        here = Path(__file__).parent
        for item in items:  # this hook sees every test of the session: only ours are skipped
            if Path(item.path).is_relative_to(here):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_network():
    """Overrides tests/conftest.py: the browser tests may reach 127.0.0.1, and nothing else."""
    import pytest_socket

    pytest_socket.socket_allow_hosts(["127.0.0.1"], allow_unix_socket=True)
    yield


@pytest.fixture(scope="session")
def committed_notebooks() -> Path:
    """notebooks/: never served itself (each server gets a scratch copy, checked unchanged)."""
    return ROOT / "notebooks"


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture(scope="session")
def disabled_extensions(request) -> list[str]:
    return list(request.config.getoption("--disable-lab-extension", []))


@pytest.fixture(scope="session")
def update_screenshots(request) -> bool:
    return bool(request.config.getoption("--update-screenshots", False))
