"""Hostile input to the serving code (batching, paged, serve, speculative).

Every public argument is checked before any work, with a message naming it and its allowed values;
a paged view that outlived its sequence, or is used twice, or runs with positions or a mask other
than its own, fails before it writes; the engine never hands out an id twice, can release what it served,
and a refused request leaves it exactly as it was.
"""

from __future__ import annotations

import functools

import pytest
import torch

import nexttoken.paged as paged_module
from nexttoken import load_book_model
from nexttoken.batching import check_prompts, generate_batch, padded_batch
from nexttoken.generate import generate
from nexttoken.model import GPT, GPTConfig
from nexttoken.paged import PagedBatch, PagedKVCache, blocks_for, pool_bytes
from nexttoken.serve import Engine
from nexttoken.speculative import (
    accept_or_resample,
    expected_tokens_per_round,
    predicted_tokens_per_s,
    residual,
    rollback,
    speculative_generate,
)

CFG = GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=2, n_embd=32, name="tiny")
DRAFT = GPTConfig(vocab_size=97, block_size=24, n_layer=1, n_head=2, n_embd=16, name="draft")


@functools.cache
def _model(config: GPTConfig = CFG) -> GPT:
    torch.manual_seed(0)
    return GPT(config).eval()


@pytest.fixture(scope="module")
def book():
    return load_book_model()


def _alone(model, prompt, n, **kw):
    return generate(model, prompt, n, temperature=0, **kw)[0].tolist()


# --- the engine: ids, memory, history --------------------------------------------------------


def test_dropping_a_finished_request_never_hands_its_id_to_a_live_one(book):
    """A server that drops finished requests to bound its memory (today's bug: the next id was
    ``len(requests)``, a live request's id; the next step failed and both requests were lost)."""
    engine = Engine(book, max_batch=2, num_blocks=16, block_tokens=8)
    a = engine.add_request([1, 2, 3], 2, temperature=0)
    b = engine.add_request([4, 5], 8, temperature=0)
    engine.step()
    engine.step()
    assert engine.requests[a].state == "finished" and engine.requests[b].state == "running"
    del engine.requests[a]
    c = engine.add_request([6, 7, 8], 4, temperature=0)
    assert len({a, b, c}) == 3
    res = engine.run()
    assert res[b] == _alone(book, [4, 5], 8)
    assert res[c] == _alone(book, [6, 7, 8], 4)


def test_pop_results_releases_what_was_served(book):
    """A long-running engine holds only its waiting and running requests once results are popped;
    ids keep counting up, and every request gets the tokens generate gives it alone."""
    engine = Engine(book, max_batch=2, num_blocks=12, block_tokens=4)
    work, served = {}, {}
    for i in range(10):
        prompt, n = [1 + 7 * i, 2 + i], 1 + i % 4
        work[engine.add_request(prompt, n, temperature=0)] = (prompt, n)
        engine.step()
        served.update(engine.pop_results())
        assert len(engine.requests) == len(engine.waiting) + len(engine.running)
    while engine.has_work():
        engine.step()
    served.update(engine.pop_results())
    assert engine.requests == {} and engine.pop_results() == {}
    assert sorted(served) == list(range(10))
    for i, (prompt, n) in work.items():
        assert served[i] == _alone(book, prompt, n), i


def test_history_is_bounded_or_off():
    m = _model()
    engine = Engine(m, max_batch=1, num_blocks=4, block_tokens=8, keep_history=3)
    engine.add_request([1, 2], 6, temperature=0)
    engine.run()
    assert engine.steps == 6
    assert [h["step"] for h in engine.history] == [4, 5, 6]
    off = Engine(m, max_batch=1, num_blocks=4, block_tokens=8, keep_history=0)
    off.add_request([1, 2], 6, temperature=0)
    off.run()
    assert off.history == [] and off.results() == engine.results()
    assert Engine(m, max_batch=1, num_blocks=4, block_tokens=8).keep_history == 10_000


