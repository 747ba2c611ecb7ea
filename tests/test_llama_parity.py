"""The book's Llama against transformers' own (LlamaForCausalLM, Qwen3ForCausalLM,
MistralForCausalLM), on random weights, offline: logits within 1e-4, the same greedy tokens.

The weights travel through the files both ways: transformers' ``save_pretrained`` folder is read by
:func:`nexttoken.checkpoint.load_llama`, and :func:`nexttoken.checkpoint.save_llama`'s folder by
transformers' ``from_pretrained``.
"""

from __future__ import annotations

import pytest
import torch

from nexttoken.checkpoint import load_llama, save_llama
from nexttoken.generate import generate
from nexttoken.llama import Llama, LlamaConfig

transformers = pytest.importorskip("transformers")

V = 101
# (id, book config, transformers family): MHA, GQA, MQA; tied and untied; a head_dim that is not
# n_embd / n_head; qk-norm (Qwen3); a sliding window shorter than the prompt (Mistral)
CONFIGS = [
    ("mha-untied", dict(n_head=4, n_kv_head=4), "Llama"),
    ("gqa-untied", dict(n_head=4, n_kv_head=2), "Llama"),
    ("mqa-tied", dict(n_head=4, n_kv_head=1, tie_embeddings=True), "Llama"),
    ("gqa-tied-head_dim", dict(n_head=4, n_kv_head=2, head_dim=12, tie_embeddings=True), "Llama"),
    ("qk_norm-gqa", dict(n_head=4, n_kv_head=2, qk_norm=True), "Qwen3"),
    ("sliding-gqa", dict(n_head=4, n_kv_head=2, sliding_window=7), "Mistral"),
]
IDS = [c[0] for c in CONFIGS]
PROMPT_LEN, NEW = 9, 20


def book_config(kw: dict) -> LlamaConfig:
    return LlamaConfig(vocab_size=V, block_size=64, n_layer=2, n_embd=32, intermediate_size=56,
                       rope_theta=500.0, rms_norm_eps=1e-6, **kw)  # fmt: skip


def hf_model(c: LlamaConfig, family: str, seed: int = 0):
    """transformers' model of ``c``'s shape, built from a config object (nothing downloaded), its
    weights drawn with std 0.2 (peaked logits) and the norms' gains in [0.5, 1.5]."""
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
    model = getattr(transformers, f"{family}ForCausalLM")(
        getattr(transformers, f"{family}Config")(**kw)
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
            else:
                p.uniform_(0.5, 1.5)
    return model.eval()


def ids_for(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (2, 24), generator=torch.Generator().manual_seed(seed))


def hf_greedy(hf, prompt: torch.Tensor) -> list[list[int]]:
    with torch.no_grad():
        out = hf.generate(prompt, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)
    assert out.shape == (1, PROMPT_LEN + NEW)
    return out.tolist()


@pytest.mark.parametrize(("name", "kw", "family"), CONFIGS, ids=IDS)
def test_transformers_folder_loads_with_equal_logits_and_greedy_tokens(name, kw, family, tmp_path):
    hf = hf_model(book_config(kw), family)
    hf.save_pretrained(tmp_path)
    book = load_llama(tmp_path)
    assert book.config == book_config(kw)
    ids = ids_for()
    with torch.no_grad():
        diff = float((book(ids) - hf(ids).logits).abs().max())
    assert diff < 1e-4, f"{name}: max |logit difference| {diff:.2e}"
    prompt = ids[:1, :PROMPT_LEN]
    ref = hf_greedy(hf, prompt)
    for use_cache in (True, False):
        assert generate(book, prompt, NEW, temperature=0, use_cache=use_cache).tolist() == ref


@pytest.mark.parametrize(("name", "kw", "family"), CONFIGS[2:], ids=IDS[2:])
def test_book_folder_loads_in_transformers(name, kw, family, tmp_path):
    torch.manual_seed(3)
    book = Llama(book_config(kw)).eval()
    save_llama(book, tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(hf).__name__ == f"{family}ForCausalLM"
    ids = ids_for(2)
    with torch.no_grad():
        diff = float((book(ids) - hf(ids).logits).abs().max())
    assert diff < 1e-4, f"{name}: max |logit difference| {diff:.2e}"
    again = load_llama(tmp_path)
    assert again.config == book.config
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                  book.state_dict().values(), strict=True))  # fmt: skip


def test_the_comparison_can_fail():
    """A model without the window, or with another RoPE base, is far beyond 1e-4 of the reference."""
    cfg = book_config(dict(n_head=4, n_kv_head=2, sliding_window=7))
    hf = hf_model(cfg, "Mistral")
    ids = ids_for()
    with torch.no_grad():
        ref = hf(ids).logits
        for other in (dict(sliding_window=None), dict(rope_theta=10000.0)):
            book = Llama(LlamaConfig(**{**cfg.__dict__, **other})).eval()
            book.load_state_dict(hf.state_dict(), strict=False)
            assert float((book(ids) - ref).abs().max()) > 1e-2, other
