"""The decode-speed changes keep behaviour: right-sized cache, streaming, dropout in training."""

from __future__ import annotations

import torch

from nexttoken.generate import generate
from nexttoken.model import GPT, GPTConfig


def test_cache_is_sized_to_the_request(tiny_model, tiny_config, monkeypatch):
    sizes = []
    original = GPT.new_cache

    def spy(self, batch_size=1, max_len=None):
        sizes.append(max_len)
        return original(self, batch_size, max_len)

    monkeypatch.setattr(GPT, "new_cache", spy)
    generate(tiny_model, [1, 2, 3], 4, temperature=0)
    generate(tiny_model, [1, 2, 3], 100, temperature=0)  # runs past block_size: capped
    assert sizes == [7, tiny_config.block_size]


def test_streamed_tokens_are_the_returned_ones(tiny_model):
    seen = []
    out = generate(tiny_model, [5, 6], 30, temperature=0, on_token=lambda t: seen.append(t.clone()))
    assert torch.equal(torch.stack(seen, dim=1), out[:, 2:])


def test_cache_and_recompute_agree_across_the_context_limit(tiny_model, tiny_config):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, tiny_config.vocab_size, (2, 5), generator=g)
    n = tiny_config.block_size + 7
    a = generate(tiny_model, ids, n, temperature=0)
    b = generate(tiny_model, ids, n, temperature=0, use_cache=False)
    assert a.shape == (2, 5 + n) and torch.equal(a, b)


def test_dropout_still_applies_in_training():
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.5)
    torch.manual_seed(0)
    model = GPT(cfg)
    ids = torch.arange(8)[None]
    model.train()
    assert not torch.equal(model(ids), model(ids))  # two different dropout masks
    model.eval()
    assert torch.equal(model(ids), model(ids))
