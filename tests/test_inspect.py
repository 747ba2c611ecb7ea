"""nexttoken.inspect: the hooks read without changing anything, every recorded activation is the one
the model computed, the logit lens ends at the logits, the attribution sums to the logit, patching
and the first-divergence debugger find what they should."""

from __future__ import annotations

import math

import pytest
import torch

import nexttoken
from nexttoken import inspect as I
from nexttoken.model import GPT, attention, causal_mask
from nexttoken.quantize import quantize


@pytest.fixture(scope="module")
def book():
    return nexttoken.load_book_model()


@pytest.fixture(scope="module")
def ids():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 4096, (2, 40), generator=g)


@pytest.fixture(scope="module")
def full(book, ids):
    return I.trace(book, ids)


def count_passes(model: GPT) -> tuple[list[int], object]:
    """A counter of forward passes (every pass looks up the token embedding once)."""
    calls = [0]

    def hook(module, args, out):
        calls[0] += 1

    return calls, model.transformer.wte.register_forward_hook(hook)


ISSUE_NAMES = [
    "blocks.{l}.hook_resid_pre",
    "blocks.{l}.attn.hook_pattern",
    "blocks.{l}.attn.hook_z",
    "blocks.{l}.hook_attn_out",
    "blocks.{l}.hook_mlp_out",
    "blocks.{l}.hook_resid_post",
]


# ------------------------------------------------------------------------------------- trace


def test_trace_leaves_the_logits_bit_identical_and_no_hook_behind(book, ids, full):
    with torch.no_grad():
        assert torch.equal(full.logits, book(ids))
    assert torch.equal(full.ids, ids)
    for m in book.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    with torch.no_grad():  # a second trace gives the same bits
        assert torch.equal(I.trace(book, ids).logits, full.logits)


def test_names_in_forward_order_with_their_shapes(book, full):
    cfg = book.config
    B, N, d, H, dh = 2, 40, cfg.n_embd, cfg.n_head, cfg.d_head
    assert full.names() == I.hook_names(cfg)
    assert len(full.names()) == 2 + 11 * cfg.n_layer + 2
    for template in ISSUE_NAMES:
        for layer in range(cfg.n_layer):
            assert template.format(l=layer) in full
    assert "ln_final.hook_normalized" in full
    shapes = {
        "hook_embed": (B, N, d),
        "hook_pos_embed": (B, N, d),
        "blocks.1.hook_resid_pre": (B, N, d),
        "blocks.1.attn.hook_q": (B, N, H, dh),
        "blocks.1.attn.hook_pattern": (B, H, N, N),
        "blocks.1.attn.hook_z": (B, N, H, dh),
        "blocks.1.mlp.hook_post": (B, N, cfg.d_ff),
        "blocks.3.hook_resid_post": (B, N, d),
        "ln_final.hook_scale": (B, N, 1),
        "ln_final.hook_normalized": (B, N, d),
    }
    for name, shape in shapes.items():
        assert tuple(full[name].shape) == shape, name
    assert tuple(full.logits.shape) == (B, N, cfg.vocab_size)


def test_recorded_bytes_match_the_formula(book, full):
    assert full.nbytes == I.trace_nbytes(book.config, 2, 40) == 6_021_440
    part = I.trace(book, full.ids[:1, :7], names=["blocks.0.hook_resid_pre"])
    assert part.names() == ["blocks.0.hook_resid_pre"]
    assert part.nbytes == 4 * (7 * 256 + 7 * 4096)
    scale = I.trace(book, full.ids[:1, :7], names=["ln_final.hook_scale"])
    assert scale.names() == ["ln_final.hook_scale"]


def test_the_residual_stream_is_the_models_hidden_states(book, ids, full):
    with torch.no_grad():
        hidden = book.run(ids, output_hidden_states=True).hidden_states
    L = book.config.n_layer
    for layer in range(L):
        assert torch.equal(full[f"blocks.{layer}.hook_resid_pre"], hidden[layer])
    assert torch.equal(full[f"blocks.{L - 1}.hook_resid_post"], hidden[L])
    assert torch.equal(full["hook_embed"] + full["hook_pos_embed"], hidden[0])


