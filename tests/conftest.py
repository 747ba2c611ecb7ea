"""Shared fixtures: small random models that build in milliseconds."""

from __future__ import annotations

import pytest
import torch

from nexttoken.model import GPT, GPTConfig

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_network():
    """Every unit test runs with the network unreachable, as a reader offline would.

    (pytest-socket lifts its restriction after each test, so it is set again before each one;
    `make unit` also passes --disable-socket.)
    """
    import pytest_socket

    pytest_socket.disable_socket(allow_unix_socket=True)
    yield


@pytest.fixture(autouse=True)
def _no_open_figures():
    """Each test starts with no open pyplot figure, whatever ran before it in this worker.

    Tests assert that the package's plot functions leave no figure open; a figure left by an
    earlier test (in any order xdist chooses) must not count against them.
    """
    import matplotlib.pyplot as plt

    plt.close("all")
    yield


@pytest.fixture(autouse=True)
def _fresh_hints():
    """Exercise checkers stage their hints by counting failed tries per kernel; every test starts
    (and leaves) with none counted."""
    from nexttoken.exercises import reset_hints

    reset_hints()
    yield
    reset_hints()


TINY = GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=2, n_embd=32, name="tiny")


@pytest.fixture(scope="session")
def tiny_config() -> GPTConfig:
    return TINY


@pytest.fixture(scope="session")
def tiny_model() -> GPT:
    torch.manual_seed(0)
    return GPT(TINY).eval()
