"""Nothing needs the network: sockets are blocked for the whole unit suite (conftest.py)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_the_network_is_blocked_in_tests():
    with pytest.raises(Exception, match="(?i)socket"):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("127.0.0.1", 9))


def test_tokenizers_load_in_a_fresh_process_without_network():
    """A new interpreter whose socket module refuses to connect still gets every encoding."""
    code = """
import socket
def refuse(*a, **k):
    raise OSError("network disabled for this test")
socket.socket.connect = refuse
socket.create_connection = refuse
from nexttoken.tokenizer import get_encoding
print(get_encoding("gpt2").encode("Hello world"),
      get_encoding("cl100k_base").encode("hello world"),
      get_encoding("o200k_base").encode("hello world"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[15496, 995] [15339, 1917] [24912, 2375]"