@pytest.mark.parametrize("where", ["run", "layer", "argmax"])
def test_a_step_that_fails_half_way_loses_no_request(book, monkeypatch, where):
    """Step 2's one pass (two decode tokens, two new prompts, the second split by the token budget)
    fails once: as the model starts (``run``), in its third layer after two layers wrote their keys
    (``layer``), or after the pass wrote everything, before the tokens are chosen (``argmax``).
    The next steps redo what is missing: every request gets generate's tokens alone."""
    from nexttoken.paged import PackedBatch

    engine = Engine(book, max_batch=4, num_blocks=16, block_tokens=8, max_step_tokens=6)
    work = {}
    for p, n in (([1, 2, 3], 5), ([4, 5], 6)):
        work[engine.add_request(p, n, temperature=0)] = (p, n)
    engine.step()  # one pass: both prompts
    for p, n in (([6, 7, 8, 9], 4), ([10, 11], 3)):
        work[engine.add_request(p, n, temperature=0)] = (p, n)
    calls = []

    def fail(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt("the reader pressed stop")

    if where == "run":
        monkeypatch.setattr(book, "run", fail)
    elif where == "layer":
        real = PackedBatch.attend

        def attend(self, layer, *args):
            if layer == 2:
                fail()
            return real(self, layer, *args)

        monkeypatch.setattr(PackedBatch, "attend", attend)
    else:
        real_argmax = torch.Tensor.argmax
        monkeypatch.setattr(torch.Tensor, "argmax", lambda *a, **k: fail())
    with pytest.raises(KeyboardInterrupt):
        engine.step()
    assert calls == [1]
    monkeypatch.undo()
    if where == "argmax":
        assert torch.Tensor.argmax is real_argmax
    res = engine.run()
    assert {i: res[i] for i in work} == {i: _alone(book, p, n) for i, (p, n) in work.items()}
    assert engine.cache.num_free == engine.cache.num_blocks


def test_a_model_moved_to_another_dtype_mid_run_is_refused_and_loses_nothing(book):
    import copy

    model = copy.deepcopy(book)
    engine = Engine(model, max_batch=2, num_blocks=16, block_tokens=8)
    work = {engine.add_request([1, 2, 3], 5, temperature=0): ([1, 2, 3], 5)}
    engine.step()
    work[engine.add_request([4, 5, 6, 7], 4, temperature=0)] = ([4, 5, 6, 7], 4)
    before = _engine_state(engine)
    model.double()
    with pytest.raises(ValueError, match="weights are torch.float64.*made for torch.float32"):
        engine.step()
    assert _same_state(before, _engine_state(engine))
    model.float()
    res = engine.run()
    assert {i: res[i] for i in work} == {i: _alone(book, p, n) for i, (p, n) in work.items()}


def _engine_state(engine):
    """Everything a refused request must leave as it was."""
    cache = engine.cache
    return (
        {i: (r.state, list(r.tokens), r.slot) for i, r in engine.requests.items()},
        [r.id for r in engine.waiting],
        [None if r is None else r.id for r in engine.slots],
        engine.steps,
        len(engine.history),
        {s: list(t) for s, t in cache.tables.items()},
        dict(cache.lengths),
        cache.num_free,
        [t.clone() for t in cache.k + cache.v],
    )


def _same_state(a, b):
    return a[:-1] == b[:-1] and all(torch.equal(x, y) for x, y in zip(a[-1], b[-1], strict=True))


BAD_REQUESTS = [
    (([], 3), {}, ValueError, "empty"),
    (([1, 2], -1), {}, ValueError, "max_new_tokens"),
    (([1, 2], 3.0), {}, TypeError, "max_new_tokens"),
    (([1, 2], 3), {"temperature": float("nan")}, ValueError, "temperature"),
    (([1, 97], 3), {}, ValueError, "prompt: token id 97 is out of range"),
    (("hello", 3), {}, TypeError, "prompt must be a list of token ids"),
    (([1, 2], 3), {"top_k": 0}, ValueError, "top_k"),
    (([1, 2], 3), {"generator": 7}, TypeError, "generator"),
    (([1, 2], 3), {"stop_token": 97}, ValueError, "stop_token"),
    (([1] * 20, 10), {}, ValueError, "block_size"),
    (([1] * 10, 10), {}, ValueError, "could never run"),
    ((torch.tensor([[1, 2]]), 3), {}, TypeError, "1-D"),
]


@pytest.mark.parametrize("args, kw, err, match", BAD_REQUESTS)
def test_a_refused_request_leaves_the_engine_as_it_was(args, kw, err, match):
    m = _model()
    engine = Engine(m, max_batch=2, num_blocks=4, block_tokens=4)
    first = engine.add_request([3, 4, 5], 4, temperature=0)
    engine.step()
    engine.add_request([6], 2, temperature=0)  # waits: the pool is full
    before = _engine_state(engine)
    with pytest.raises(err, match=match):
        engine.add_request(*args, **kw)
    assert _same_state(before, _engine_state(engine))
    third = engine.add_request([7, 8], 2, temperature=0)
    assert third == first + 2  # the refused request took no id
    res = engine.run()
    assert res[third] == _alone(m, [7, 8], 2)


def test_a_clock_that_is_not_a_clock_is_refused_before_anything_is_added():
    engine = Engine(_model(), max_batch=1, num_blocks=4, block_tokens=4, clock=lambda: "noon")
    before = _engine_state(engine)
    with pytest.raises(TypeError, match="clock must return a number of seconds"):
        engine.add_request([1, 2], 2)
    assert _same_state(before, _engine_state(engine))


# --- the paged cache: a view writes once, only to live sequences ------------------------------


def _prefill(model, cache, seq, prompt):
    cache.add(seq)
    view = cache.batch([seq], len(prompt))
    model.run(torch.tensor([prompt]), cache=view, positions=view.positions, attn_mask=view.mask)


def _decode_logits(model, cache, seq, token):
    view = cache.batch([seq], 1)
    out = model.run(torch.tensor([[token]]), cache=view, positions=view.positions)
    return out.logits[0, -1]


def _pool(cache):
    return [t.clone() for t in cache.k + cache.v], dict(cache.lengths), dict(cache.tables)


def _same_pool(a, b):
    return a[1:] == b[1:] and all(torch.equal(x, y) for x, y in zip(a[0], b[0], strict=True))


@pytest.mark.parametrize("same_name", [False, True])
def test_a_view_that_outlived_its_sequence_fails_before_writing(book, same_name):
    """Today the stale view writes into the blocks of the sequence that reused them (moving its
    logits), then dies with a bare KeyError."""
    cache = PagedKVCache.for_model(book, num_blocks=4, block_tokens=4)
    other = "a" if same_name else "b"
    with torch.inference_mode():
        _prefill(book, cache, "a", [1, 2, 3, 4, 5])
        stale = cache.batch(["a"], 1)
        cache.free("a")
        _prefill(book, cache, other, [9, 8, 7, 6, 5, 4])  # reuses a's blocks
        before = _pool(cache)
        with pytest.raises(ValueError, match="stale.*'a'.*freed"):
            book.run(
                torch.tensor([[7]]), cache=stale, positions=stale.positions, attn_mask=stale.mask
            )
        assert _same_pool(before, _pool(cache))
        got = _decode_logits(book, cache, other, 3)
    ref = book(torch.tensor([[9, 8, 7, 6, 5, 4, 3]]))[0, -1]
    assert torch.allclose(got, ref, atol=1e-4)


def test_a_view_serves_one_forward_pass(book):
    cache = PagedKVCache.for_model(book, num_blocks=4, block_tokens=4)
    with torch.inference_mode():
        _prefill(book, cache, "a", [1, 2, 3, 4, 5])
        view = cache.batch(["a"], 1)
        book.run(torch.tensor([[7]]), cache=view, positions=view.positions)
        before = _pool(cache)
        with pytest.raises(ValueError, match="already used.*one forward pass"):
            book.run(torch.tensor([[8]]), cache=view, positions=view.positions)
        assert _same_pool(before, _pool(cache))
        got = _decode_logits(book, cache, "a", 8)
    assert torch.allclose(got, book(torch.tensor([[1, 2, 3, 4, 5, 7, 8]]))[0, -1], atol=1e-4)


def test_two_views_of_one_sequence_only_the_first_runs(book):
    cache = PagedKVCache.for_model(book, num_blocks=4, block_tokens=4)
    with torch.inference_mode():
        _prefill(book, cache, "a", [1, 2, 3])
        first, second = cache.batch(["a"], 1), cache.batch(["a"], 1)
        book.run(torch.tensor([[7]]), cache=first, positions=first.positions)
        before = _pool(cache)
        with pytest.raises(ValueError, match="'a' holds 4 tokens now.*made when it held 3"):
            book.run(torch.tensor([[8]]), cache=second, positions=second.positions)
        assert _same_pool(before, _pool(cache))


@pytest.mark.parametrize("give", ["nothing", "positions", "mask", "both"])
def test_a_ragged_view_run_without_its_positions_and_mask_gets_its_own(book, give):
    """GPT.run asks the view for its inputs: without them (or with its own) every row sits at its
    own position and sees only its own keys (before: every row at the longest row's position)."""
    cache = PagedKVCache.for_model(book, num_blocks=8, block_tokens=4)
    with torch.inference_mode():
        _prefill(book, cache, "a", [1, 2, 3, 4, 5])
        _prefill(book, cache, "b", [6, 7, 8])
        view = cache.batch(["a", "b"], 1)
        kw = {
            "nothing": {},
            "positions": {"positions": view.positions},
            "mask": {"attn_mask": view.mask},
            "both": {"positions": view.positions, "attn_mask": view.mask},
        }[give]
        got = book.run(torch.tensor([[9], [10]]), cache=view, **kw).logits[:, -1]
    assert torch.allclose(got[0], book(torch.tensor([[1, 2, 3, 4, 5, 9]]))[0, -1], atol=1e-4)
    assert torch.allclose(got[1], book(torch.tensor([[6, 7, 8, 10]]))[0, -1], atol=1e-4)


@pytest.mark.parametrize("give", ["positions", "mask", "no mask"])
def test_a_paged_view_run_with_other_positions_or_mask_is_refused(book, give):
    cache = PagedKVCache.for_model(book, num_blocks=8, block_tokens=4)
    with torch.inference_mode():
        _prefill(book, cache, "a", [1, 2, 3, 4, 5])
        _prefill(book, cache, "b", [6, 7, 8])
        view = cache.batch(["a", "b"], 1)
        kw = {
            "positions": {"positions": torch.tensor([[5], [5]])},
            "mask": {"attn_mask": torch.ones_like(view.mask)},
            "no mask": {"attn_mask": torch.ones(2, 1, 1, 6, dtype=torch.bool)},
        }[give]
        before = _pool(cache)
        with pytest.raises(ValueError, match="differ.* from this PagedBatch's own.*Nothing was"):
            book.run(torch.tensor([[9], [10]]), cache=view, **kw)
        assert _same_pool(before, _pool(cache))
        got = view.run(book, torch.tensor([[9], [10]])).logits[:, -1]  # still unused: it runs
    assert torch.allclose(got[1], book(torch.tensor([[6, 7, 8, 10]]))[0, -1], atol=1e-4)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda m: PagedKVCache(m.config, 4, 4, dtype=torch.float64), "dtype.*float64.*float32"),
        (
            lambda m: PagedKVCache(GPTConfig(97, 24, 2, n_head=4, n_embd=32), 4, 4),
            "made for 4 heads of 8.*2 heads of 16",
        ),
        (
            lambda m: PagedKVCache(GPTConfig(97, 24, 1, n_head=2, n_embd=32), 4, 4),
            "made for 1 layer",
        ),
    ],
)
def test_a_pool_that_does_not_match_the_model_is_refused_before_writing(make, match):
    m = _model()
    cache = make(m)
    cache.add("a")
    view = cache.batch(["a"], 3)
    before = _pool(cache)
    with torch.inference_mode(), pytest.raises(ValueError, match=match):
        view.run(m, torch.tensor([[1, 2, 3]]))
    assert _same_pool(before, _pool(cache))


