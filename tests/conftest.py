"""Shared fixtures: small random models that build in milliseconds."""

from __future__ import annotations

import pytest
import torch

from nexttoken.model import GPT, GPTConfig

torch.set_num_threads(1)


def pytest_configure(config):
    """The whole unit suite runs with the network unreachable (as a reader offline would)."""
    import pytest_socket

    pytest_socket.disable_socket(allow_unix_socket=True)


TINY = GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=2, n_embd=32, name="tiny")


@pytest.fixture(scope="session")
def tiny_config() -> GPTConfig:
    return TINY


@pytest.fixture(scope="session")
def tiny_model() -> GPT:
    torch.manual_seed(0)
    return GPT(TINY).eval()
