"""The continuous-batching engine: every request gets the tokens generate gives it alone."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nexttoken import load_book_model
from nexttoken.generate import generate
from nexttoken.serve import Engine


@pytest.fixture(scope="module")
def book():
    return load_book_model()


def drive(engine, arrivals):
    """Add each request at its arrival step, stepping the engine; returns ids -> (prompt, n, kw)."""
    pending = sorted(arrivals, key=lambda a: a[0])
    added, step = {}, 0
    while pending or engine.has_work():
        while pending and pending[0][0] <= step:
            _, p, n, kw = pending.pop(0)
            added[engine.add_request(p, n, temperature=0, **kw)] = (p, n, kw)
        engine.step()
        step += 1
    return added


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    max_batch=st.integers(1, 5),
    block_tokens=st.sampled_from([1, 4, 16]),
    n_requests=st.integers(1, 8),
    max_step_tokens=st.sampled_from([1, 2, 3, 5, 8, 24, 128]),
    reads=st.sampled_from(["blocks", "gather"]),
)
def test_continuous_batching_equals_generate_alone(
    book, seed, max_batch, block_tokens, n_requests, max_step_tokens, reads
):
    """Requests arriving at random steps, prompts split into chunks by any token budget (from one
    token a step up), attention read in place or gathered: every request gets generate's tokens."""
    rng = random.Random(seed)
    V = book.config.vocab_size
    arrivals = []
    for _ in range(n_requests):
        p = [rng.randrange(V) for _ in range(rng.randint(1, 24))]
        arrivals.append((rng.randint(0, 12), p, rng.randint(0, 14), {}))
    engine = Engine(
        book, max_batch=max_batch, num_blocks=80, block_tokens=block_tokens,
        max_step_tokens=max_step_tokens, reads=reads,
    )  # fmt: skip
    added = drive(engine, arrivals)
    results = engine.results()
    assert set(results) == set(added)
    for i, (p, n, _) in added.items():
        assert results[i] == generate(book, p, n, temperature=0)[0].tolist(), i
    assert engine.cache.num_free == engine.cache.num_blocks  # every block came back
    assert engine.cache.tables == {}


def test_stop_tokens_and_a_tight_pool(book):
    """A pool that fits two requests at a time: the others wait, then reuse the freed blocks."""
    rng = random.Random(5)
    V = book.config.vocab_size
    prompts = [[rng.randrange(V) for _ in range(rng.randint(2, 10))] for _ in range(6)]
    stop = generate(book, prompts[2], 4, temperature=0)[0, -1].item()
    engine = Engine(book, max_batch=4, num_blocks=8, block_tokens=4)  # 16 + 16 tokens: 2 requests
    ids = [engine.add_request(p, 6, temperature=0, stop_token=stop) for p in prompts]
    most = 0
    while engine.has_work():
        engine.step()
        most = max(most, len(engine.running))
        assert engine.cache.num_free >= 0
    assert most == 2  # blocks, not slots, were the limit
    res = engine.results()
    for i, p in zip(ids, prompts, strict=True):
        assert res[i] == generate(book, p, 6, temperature=0, stop_token=stop)[0].tolist()
    assert res[ids[2]][-1] == stop and len(res[ids[2]]) == len(prompts[2]) + 4


def test_continuous_refills_a_slot_as_soon_as_one_leaves(book):
    lens = [2, 9, 3, 5]  # max_new_tokens per request; 2 slots
    engine = Engine(book, max_batch=2, num_blocks=40, block_tokens=4)
    for i, n in enumerate(lens):
        engine.add_request([1 + i, 2, 3], n, temperature=0)
    engine.run()
    r = engine.requests
    assert r[0].admit_step == 1 and r[0].finish_step == 2
    assert r[2].admit_step == 3  # joins in the step after request 0 left
    assert [s["slots"] for s in engine.history[:4]] == [[0, 1], [0, 1], [2, 1], [2, 1]]
    static = Engine(book, max_batch=2, num_blocks=40, block_tokens=4, static=True)
    for i, n in enumerate(lens):
        static.add_request([1 + i, 2, 3], n, temperature=0)
    assert static.run() == engine.results()
    assert static.requests[2].admit_step == 10  # waits for the whole first batch (9 tokens)
    assert static.steps > engine.steps