# --- every public argument checked, with its name and allowed values ---------------------------


def _cache():
    cache = PagedKVCache(CFG, 4, 8)
    cache.add("x")
    return cache


def _kv_cache():
    return _model().new_cache(1, 8)


def _meta_draft():
    with torch.device("meta"):
        return GPT(DRAFT)


_P = torch.tensor([0.5, 0.3, 0.2])
_Q = torch.tensor([0.2, 0.3, 0.5])

ERRORS = [
    # paged
    (lambda: PagedKVCache(CFG, 4, 4, dtype=torch.int64), TypeError, "dtype must be a floating"),
    (lambda: PagedKVCache(CFG, 4, 4, dtype="float32"), TypeError, "dtype must be a floating"),
    (lambda: PagedKVCache(CFG, 4, 25), ValueError, r"block_tokens must be in \[1, 24\]"),
    (lambda: PagedKVCache(CFG, 10**12, 1), ValueError, "num_blocks.*needs .* of memory"),
    (lambda: PagedKVCache(CFG, 4, 4, device="nowhere"), ValueError, "device"),
    (lambda: PagedKVCache.for_model("gpt2", 4, 4), TypeError, "model must be a nexttoken GPT"),
    (lambda: PagedKVCache(CFG, 4, 4, device=1.5), TypeError, "device must be a torch.device"),
    (lambda: blocks_for(-1, 4), ValueError, "n_tokens must be >= 0"),
    (lambda: blocks_for(5, 0), ValueError, "block_tokens must be >= 1"),
    (lambda: blocks_for(5.5, 2), TypeError, "n_tokens must be an int"),
    (lambda: _cache().add(None), ValueError, "sequence id must not be None"),
    (lambda: _cache().add(["y"]), TypeError, "sequence id must be hashable"),
    (lambda: _cache().reserve("x", -3), ValueError, "n_tokens must be >= 0"),
    (lambda: _cache().reserve("x", 2.5), TypeError, "n_tokens must be an int"),
    (lambda: _cache().batch("x", 1), TypeError, "seqs must be a list"),
    (lambda: _cache().batch(["zz"], 1), ValueError, "unknown sequence 'zz'"),
    (lambda: _cache().free("zz"), ValueError, "unknown sequence 'zz'"),
    (lambda: _cache().capacity("zz"), ValueError, "unknown sequence 'zz'"),
    (lambda: PagedBatch(_cache(), ["x"], 1), ValueError, "'x' has room for 0 tokens, 1 needed"),
    (lambda: PagedBatch(_cache(), ["zz"], 1), ValueError, "unknown sequence 'zz'"),
    (lambda: PagedBatch("pool", ["x"], 1), TypeError, "cache must be a PagedKVCache"),
    (lambda: PagedBatch(_cache(), [], 1), ValueError, "at least one sequence"),
    (lambda: pool_bytes(CFG, 4, 4, torch.int8), TypeError, "dtype must be a floating"),
    (lambda: pool_bytes(CFG, 0, 4, torch.float32), ValueError, "num_blocks must be >= 1"),
    # serve
    (lambda: Engine(_model(), max_batch=8, num_blocks=4, block_tokens=4), ValueError,
     r"max_batch \(8\) .* num_blocks \(4\)"),
    (lambda: Engine(_model(), max_batch=2, num_blocks=10**12, block_tokens=1), ValueError,
     "num_blocks.*needs .* of memory"),
    (lambda: Engine(_model(), max_batch=2, num_blocks=4, block_tokens=4, keep_history=-1),
     ValueError, "keep_history must be >= 0"),
    (lambda: Engine(_model(), max_batch=2, num_blocks=4, block_tokens=4, keep_history=2.0),
     TypeError, "keep_history must be an int"),
    # batching
    (lambda: padded_batch([]), ValueError, "prompts is empty"),
    (lambda: padded_batch([[1.5, 2]]), TypeError, "prompt 0 must be a list of token ids"),
    (lambda: padded_batch([[-3, 2]]), ValueError, "token id -3"),
    (lambda: padded_batch([[1, 2]], pad_id=-1), ValueError, "pad_id must be >= 0"),
    (lambda: padded_batch([[1, 2]], pad_id=1.5), TypeError, "pad_id must be an int"),
    (lambda: padded_batch([[1, 2]], device="nowhere"), ValueError, "device must name a torch"),
    (lambda: check_prompts([[1]], 0), ValueError, "vocab_size must be >= 1"),
    (lambda: check_prompts([[1]], "97"), TypeError, "vocab_size must be an int"),
    # speculative
    (lambda: speculative_generate(_model(), _model(DRAFT), [1], 3, k=1.5), TypeError,
     "k .*must be an int"),
    (lambda: speculative_generate(_model(), _meta_draft(), [1], 3), ValueError,
     "draft .*meta.*target .*cpu"),
    (lambda: expected_tokens_per_round(0.5, -1), ValueError, "k must be >= 0"),
    (lambda: expected_tokens_per_round(0.5, 2.5), TypeError, "k must be an int"),
    (lambda: expected_tokens_per_round("0.5", 2), TypeError, "alpha must be a number"),
    (lambda: predicted_tokens_per_s(0.0, 0.0, 2, 1.5), ValueError, "verify_s must be > 0"),
    (lambda: predicted_tokens_per_s(-1e-3, 0.01, 2, 1.5), ValueError, "draft_step_s must be >= 0"),
    (lambda: predicted_tokens_per_s(1e-3, float("nan"), 2, 1.5), ValueError, "verify_s"),
    (lambda: predicted_tokens_per_s(1e-3, 0.01, 2, 0.0), ValueError,
     r"tokens_per_round must be in \[1, 3\]"),
    (lambda: rollback(_kv_cache(), 1.5), TypeError, "length must be an int"),
    (lambda: rollback("cache", 1), TypeError, "cache must be a nexttoken KVCache"),
    (lambda: residual(_P, torch.tensor([1.0])), ValueError, "same shape"),
    (lambda: residual(_P.tolist(), _Q), TypeError, "p must be a 1-D float tensor"),
    (lambda: accept_or_resample(5, _P, _Q), ValueError, r"x must be a token id in \[0, 2\]"),
    (lambda: accept_or_resample(True, _P, _Q), TypeError, "x must be a token id"),
    (lambda: accept_or_resample(1, _P, _Q, generator=0), TypeError,
     "generator must be a torch.Generator"),
]  # fmt: skip


