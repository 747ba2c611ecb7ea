"""The site check serves the built site on 127.0.0.1: sockets are allowed to that host only.

This folder is not part of ``make unit`` (its test file is named check_site.py, which pytest collects
only when given explicitly, as ``make site-check`` does).
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_network():
    """Replaces tests/conftest.py's fixture of the same name: 127.0.0.1 only, not no network at all."""
    import pytest_socket

    pytest_socket.enable_socket()
    pytest_socket.socket_allow_hosts(["127.0.0.1"], allow_unix_socket=True)
    yield  # pytest-socket lifts the restriction after each test
