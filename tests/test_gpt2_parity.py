"""Parity with the reference: random Hugging Face GPT-2 models, saved and read by ``load_gpt2``.

Offline: the models are built with random weights by ``transformers`` (a test-time dependency) and
saved to a temporary folder; nothing is downloaded. Compared: logits (max abs diff <= 1e-4), every
layer's hidden states, and 32-token greedy generations (token for token).
"""

from __future__ import annotations

import pytest
import torch

from nexttoken.checkpoint import load_gpt2
from nexttoken.generate import generate

transformers = pytest.importorskip("transformers")

TOL = 1e-4

# (n_layer, n_head, n_embd, vocab_size, n_positions, layer_norm_epsilon)
SMALL_CONFIGS = {
    "tiny": (2, 4, 64, 300, 64, 1e-5),
    "odd-heads": (3, 3, 96, 1000, 128, 1e-6),
    "deep-narrow": (6, 2, 32, 517, 96, 1e-5),
}
GPT2_SMALL = (12, 12, 768, 50257, 1024, 1e-5)


def make_hf(dims, seed=0):
    n_layer, n_head, n_embd, vocab, n_pos, eps = dims
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        vocab_size=vocab,
        n_positions=n_pos,
        layer_norm_epsilon=eps,
        bos_token_id=None,
        eos_token_id=None,
    )
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.generation_config.pad_token_id = 0
    return hf


def saved_pair(dims, path):
    hf = make_hf(dims)
    hf.save_pretrained(path)
    return hf, load_gpt2(path)


def check_forward(hf, ours, ids):
    with torch.no_grad():
        ref = hf(ids, output_hidden_states=True)
        got = ours.run(ids, output_hidden_states=True)
    n_layer = ours.config.n_layer
    assert (ref.logits - got.logits).abs().max().item() <= TOL
    # HF: n_layer + 1 states, the last one after ln_f; ours: embeddings + each block, before ln_f
    assert len(ref.hidden_states) == len(got.hidden_states) == n_layer + 1
    for i in range(n_layer):
        diff = (ref.hidden_states[i] - got.hidden_states[i]).abs().max().item()
        assert diff <= TOL, f"hidden state {i} differs by {diff}"
    assert (ref.hidden_states[n_layer] - got.final_hidden).abs().max().item() <= TOL
    ln_last = ours.transformer.ln_f(got.hidden_states[n_layer])
    assert (ref.hidden_states[n_layer] - ln_last).abs().max().item() <= TOL


@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_logits_hidden_states_and_greedy_generation(name, tmp_path):
    dims = SMALL_CONFIGS[name]
    hf, ours = saved_pair(dims, tmp_path)
    assert ours.config.n_layer == dims[0] and ours.config.layer_norm_eps == dims[5]
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, dims[3], (2, 17), generator=g)
    check_forward(hf, ours, ids)
    prompt = ids[:1, :8]
    with torch.no_grad():
        ref = hf.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=32, do_sample=False
        )
    for use_cache in (True, False):
        got = generate(ours, prompt, 32, temperature=0, use_cache=use_cache)
        assert got.shape == (1, 40)
        assert torch.equal(ref, got)


def test_gpt2_small_size(tmp_path):
    """GPT-2 small's exact shapes (124M parameters): one short forward, compared layer by layer."""
    hf, ours = saved_pair(GPT2_SMALL, tmp_path)
    assert ours.num_parameters() == 124_439_808
    assert ours.lm_head.weight is ours.transformer.wte.weight
    ids = torch.randint(0, 50257, (1, 12), generator=torch.Generator().manual_seed(2))
    check_forward(hf, ours, ids)
    nxt = generate(ours, ids, 2, temperature=0)
    with torch.no_grad():
        ref = hf.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, do_sample=False
        )
    assert torch.equal(nxt, ref)