def test_each_activation_is_the_sum_or_projection_the_block_computes(book, full):
    for layer, block in enumerate(book.transformer.h):
        p = f"blocks.{layer}."
        with torch.no_grad():
            attn_out = block.attn.c_proj(full[p + "attn.hook_z"].flatten(2))
            mlp_out = block.mlp.c_proj(full[p + "mlp.hook_post"])
            qkv = block.attn.c_attn(block.ln_1(full[p + "hook_resid_pre"]))
        assert torch.equal(full[p + "hook_attn_out"], attn_out)
        assert torch.equal(full[p + "hook_mlp_out"], mlp_out)
        q = torch.cat([full[p + f"attn.hook_{s}"].flatten(2) for s in "qkv"], dim=-1)
        assert torch.equal(q, qkv)
        mid = full[p + "hook_resid_pre"] + full[p + "hook_attn_out"]
        assert torch.equal(full[p + "hook_resid_mid"], mid)
        assert torch.equal(full[p + "hook_resid_post"], mid + full[p + "hook_mlp_out"])


def test_the_pattern_is_the_models_written_out_attention(book, ids, full):
    N = ids.size(1)
    for layer in range(book.config.n_layer):
        p = f"blocks.{layer}.attn."
        q, k, v = (full[p + f"hook_{s}"].transpose(1, 2) for s in "qkv")
        _, weights = attention(q, k, v, causal_mask(N, N))
        assert torch.equal(full[p + "hook_pattern"], weights)
        z = (weights @ v).transpose(1, 2)  # what the fused kernel computed, to the last bits
        torch.testing.assert_close(full[p + "hook_z"], z, atol=2e-6, rtol=0)
    with torch.no_grad():  # layer 0 reads the same input in both passes: the very same weights
        first = book.run(ids, output_attentions=True).attentions[0]
    assert torch.equal(full["blocks.0.attn.hook_pattern"], first)
    rows = full["blocks.2.attn.hook_pattern"].sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows))
    assert bool((full["blocks.2.attn.hook_pattern"].triu(1) == 0).all())  # causal


def test_final_layernorm_scale_and_normalized(book, full):
    x = full["blocks.3.hook_resid_post"]
    ln_f = book.transformer.ln_f
    with torch.no_grad():
        out = ln_f(x)
    rebuilt = full["ln_final.hook_normalized"] * ln_f.weight + ln_f.bias
    torch.testing.assert_close(rebuilt, out, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        full["ln_final.hook_scale"].squeeze(-1) ** 2, x.var(-1, unbiased=False) + ln_f.eps
    )


def test_trace_on_the_int8_model_keeps_the_names(book, ids):
    q = quantize(book, "int8")
    t = I.trace(q, ids[:1, :12])
    assert t.names() == I.hook_names(book.config)
    with torch.no_grad():
        assert torch.equal(t.logits, q(ids[:1, :12]))
    assert t["blocks.1.attn.hook_pattern"].dtype == torch.float32


def test_heads_functions_are_re_exported():
    from nexttoken import heads

    assert I.induction_scores is heads.induction_scores
    assert I.previous_token_scores is heads.previous_token_scores
    with pytest.raises(AttributeError):
        I.no_such_function  # noqa: B018


# -------------------------------------------------------------------------------- logit lens


def test_logit_lens_ends_at_the_logits_exactly(book, full):
    lens = I.logit_lens(book, full)
    assert tuple(lens.shape) == (5, 2, 40, 4096)
    assert torch.equal(lens[-1], full.logits)
    with torch.no_grad():
        first = book.lm_head(book.transformer.ln_f(full["hook_embed"] + full["hook_pos_embed"]))
    assert torch.equal(lens[0], first)
    assert not torch.equal(lens[0], lens[-1])


# ------------------------------------------------------------------------------- attribution


def test_attribution_parts_sum_to_the_logit(book, full):
    token = int(full.logits[1, 17].argmax())
    parts = I.direct_logit_attribution(book, full, 17, token, batch=1)
    keys = ["embed"]
    for layer in range(4):
        keys += [f"L{layer}H{h}" for h in range(4)] + [f"L{layer}.attn_bias", f"L{layer}.mlp"]
    assert list(parts) == keys + ["bias"]
    err = abs(math.fsum(parts.values()) - float(full.logits[1, 17, token]))
    assert err < 1e-5  # measured 7e-7 (float64 parts of float32 activations)