def test_sampled_requests_draw_like_generate(book):
    """Each request samples from its own row with its own generator, as generate does alone."""
    engine = Engine(book, max_batch=3, num_blocks=30, block_tokens=8)
    prompts = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    for i, p in enumerate(prompts):
        g = torch.Generator().manual_seed(i)
        engine.add_request(p, 8, temperature=0.8, top_k=40, generator=g)
    res = engine.run()
    for i, p in enumerate(prompts):
        g = torch.Generator().manual_seed(i)
        ref = generate(book, p, 8, temperature=0.8, top_k=40, generator=g)[0].tolist()
        assert res[i] == ref


def test_zero_new_tokens_and_history(book):
    engine = Engine(book, max_batch=2, num_blocks=4, block_tokens=8)
    a = engine.add_request([1, 2, 3], 0)
    assert engine.results() == {a: [1, 2, 3]}
    b = engine.add_request([4, 5], 3, temperature=0)
    engine.step()
    assert engine.history[-1]["slots"] == [b, None]
    assert engine.history[-1]["blocks"] == [b, None, None, None]
    engine.run()
    assert engine.requests[b].state == "finished"


@pytest.mark.parametrize(
    "args, kw, err, match",
    [
        (([], 3), {}, ValueError, "empty"),
        (([1, 2], -1), {}, ValueError, "max_new_tokens"),
        (([1, 2], 3), {"temperature": -1}, ValueError, "temperature"),
        (([1, 4096], 3), {}, ValueError, "out of range"),
        (([1, 2], 3), {"stop_token": True}, TypeError, "stop_token"),
        (([1] * 250, 10), {}, ValueError, "block_size"),
        (([1] * 100, 100), {}, ValueError, "could never run"),
    ],
)
def test_bad_requests_are_refused_at_once(book, args, kw, err, match):
    engine = Engine(book, max_batch=2, num_blocks=10, block_tokens=16)
    with pytest.raises(err, match=match):
        engine.add_request(*args, **kw)
    assert not engine.has_work()


def test_bad_engine_arguments(book):
    with pytest.raises(TypeError, match="GPT"):
        Engine(object(), max_batch=2, num_blocks=4, block_tokens=4)
    with pytest.raises(ValueError, match="max_batch"):
        Engine(book, max_batch=0, num_blocks=4, block_tokens=4)
    with pytest.raises(ValueError, match="num_blocks"):
        Engine(book, max_batch=1, num_blocks=0, block_tokens=4)
    with pytest.raises(TypeError, match="static"):
        Engine(book, max_batch=1, num_blocks=1, block_tokens=4, static=1)
    with pytest.raises(TypeError, match="clock"):
        Engine(book, max_batch=1, num_blocks=1, block_tokens=4, clock=0)