@pytest.mark.parametrize("call, err, match", ERRORS)
def test_bad_arguments_are_clear_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_pool_on_a_missing_gpu_is_refused():
    with pytest.raises(ValueError, match="'cuda': CUDA is not available"):
        PagedKVCache(CFG, 4, 4, device="cuda")


def test_update_refuses_keys_of_another_shape_before_writing():
    cache = _cache()
    cache.reserve("x", 2)
    view = PagedBatch(cache, ["x"], 2)
    view.check(1, 2)
    k = torch.zeros(1, 2, 3, 16)  # 3 new positions, the view was made for 2
    before = _pool(cache)
    with pytest.raises(ValueError, match=r"k must be a \(B=1, H, n_new=2, d_head\) tensor"):
        view.update(0, k, k)
    assert _same_pool(before, _pool(cache))


def test_an_engine_whose_batch_does_not_fit_is_refused(monkeypatch):
    """GPT-2's shape (on the meta device: nothing allocated), a device with 20 GB: a pool of
    10,000 blocks of 16 tokens (11.8 GB) fits with 8 slots, not with 10,000 (each slot's step
    gathers up to 1,024 positions of keys and values and projects a row of 50,257 logits: 128 GB
    more)."""
    monkeypatch.setattr(paged_module, "device_memory", lambda device: 20 * 10**9)
    with torch.device("meta"):
        gpt2 = GPT(GPTConfig(n_layer=12, n_head=12, n_embd=768, name="gpt2-shape"))
    kw = {"num_blocks": 10_000, "block_tokens": 16}
    assert Engine(gpt2, max_batch=8, **kw).cache.nbytes() == 11_796_480_000
    with pytest.raises(
        ValueError, match="max_batch=10000.*pool 11.8 GB.*needs about 139.7 GB.*20.0 GB"
    ):
        Engine(gpt2, max_batch=10_000, **kw)


