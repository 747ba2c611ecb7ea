"""The book's Llama against transformers' own (LlamaForCausalLM, Qwen3ForCausalLM,
MistralForCausalLM), on random weights, offline: logits within 1e-4, the same greedy tokens."""

from __future__ import annotations

import pytest
import torch

from nexttoken.generate import generate
from nexttoken.llama import Llama, LlamaConfig

transformers = pytest.importorskip("transformers")

V = 101
# (id, book config, transformers class name): MHA, GQA, MQA; tied and untied; a head_dim that is
# not n_embd / n_head; qk-norm (Qwen3); a sliding window shorter than the prompt (Mistral)
CONFIGS = [
    ("mha-untied", dict(n_head=4, n_kv_head=4), "Llama"),
    ("gqa-untied", dict(n_head=4, n_kv_head=2), "Llama"),
    ("mqa-tied", dict(n_head=4, n_kv_head=1, tie_embeddings=True), "Llama"),
    ("gqa-tied-head_dim", dict(n_head=4, n_kv_head=2, head_dim=12, tie_embeddings=True), "Llama"),
    ("qk_norm-gqa", dict(n_head=4, n_kv_head=2, qk_norm=True), "Qwen3"),
    ("sliding-gqa", dict(n_head=4, n_kv_head=2, sliding_window=7), "Mistral"),
]


def book_config(kw: dict) -> LlamaConfig:
    return LlamaConfig(vocab_size=V, block_size=64, n_layer=2, n_embd=32, intermediate_size=56,
                       rope_theta=500.0, rms_norm_eps=1e-6, **kw)  # fmt: skip


def hf_model(c: LlamaConfig, family: str):
    """transformers' model of the same shape, built from a config object (nothing downloaded)."""
    kw = dict(
        vocab_size=c.vocab_size,
        hidden_size=c.n_embd,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.n_layer,
        num_attention_heads=c.n_head,
        num_key_value_heads=c.n_kv_head,
        head_dim=c.head_dim,
        max_position_embeddings=c.block_size,
        rms_norm_eps=c.rms_norm_eps,
        tie_word_embeddings=c.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
    )
    if family == "Mistral":
        kw["sliding_window"] = c.sliding_window
    if family == "Qwen3":
        kw["use_sliding_window"] = False
    cfg = getattr(transformers, f"{family}Config")(**kw)
    model = getattr(transformers, f"{family}ForCausalLM")(cfg)
    return model.eval()


def pair(kw: dict, family: str, seed: int = 0):
    """(book model, transformers model) with the same random weights (std 0.2: peaked logits)."""
    torch.manual_seed(seed)
    book = Llama(book_config(kw)).eval()
    with torch.no_grad():
        for p in book.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
            else:  # the norms' gains
                p.uniform_(0.5, 1.5)
    hf = hf_model(book.config, family)
    missing, unexpected = hf.load_state_dict(book.state_dict(), strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    return book, hf


@pytest.mark.parametrize(("name", "kw", "family"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_logits_and_greedy_tokens_equal_transformers(name, kw, family):
    book, hf = pair(kw, family)
    ids = torch.randint(0, V, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = book(ids), hf(ids).logits
    diff = float((ours - theirs).abs().max())
    assert diff < 1e-4, f"{name}: max |logit difference| {diff:.2e}"
    prompt = ids[:1, :9]
    with torch.no_grad():
        ref = hf.generate(prompt, max_new_tokens=20, do_sample=False, min_new_tokens=20)
    assert ref.shape == (1, 29)
    for use_cache in (True, False):
        got = generate(book, prompt, 20, temperature=0, use_cache=use_cache)
        assert got.tolist() == ref.tolist(), (name, use_cache)
