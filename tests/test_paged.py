"""The paged KV cache: same attention as the contiguous cache, blocks reused, a clean error when full."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nexttoken import load_book_model
from nexttoken.generate import generate
from nexttoken.paged import PagedKVCache, PoolExhausted, blocks_for


@pytest.fixture(scope="module")
def book():
    return load_book_model()


def paged_generate(model, cache, seq, prompt, n):
    """Greedy decoding of one sequence through a paged cache (what generate does, paged)."""
    cache.add(seq)
    ids = list(prompt)
    x = torch.tensor([prompt])
    with torch.inference_mode():
        for _ in range(n):
            view = cache.batch([seq], x.size(1))
            out = model.run(x, cache=view, positions=view.positions, attn_mask=view.mask)
            ids.append(int(out.logits[0, -1].argmax()))
            x = torch.tensor([[ids[-1]]])
    return ids


@settings(max_examples=8, deadline=None)
@given(
    length=st.integers(1, 40),
    new=st.integers(1, 12),
    block_tokens=st.sampled_from([1, 3, 8, 16]),
    seed=st.integers(0, 1000),
)
def test_paged_greedy_equals_contiguous(book, length, new, block_tokens, seed):
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, book.config.vocab_size, (length,), generator=g).tolist()
    cache = PagedKVCache.for_model(book, blocks_for(length + new, block_tokens) + 2, block_tokens)
    cache.add("other")  # a block owned by someone else, so the sequence's blocks are not 0, 1, ...
    cache.reserve("other", 1)
    assert (
        paged_generate(book, cache, 0, prompt, new)
        == generate(book, prompt, new, temperature=0)[0].tolist()
    )


@settings(max_examples=8, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 20), min_size=2, max_size=5),
    block_tokens=st.sampled_from([2, 5, 16]),
    seed=st.integers(0, 1000),
)
def test_ragged_paged_batch_matches_contiguous_logits(book, lengths, block_tokens, seed):
    """Sequences of different lengths in one decoding pass: each row's logits are those of the
    contiguous cache for that sequence alone, and its blocks hold exactly its keys."""
    g = torch.Generator().manual_seed(seed)
    V = book.config.vocab_size
    prompts = [torch.randint(0, V, (n,), generator=g).tolist() for n in lengths]
    cache = PagedKVCache.for_model(book, 64, block_tokens)
    with torch.inference_mode():
        for i, p in enumerate(prompts):  # prefill one by one, interleaving block allocation
            cache.add(i)
            view = cache.batch([i], len(p))
            book.run(torch.tensor([p]), cache=view, positions=view.positions)
        nxt = torch.randint(0, V, (len(prompts), 1), generator=g)
        view = cache.batch(list(range(len(prompts))), 1)
        assert view.mask is not None or len(set(lengths)) == 1
        got = book.run(nxt, cache=view, positions=view.positions, attn_mask=view.mask).logits
        for i, p in enumerate(prompts):
            ref = book(torch.tensor([p + [int(nxt[i])]]))[0, -1]
            assert torch.allclose(got[i, -1], ref, atol=1e-4), i
    assert {i: cache.lengths[i] for i in range(len(prompts))} == {
        i: n + 1 for i, n in enumerate(lengths)
    }


def test_blocks_are_freed_and_reused(tiny_config):
    cache = PagedKVCache(tiny_config, num_blocks=6, block_tokens=4)
    for s in "abc":
        cache.add(s)
    cache.reserve("a", 5)  # 2 blocks
    cache.reserve("b", 4)  # 1 block
    cache.reserve("c", 9)  # 3 blocks
    assert cache.tables == {"a": [0, 1], "b": [2], "c": [3, 4, 5]}
    assert cache.num_free == 0
    cache.free("a")
    assert cache.num_free == 2 and cache.owner_map() == [None, None, "b", "c", "c", "c"]
    cache.add("d")
    cache.reserve("d", 3)
    assert cache.tables["d"] == [0]  # the freed block is the next one handed out
    cache.reserve("d", 3)  # already enough: nothing taken
    assert cache.tables["d"] == [0]


def test_exhausted_pool_is_a_clear_error_and_corrupts_nothing(book):
    prompt = [5, 6, 7, 8, 9]
    cache = PagedKVCache.for_model(book, num_blocks=3, block_tokens=4)
    cache.add("a")
    with torch.inference_mode():
        view = cache.batch(["a"], len(prompt))
        book.run(torch.tensor([prompt]), cache=view, positions=view.positions)
    k_before = [k.clone() for k in cache.k]
    tables = {s: list(t) for s, t in cache.tables.items()}
    cache.add("b")
    with pytest.raises(PoolExhausted, match="exhausted.*2 more block.*1 of 3 free"):
        cache.reserve("b", 8)
    with pytest.raises(PoolExhausted):  # a batch that needs 2 new blocks, 1 free: none taken
        cache.batch(["a", "b"], 4)
    assert cache.tables == tables | {"b": []} and cache.num_free == 1
    assert all(torch.equal(a, b) for a, b in zip(k_before, cache.k, strict=True))
    # the running sequence goes on, and matches generate
    assert (
        paged_generate_continue(book, cache, "a", prompt, 3)
        == generate(book, prompt, 3, temperature=0)[0].tolist()
    )


def paged_generate_continue(model, cache, seq, prompt, n):
    """Continue ``seq`` (whose prompt is already cached) greedily, the first token recomputed from
    the contiguous model for the prompt's last logits."""
    ids = list(prompt)
    with torch.inference_mode():
        ids.append(int(model(torch.tensor([prompt]))[0, -1].argmax()))
        for _ in range(n - 1):
            view = cache.batch([seq], 1)
            out = model.run(torch.tensor([[ids[-1]]]), cache=view, positions=view.positions)
            ids.append(int(out.logits[0, -1].argmax()))
    return ids