def test_generate_batch_refuses_a_batch_whose_cache_does_not_fit(monkeypatch):
    """The KV cache of ``B`` rows is estimated first and refused, with the numbers, when it does
    not fit the device (here: a device that pretends to have 1 MB)."""
    monkeypatch.setattr(paged_module, "device_memory", lambda device: 10**6)
    prompts = [[1 + i % 90, 2] for i in range(400)]  # 400 x 22 positions x 2 layers: 4.5 MB
    with pytest.raises(ValueError, match="400 prompts.*needs about .* MB.*1.0 MB available"):
        generate_batch(_model(), prompts, 20, temperature=0)
    assert len(generate_batch(_model(), prompts[:2], 20, temperature=0)) == 2


@pytest.mark.parametrize(
    "kw, err, match",
    [
        ({"max_step_tokens": 0}, ValueError, "max_step_tokens must be >= 1"),
        ({"max_step_tokens": 25}, ValueError, r"max_step_tokens must be in \[1, 24\]"),
        ({"max_step_tokens": 2.0}, TypeError, "max_step_tokens must be an int"),
        ({"max_step_tokens": True}, TypeError, "max_step_tokens must be an int"),
        ({"reads": "copy"}, ValueError, "reads must be 'blocks' or 'gather'"),
    ],
)
def test_engine_step_budget_and_reads_are_checked(kw, err, match):
    with pytest.raises(err, match=match):
        Engine(_model(), max_batch=2, num_blocks=8, block_tokens=4, **kw)