def test_a_layers_heads_and_bias_add_up_to_its_attention_output(book, full):
    # the frozen scale makes the split linear: the heads' parts + the bias part are the part of
    # the whole attention output
    parts = I.direct_logit_attribution(book, full, 5, 123)
    x = full["blocks.3.hook_resid_post"][0, 5].double()
    u = book.lm_head.weight[123].detach().double()
    w = book.transformer.ln_f.weight.detach().double()
    scale = (x - x.mean()).pow(2).mean().add(1e-5).sqrt()
    c = full["blocks.2.hook_attn_out"][0, 5].double()
    whole = float(((c - c.mean()) / scale * w) @ u)
    heads = sum(parts[f"L2H{h}"] for h in range(4)) + parts["L2.attn_bias"]
    assert heads == pytest.approx(whole, abs=1e-6)


def test_attribution_of_a_trace_from_another_model_fails_the_sum(full):
    other = nexttoken.load_book_model()
    with torch.no_grad():  # (a constant vector would change nothing: LayerNorm removes it)
        g = torch.Generator().manual_seed(1)
        other.transformer.h[1].attn.c_proj.bias.add_(torch.randn(256, generator=g))
    with pytest.raises(AssertionError, match="sum to"):
        I.direct_logit_attribution(other, full, 3, 10)


# ---------------------------------------------------------------------------------- patching


@pytest.fixture(scope="module")
def pair():
    clean = torch.tensor([[5, 17, 42, 8, 99, 3, 61, 12, 7, 30]])
    corrupt = clean.clone()
    corrupt[0, 4] = 77
    return clean, corrupt


def test_patching_the_differing_position_restores_the_clean_run(book, pair):
    clean, corrupt = pair
    with torch.no_grad():
        clean_logits, corrupt_logits = book(clean), book(corrupt)
    out = I.patch(book, clean, corrupt, hook="blocks.0.hook_resid_pre", position=4)
    assert torch.equal(out, clean_logits)
    out = I.patch(book, clean, corrupt, hook="blocks.3.hook_resid_post")
    assert torch.equal(out, clean_logits)
    out = I.patch(book, clean, corrupt, hook="hook_embed", position=4)
    assert torch.equal(out, clean_logits)
    # a position before the change: it already agreed, nothing moves
    out = I.patch(book, clean, corrupt, hook="blocks.2.hook_mlp_out", position=2)
    assert torch.equal(out, corrupt_logits)
    for m in book.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_patching_one_head_changes_only_what_follows(book, pair):
    clean, corrupt = pair
    with torch.no_grad():
        corrupt_logits = book(corrupt)
    for hook in ("blocks.1.attn.hook_z", "blocks.1.attn.hook_v"):
        out = I.patch(book, clean, corrupt, hook=hook, position=7, head=2)
        assert torch.equal(out[:, :7], corrupt_logits[:, :7]), hook
        assert float((out[:, 7] - corrupt_logits[:, 7]).abs().max()) > 1e-2, hook
    # a patched pattern gives z = pattern @ v written out (not the fused kernel): the positions
    # before agree to the last bits only
    out = I.patch(book, clean, corrupt, hook="blocks.1.attn.hook_pattern", position=7, head=2)
    torch.testing.assert_close(out[:, :7], corrupt_logits[:, :7], atol=1e-5, rtol=0)
    assert float((out[:, 7] - corrupt_logits[:, 7]).abs().max()) > 1e-2
    # all of a layer's z: its attention output is the clean one from there on
    t = I.trace(book, corrupt)
    full_z = I.patch(book, clean, corrupt, hook="blocks.3.attn.hook_z")
    assert not torch.equal(full_z, t.logits)