def test_bad_arguments(tiny_config):
    with pytest.raises(ValueError, match="num_blocks"):
        PagedKVCache(tiny_config, 0, 4)
    with pytest.raises(TypeError, match="block_tokens"):
        PagedKVCache(tiny_config, 4, 2.0)
    with pytest.raises(TypeError, match="GPTConfig"):
        PagedKVCache({}, 4, 4)
    cache = PagedKVCache(tiny_config, 4, 8)
    with pytest.raises(KeyError, match="unknown sequence"):
        cache.reserve("x", 3)
    cache.add("x")
    with pytest.raises(ValueError, match="already"):
        cache.add("x")
    with pytest.raises(ValueError, match="block_size"):
        cache.reserve("x", tiny_config.block_size + 1)
    with pytest.raises(ValueError, match="twice"):
        cache.batch(["x", "x"], 1)
    with pytest.raises(ValueError, match="made for 1 sequences"):
        cache.batch(["x"], 2).check(1, 1)


def test_nbytes(tiny_config):
    cache = PagedKVCache(tiny_config, 5, 4)
    c = tiny_config
    assert cache.nbytes() == 2 * c.n_layer * 5 * 4 * c.n_embd * 4


def test_truncate_forgets_positions_and_invalidates_older_views(book):
    """truncate(seq, n) is the paged rollback: the next pass rewrites from position n, and a view
    made before the truncation is refused (it would write at the old length)."""
    cache = PagedKVCache.for_model(book, num_blocks=4, block_tokens=4)
    cache.add("a")
    with torch.inference_mode():
        view = cache.batch(["a"], 5)
        book.run(torch.tensor([[1, 2, 3, 4, 5]]), cache=view)
        old = cache.batch(["a"], 1)
        cache.truncate("a", 3)
        assert cache.lengths["a"] == 3 and cache.tables["a"] == [0, 1]
        with pytest.raises(ValueError, match="'a' holds 3 tokens now.*held 5"):
            book.run(torch.tensor([[6]]), cache=old)
        new = cache.batch(["a"], 1)
        got = book.run(torch.tensor([[9]]), cache=new).logits[0, -1]
    assert torch.allclose(got, book(torch.tensor([[1, 2, 3, 9]]))[0, -1], atol=1e-4)
    with pytest.raises(ValueError, match=r"n_tokens must be in \[0, 4\]"):
        cache.truncate("a", 5)
    with pytest.raises(TypeError, match="n_tokens must be an int"):
        cache.truncate("a", 1.0)
    with pytest.raises(ValueError, match="unknown sequence 'b'"):
        cache.truncate("b", 0)


def test_the_pool_holds_each_heads_block_as_a_matrix(tiny_config):
    """``k[layer]`` is ``(num_blocks, H, block_tokens, d_head)``: a block of one head is a
    ``(block_tokens, d_head)`` matrix that attention multiplies in place."""
    cache = PagedKVCache(tiny_config, num_blocks=5, block_tokens=3)
    shape = (5, tiny_config.n_head, 3, tiny_config.d_head)
    assert all(t.shape == shape for t in cache.k + cache.v)


def packed_passes(model, cache, prompts, chunks, reads):
    """Feed ``prompts`` through packed passes, ``chunks[s]`` giving each pass's token counts;
    returns each prompt's logits, ``(len(prompt), V)``, gathered from the passes."""
    done, got = [0] * len(prompts), [[] for _ in prompts]
    for i in range(len(prompts)):
        cache.add(i)
    with torch.inference_mode():
        for step in chunks:
            seqs = [i for i, n in enumerate(step) if n]
            counts = [step[i] for i in seqs]
            ids = [t for i in seqs for t in prompts[i][done[i] : done[i] + step[i]]]
            logits = cache.packed(seqs, counts, reads=reads).run(model, torch.tensor([ids]))
            a = 0
            for i, n in zip(seqs, counts, strict=True):
                got[i].append(logits.logits[0, a : a + n])
                a, done[i] = a + n, done[i] + n
    return [torch.cat(g) for g in got]