def test_the_default_step_budget_fits_the_context():
    assert Engine(_model(), max_batch=2, num_blocks=8, block_tokens=4).max_step_tokens == 24


@pytest.mark.parametrize(
    "seqs, counts, kw, err, match",
    [
        (["a"], [0], {}, ValueError, "each count must be >= 1"),
        (["a"], [1, 1], {}, ValueError, "one number per sequence"),
        (["a"], 1, {}, TypeError, "counts must be a list"),
        (["a", "a"], [1, 1], {}, ValueError, "appears twice"),
        (["zz"], [1], {}, ValueError, "unknown sequence"),
        (["a"], [1], {"reads": "copy"}, ValueError, "reads must be 'blocks' or 'gather'"),
        (["a"], [30], {}, ValueError, "more than the context length"),
    ],
)
def test_bad_packed_views_are_refused_before_taking_blocks(seqs, counts, kw, err, match):
    cache = PagedKVCache.for_model(_model(), num_blocks=8, block_tokens=4)
    cache.add("a")
    with pytest.raises(err, match=match):
        cache.packed(seqs, counts, **kw)
    assert cache.num_free == 8 and cache.tables == {"a": []}


def test_a_packed_view_serves_one_pass_of_its_own_shape():
    model, cache = _model(), PagedKVCache.for_model(_model(), num_blocks=8, block_tokens=4)
    cache.add("a")
    cache.add("b")
    with torch.inference_mode():
        view = cache.packed(["a", "b"], [3, 2])
        before = _pool(cache)
        with pytest.raises(ValueError, match=r"ids of shape \(1, 5\).*\(1, 4\)"):
            model.run(torch.tensor([[1, 2, 3, 4]]), cache=view)
        with pytest.raises(ValueError, match="positions differ from this PackedBatch's own"):
            model.run(
                torch.tensor([[1, 2, 3, 4, 5]]), cache=view, positions=torch.zeros(1, 5).long()
            )
        with pytest.raises(ValueError, match="attn_mask differs"):
            model.run(
                torch.tensor([[1, 2, 3, 4, 5]]), cache=view,
                attn_mask=torch.ones(1, 1, 5, 5, dtype=torch.bool),
            )  # fmt: skip
        with pytest.raises(ValueError, match="returns no weights"):
            model.run(torch.tensor([[1, 2, 3, 4, 5]]), cache=view, output_attentions=True)
        assert _same_pool(before, _pool(cache))
        view = cache.packed(["a", "b"], [3, 2])  # the last one was stopped inside the pass
        view.run(model, torch.tensor([[1, 2, 3, 4, 5]]))
        with pytest.raises(ValueError, match="already used"):
            view.run(model, torch.tensor([[1, 2, 3, 4, 5]]))
        stale = cache.packed(["a"], [1])
        cache.packed(["a"], [1]).run(model, torch.tensor([[6]]))
        with pytest.raises(ValueError, match="stale.*holds 4 tokens now"):
            stale.run(model, torch.tensor([[7]]))
    assert cache.lengths == {"a": 4, "b": 2}


@pytest.mark.parametrize(
    "at, err, match",
    [
        ([1], TypeError, "logits_at must be a 1-D integer tensor"),
        (torch.tensor([0.0]), TypeError, "logits_at must be a 1-D integer tensor"),
        (torch.tensor([[0]]), TypeError, "logits_at must be a 1-D integer tensor"),
        (torch.tensor([3]), ValueError, r"each in \[0, 2\]"),
        (torch.tensor([-1]), ValueError, r"each in \[0, 2\]"),
        (torch.tensor([], dtype=torch.long), ValueError, "at least one position"),
    ],
)
def test_bad_logits_at(at, err, match):
    with pytest.raises(err, match=match):
        _model().run(torch.tensor([[1, 2, 3]]), logits_at=at)


def test_logits_at_and_last_only_together_are_refused():
    with pytest.raises(ValueError, match="last_only=True or logits_at, not both"):
        _model().run(torch.tensor([[1, 2, 3]]), logits_at=torch.tensor([0]), last_only=True)