def test_a_full_pattern_patch_is_z_from_the_clean_pattern_and_corrupt_values(book, pair):
    clean, corrupt = pair
    tc, tx = I.trace(book, clean), I.trace(book, corrupt)
    pattern = tc["blocks.3.attn.hook_pattern"]
    v = tx["blocks.3.attn.hook_v"].transpose(1, 2)
    z = (pattern @ v).transpose(1, 2).flatten(2)
    block = book.transformer.h[3]
    with torch.no_grad():
        x = tx["blocks.3.hook_resid_pre"] + block.attn.c_proj(z)
        x = x + block.mlp(block.ln_2(x))
        expected = book.lm_head(book.transformer.ln_f(x))
    out = I.patch(book, clean, corrupt, hook="blocks.3.attn.hook_pattern")
    assert torch.equal(out, expected)


def test_the_sweep_reuses_one_clean_pass(tiny_model):
    clean = torch.tensor([[3, 9, 27, 81, 50, 11, 6]])
    corrupt = clean.clone()
    corrupt[0, 2] = 40
    L, N = tiny_model.config.n_layer, clean.size(1)
    calls, handle = count_passes(tiny_model)
    try:
        fast = I.patch_sweep(tiny_model, clean, corrupt)
        assert calls[0] == 2 + L * N  # the clean pass, the corrupted pass, one per cell
        calls[0] = 0
        slow = I.patch_sweep(tiny_model, clean, corrupt, reuse_clean=False)
        assert calls[0] == 2 + 2 * L * N  # the clean pass again for every cell
    finally:
        handle.remove()
    assert torch.equal(fast, slow) and tuple(fast.shape) == (L, N)
    # (this random model's top token is 6 whatever the prompt: the default metric is 0 here)
    assert not bool(fast.any())
    metric = I.logit_diff(6, 5)
    sweep = I.patch_sweep(tiny_model, clean, corrupt, metric=metric)
    with torch.no_grad():
        c, x = tiny_model(clean), tiny_model(corrupt)
    # patching the changed position at layer 0 gives the clean run back; position 0 changes nothing
    assert sweep[0, 2] == metric(c) != metric(x)
    assert sweep[0, 0] == metric(x)


def test_patch_with_a_given_clean_trace_is_the_same(book, pair):
    clean, corrupt = pair
    t = I.trace(book, clean)
    a = I.patch(book, clean, corrupt, hook="blocks.2.hook_attn_out", position=6, clean=t)
    b = I.patch(book, clean, corrupt, hook="blocks.2.hook_attn_out", position=6)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- first divergence


def test_first_divergence_of_int8_is_its_first_int8_layer(book, ids):
    q = quantize(book, "int8")
    d = I.first_divergence(book, q, ids[:1, :24], atol=1e-3)
    assert d.diverged
    assert (d.name, d.layer, d.position) == ("blocks.0.attn.hook_q", 0, 0)
    names = [n for n, _ in d.sizes]
    assert names == I.hook_names(book.config) + ["logits"]
    sizes = dict(d.sizes)
    assert sizes["blocks.0.hook_resid_pre"] == 0.0  # the embeddings stay fp32
    assert d.max_diff == sizes["blocks.0.attn.hook_q"] > 1e-3
    assert sizes["logits"] > sizes["blocks.0.hook_resid_post"]  # it grows along the way
    assert "<- first above atol" in d.table().splitlines()[4]


def test_first_divergence_finds_a_changed_embedding_row_at_its_first_use(book):
    other = nexttoken.load_book_model()
    with torch.no_grad():
        other.transformer.wte.weight[77].add_(0.01)
    ids = torch.tensor([[5, 17, 42, 8, 99, 3, 61, 77, 7, 77]])
    d = I.first_divergence(book, other, ids, atol=1e-3)
    assert (d.name, d.layer, d.position) == ("hook_embed", None, 7)
    assert d.max_diff == pytest.approx(0.01, rel=1e-3)


def test_no_divergence_between_a_model_and_itself_batched_or_alone(book, ids):
    same = I.first_divergence(book, book, ids, atol=1e-6)
    assert not same.diverged and all(v == 0.0 for _, v in same.sizes)
    assert (same.name, same.layer, same.position) == (None, None, None)
    alone = I.first_divergence(book, book, ids[:1], atol=1e-4, batch_with=ids[1:])
    assert not alone.diverged
    assert [n for n, _ in alone.sizes][-1] == "logits"