def test_clock_stamps_arrival_and_finish(book):
    ticks = iter(range(100))
    engine = Engine(book, max_batch=1, num_blocks=4, block_tokens=8, clock=lambda: next(ticks))
    rid = engine.add_request([1, 2], 2, temperature=0)
    engine.run()
    r = engine.requests[rid]
    assert (r.arrival_time, r.finish_time) == (0, 1)


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    max_batch=st.integers(1, 4),
    block_tokens=st.sampled_from([1, 4, 16]),
)
def test_a_server_that_pops_and_drops_results_serves_every_request_right(
    book, seed, max_batch, block_tokens
):
    """Requests arrive at random steps; the server pops finished results at random steps and
    sometimes drops one unread: ids never repeat, memory holds only what is waiting, running or
    unread, and every popped result is what generate gives alone."""
    rng = random.Random(seed)
    V = book.config.vocab_size
    engine = Engine(
        book, max_batch=max_batch, num_blocks=40, block_tokens=block_tokens, keep_history=4
    )
    asked, popped, dropped = {}, {}, set()
    for _ in range(40):
        if len(asked) < 8 and rng.random() < 0.4:
            p = [rng.randrange(V) for _ in range(rng.randint(1, 16))]
            n = rng.randint(1, 10)
            rid = engine.add_request(p, n, temperature=0)
            assert rid not in asked and rid not in dropped
            asked[rid] = (p, n)
        if engine.has_work():
            engine.step()
        finished = [i for i, r in engine.requests.items() if r.state == "finished"]
        if finished and rng.random() < 0.2:
            dropped.add(finished[0])
            del engine.requests[finished[0]]
        if rng.random() < 0.5:
            popped.update(engine.pop_results())
        assert len(engine.history) <= 4
    engine.run()
    popped.update(engine.pop_results())
    assert engine.requests == {}
    assert sorted(popped) == sorted(set(asked) - dropped)
    for i, got in popped.items():
        p, n = asked[i]
        assert got == generate(book, p, n, temperature=0)[0].tolist(), i
    assert engine.cache.num_free == engine.cache.num_blocks


def test_every_chunk_size_of_a_prompt_gives_generates_tokens(book):
    """One request, the budget from 1 token a step to the whole prompt (and more): the prompt is
    split into chunks of that size, and the tokens are generate's alone; ``history`` records the
    chunks."""
    prompt = [7, 300, 12, 9, 4000, 51, 8, 8, 1023, 77, 5, 2]
    want = generate(book, prompt, 5, temperature=0)[0].tolist()
    for budget in range(1, len(prompt) + 2):
        engine = Engine(book, max_batch=2, num_blocks=8, block_tokens=4, max_step_tokens=budget)
        rid = engine.add_request(prompt, 5, temperature=0)
        assert engine.run()[rid] == want, budget
        chunks = [h["prefill"][rid] for h in engine.history if rid in h["prefill"]]
        whole, rest = divmod(len(prompt), budget)
        assert chunks == [budget] * whole + ([rest] if rest else []), budget
        assert engine.steps == len(chunks) + 4  # then one token a step (the first with the prompt)


def test_one_pass_per_step_carries_decode_tokens_and_prompt_chunks(book, monkeypatch):
    """Two requests decoding, one arriving with a 10-token prompt, a budget of 6 tokens a step:
    each step is one forward pass of the 2 decode tokens and 4 prompt tokens, then the rest."""
    engine = Engine(book, max_batch=4, num_blocks=16, block_tokens=4, max_step_tokens=6)
    a = engine.add_request([1, 2], 6, temperature=0)
    b = engine.add_request([3, 4, 5], 6, temperature=0)
    engine.step()  # both prompts (5 tokens) in one pass
    c = engine.add_request(list(range(10, 20)), 3, temperature=0)
    real_run, widths = book.run, []

    def counting_run(ids, **kw):
        widths.append(tuple(ids.shape))
        return real_run(ids, **kw)

    monkeypatch.setattr(book, "run", counting_run)
    assert set(engine.step()) == {a, b}  # c's first 4 prompt tokens: no token yet
    assert set(engine.step()) == {a, b}  # the next 4
    assert set(engine.step()) == {a, b, c}  # the last 2, and c's first token
    assert widths == [(1, 6), (1, 6), (1, 4)]
    assert [h["prefill"] for h in engine.history] == [{a: 2, b: 3}, {c: 4}, {c: 4}, {c: 2}]
    monkeypatch.undo()
    res = engine.run()
    for rid, (p, n) in {a: ([1, 2], 6), b: ([3, 4, 5], 6), c: (list(range(10, 20)), 3)}.items():
        assert res[rid] == generate(book, p, n, temperature=0)[0].tolist()