def random_chunks(rng, lengths):
    """Passes that each take 0..7 more tokens of every prompt (at least one token per pass)."""
    left, passes = list(lengths), []
    while any(left):
        step = [min(n, rng.randint(0, 7)) for n in left]
        if not any(step):
            step[left.index(next(n for n in left if n))] = 1
        passes.append(step)
        left = [n - s for n, s in zip(left, step, strict=True)]
    return passes


@settings(max_examples=8, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 30), min_size=1, max_size=4),
    block_tokens=st.sampled_from([1, 3, 16]),
    seed=st.integers(0, 1000),
    spread=st.booleans(),
)
def test_packed_passes_read_in_place_equal_the_gather_and_the_unpaged_model(
    book, lengths, block_tokens, seed, spread
):
    """Prompts fed in chunks of any sizes, several sequences per pass (one-token rows and chunks
    mixed): the blocks read in place give the gather's logits and the model's own without a cache.
    ``spread``: other sequences hold 7 blocks of every 8 (a sequence's blocks lie far apart: the
    scattered-blocks path)."""
    import random

    rng = random.Random(seed)
    prompts = [[rng.randrange(book.config.vocab_size) for _ in range(n)] for n in lengths]
    chunks = random_chunks(rng, lengths)
    out = {}
    for reads in ("blocks", "gather"):
        cache = PagedKVCache.for_model(book, num_blocks=400, block_tokens=block_tokens)
        if spread:  # fragment the pool: every other block held by a sequence that stays
            for b in range(80):
                cache.add(("pad", b))
                cache.reserve(("pad", b), block_tokens)
                if b % 8 == 7:
                    cache.free(("pad", b))
        out[reads] = packed_passes(book, cache, prompts, chunks, reads)
    with torch.inference_mode():
        for p, a, b in zip(prompts, out["blocks"], out["gather"], strict=True):
            alone = book(torch.tensor([p]))[0]
            assert torch.allclose(a, alone, atol=2e-5), (a - alone).abs().max()
            assert torch.allclose(b, alone, atol=2e-5), (b - alone).abs().max()


def test_a_packed_view_reads_blocks_in_place_without_gathering(book, monkeypatch):
    """Decode rows of sequences whose blocks lie close together read a slice of the pool (a view):
    no advanced indexing of the pool happens in attention."""
    from nexttoken.paged import PackedBatch

    cache = PagedKVCache.for_model(book, num_blocks=16, block_tokens=4)
    with torch.inference_mode():
        for s, p in (("a", [1, 2, 3, 4, 5]), ("b", [6, 7])):
            cache.add(s)
            cache.packed([s], [len(p)]).run(book, torch.tensor([p]))
        view = cache.packed(["a", "b"], [1, 1])
        assert view._one_blocks == slice(0, 3)  # a: blocks 0, 1; b: block 2
        seen = []
        real = PackedBatch._one_blocks_attend

        def spy(self, kp, vp, q1):
            seen.append((kp[self._one_blocks].data_ptr(), kp.data_ptr()))
            return real(self, kp, vp, q1)

        monkeypatch.setattr(PackedBatch, "_one_blocks_attend", spy)
        view.run(book, torch.tensor([[9, 10]]))
    assert seen and all(a == b for a, b in seen)  # the keys read start at the pool's own memory


def test_blocks_far_apart_are_indexed_and_give_the_same_logits(book):
    cache = PagedKVCache.for_model(book, num_blocks=64, block_tokens=1)
    for b in range(40):  # the free blocks: 7, 15, 23, 31, 39, then 40..63
        cache.add(("pad", b))
        cache.reserve(("pad", b), 1)
    for b in range(7, 40, 8):
        cache.free(("pad", b))
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    with torch.inference_mode():
        cache.add("a")
        cache.packed(["a"], [7]).run(book, torch.tensor([prompt[:7]]))
        view = cache.packed(["a"], [1])
        assert torch.is_tensor(view._one_blocks)  # blocks 7, 15, ..., 39, 40, 41, 42: indexed
        got = view.run(book, torch.tensor([prompt[7:]])).logits[0, -1]
        assert torch.allclose(got, book(torch.tensor([prompt]))[0, -1], atol=2e-5)


def test_logits_at_projects_only_those_positions(book):
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.inference_mode():
        full = book.run(ids).logits
        some = book.run(ids, logits_at=torch.tensor([4, 1])).logits
    assert some.shape == (1, 2, book.config.vocab_size)
    assert torch.allclose(some[0, 0], full[0, 4], atol=1e-5)
    assert torch.allclose(some[0, 1], full[0, 1], atol=1e-5)