def test_max_differences_is_the_parity_table():
    a = {"x": torch.zeros(2, 3), "y": torch.ones(4)}
    b = {"y": torch.ones(4) + torch.tensor([0, 0.5, -2, 0]), "x": torch.zeros(2, 3), "z": 1}
    assert I.max_differences(a, b) == {"x": 0.0, "y": 2.0}


# ----------------------------------------------------------------- TransformerLens's layout


def test_hooked_transformer_layout_rebuilds_the_attention(book, full):
    sd = I.hooked_transformer_state_dict(book)
    cfg = I.hooked_transformer_config(book)
    assert (cfg["n_layers"], cfg["n_heads"], cfg["d_head"], cfg["d_mlp"]) == (4, 4, 64, 1024)
    assert tuple(sd["blocks.1.attn.W_Q"].shape) == (4, 256, 64)
    assert tuple(sd["blocks.1.attn.W_O"].shape) == (4, 64, 256)
    assert tuple(sd["unembed.W_U"].shape) == (256, 4096)
    # per head, x @ W_Q + b_Q is that head's queries; z @ W_O summed over heads + b_O the output
    x = torch.nn.functional.layer_norm(
        full["blocks.1.hook_resid_pre"], (256,), sd["blocks.1.ln1.w"], sd["blocks.1.ln1.b"]
    )
    q = torch.einsum("bnd,hde->bnhe", x, sd["blocks.1.attn.W_Q"]) + sd["blocks.1.attn.b_Q"]
    torch.testing.assert_close(q, full["blocks.1.attn.hook_q"], atol=1e-5, rtol=0)
    z = full["blocks.1.attn.hook_z"]
    out = torch.einsum("bnhe,hed->bnd", z, sd["blocks.1.attn.W_O"]) + sd["blocks.1.attn.b_O"]
    torch.testing.assert_close(out, full["blocks.1.hook_attn_out"], atol=1e-5, rtol=0)


# ------------------------------------------------------------------ blocks without an MLP


def test_an_attention_only_model_is_traced_without_mlp_names(tiny_config):
    from nexttoken.heads import AttentionOnlyGPT

    torch.manual_seed(0)
    model = AttentionOnlyGPT(tiny_config).eval()
    ids = torch.tensor([[3, 9, 27, 81, 50, 11, 6]])
    t = I.trace(model, ids)
    with torch.no_grad():
        assert torch.equal(t.logits, model(ids))
    assert t.names() == I.hook_names(model) != I.hook_names(model.config)
    assert "blocks.1.attn.hook_pattern" in t and "blocks.1.hook_mlp_out" not in t
    assert t.nbytes == I.trace_nbytes(tiny_config, 1, 7, mlp=False)
    mid = t["blocks.0.hook_resid_pre"] + t["blocks.0.hook_attn_out"]
    assert torch.equal(t["blocks.0.hook_resid_post"], mid)
    parts = I.direct_logit_attribution(model, t, 6, 5)
    assert "L0.mlp" not in parts and "L1H1" in parts
    assert math.fsum(parts.values()) == pytest.approx(float(t.logits[0, 6, 5]), abs=1e-5)
    with pytest.raises(ValueError, match="unknown hook name 'blocks.0.hook_mlp_out'"):
        I.trace(model, ids, names=["blocks.0.hook_mlp_out"])
    with pytest.raises(ValueError, match="cannot patch 'blocks.0.hook_mlp_out'"):
        I.patch(model, ids, ids, hook="blocks.0.hook_mlp_out")
    assert I.patch_sweep(model, ids, ids, hook_kind="attn.hook_z", head=1).shape == (2, 7)


def test_short_reprs(book):
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    assert repr(I.trace(book, ids)) == (
        "Trace(48 activations of book on ids (1, 5), logits (1, 5, 4096), 365,140 bytes)"
    )
    assert repr(I.first_divergence(book, book, ids, atol=1e-3)) == (
        "Divergence(none above atol=0.001; logits 0.0e+00)"
    )
    d = I.first_divergence(book, quantize(book, "int8"), ids, atol=1e-3)
    assert repr(d).startswith("Divergence(name='blocks.0.attn.hook_q', layer=0, position=0, ")
