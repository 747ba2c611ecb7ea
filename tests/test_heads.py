"""Heads with jobs (nexttoken.heads): repeated random tokens, induction and previous-token scores,
copy losses, the attention-only model."""

import pytest
import torch

from nexttoken import heads
from nexttoken.model import GPT, GPTConfig


def offset_head_model(offset: int, *, block_size: int = 24, vocab_size: int = 16) -> GPT:
    """One layer, one head that attends from position ``i`` to exactly ``i - offset`` (positions
    below ``offset`` spread evenly). Positions are one-hot (``wpe`` = identity, tokens add nothing);
    ``W_Q`` shifts a position back by ``offset``, ``W_K`` is the identity, scaled so that the
    softmax is a hard choice. Holds for queries and keys below ``block_size - offset``."""
    d = block_size
    config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=1, n_embd=d)
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.transformer.wpe.weight.copy_(torch.eye(d))
        block = model.transformer.h[0]
        block.ln_1.weight.fill_(1.0)
        block.ln_2.weight.fill_(1.0)
        model.transformer.ln_f.weight.fill_(1.0)
        shift = torch.zeros(d, d)
        shift[torch.arange(d - offset), torch.arange(offset, d)] = 1.0  # e_p -> e_{p - offset}
        block.attn.c_attn.weight[:d] = 1000.0 * shift  # W_Q
        block.attn.c_attn.weight[d : 2 * d] = torch.eye(d)  # W_K
    return model.eval()


def tiny_gpt(n_layer: int = 2, n_head: int = 2, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=32, block_size=16, n_layer=n_layer, n_head=n_head, n_embd=16)
    return GPT(config).eval()


# repeated random tokens


def test_repeated_random_tokens_repeat_distinct_and_pinned():
    ids = heads.repeated_random_tokens(vocab_size=10, seq_len=4, n_seqs=3, seed=0)
    assert ids.shape == (3, 8) and ids.dtype == torch.long
    assert torch.equal(ids[:, :4], ids[:, 4:])
    for row in ids[:, :4]:
        assert len(set(row.tolist())) == 4  # distinct: one earlier occurrence each
    assert int(ids.min()) >= 0 and int(ids.max()) < 10
    assert (
        ids.tolist()
        == heads.repeated_random_tokens(vocab_size=10, seq_len=4, n_seqs=3, seed=0).tolist()
    )
    assert ids[0].tolist() == PINNED_ROW_0
    other = heads.repeated_random_tokens(vocab_size=10, seq_len=4, n_seqs=3, seed=1)
    assert not torch.equal(ids, other)


PINNED_ROW_0 = [4, 1, 7, 5, 4, 1, 7, 5]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(vocab_size=10, seq_len=1, n_seqs=1, seed=0), "seq_len must be an int >= 2"),
        (dict(vocab_size=10, seq_len=4, n_seqs=0, seed=0), "n_seqs must be an int >= 1"),
        (dict(vocab_size=3, seq_len=4, n_seqs=1, seed=0), "use seq_len in [2, 3]"),
        (dict(vocab_size=10, seq_len=4, n_seqs=1, seed=-1), "seed must be an int >= 0"),
    ],
)
def test_repeated_random_tokens_bad_input(kwargs, words):
    with pytest.raises(ValueError) as e:
        heads.repeated_random_tokens(**kwargs)
    assert words in str(e.value)


def test_repeated_random_tokens_types():
    with pytest.raises(TypeError, match="seq_len must be an int"):
        heads.repeated_random_tokens(vocab_size=10, seq_len=4.0, n_seqs=1, seed=0)
    with pytest.raises(TypeError, match="n_seqs must be an int"):
        heads.repeated_random_tokens(vocab_size=10, seq_len=4, n_seqs=True, seed=0)


# scores


def test_scores_shapes_and_range():
    model = tiny_gpt(n_layer=2, n_head=2)
    for fn in (heads.induction_scores, heads.previous_token_scores):
        s = fn(model, seq_len=8, n_seqs=4, seed=0)
        assert s.shape == (2, 2) and s.dtype == torch.float64
        assert bool(((s >= 0) & (s <= 1)).all())


def test_previous_token_head_scores_one_as_previous_and_zero_as_induction():
    model = offset_head_model(1)
    prev = heads.previous_token_scores(model, seq_len=6, n_seqs=3, seed=0)
    ind = heads.induction_scores(model, seq_len=6, n_seqs=3, seed=0)
    assert prev.shape == (1, 1)
    assert float(prev) == pytest.approx(1.0, abs=1e-6)
    assert float(ind) == pytest.approx(0.0, abs=1e-6)


def test_induction_pattern_scores_one_as_induction_and_low_as_previous():
    # attention from i to i - seq_len + 1: the token after the previous occurrence
    model = offset_head_model(5)
    ind = heads.induction_scores(model, seq_len=6, n_seqs=3, seed=0)
    prev = heads.previous_token_scores(model, seq_len=6, n_seqs=3, seed=0)
    assert float(ind) == pytest.approx(1.0, abs=1e-6)
    # only the first queries (i < 5, no key 5 back: attention spread evenly) reach i - 1:
    # (1/2 + 1/3 + 1/4 + 1/5) / 11 positions
    assert float(prev) == pytest.approx((1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 11, abs=1e-6)


def test_uniform_attention_scores():
    # a head with no preference attends 1/(i+1) to every key: the scores are exact averages
    model = offset_head_model(1)
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight.zero_()
    ind = float(heads.induction_scores(model, seq_len=4, n_seqs=2, seed=0))
    prev = float(heads.previous_token_scores(model, seq_len=4, n_seqs=2, seed=0))
    assert ind == pytest.approx(
        sum(1 / (i + 1) for i in range(4, 8)) / 4, abs=1e-6
    )  # float32 weights
    assert prev == pytest.approx(sum(1 / (i + 1) for i in range(1, 8)) / 7, abs=1e-6)


def test_best_head():
    scores = torch.tensor([[0.1, 0.2, 0.0], [0.05, 0.9, 0.3]], dtype=torch.float64)
    assert heads.best_head(scores) == ("L1H1", pytest.approx(0.9))


@pytest.mark.parametrize("fn", [heads.induction_scores, heads.previous_token_scores])
def test_scores_bad_input(fn):
    model = tiny_gpt()  # block_size 16, vocab 32: seq_len in [2, 8]
    with pytest.raises(ValueError, match=r"seq_len must be in \[2, 8\]"):
        fn(model, seq_len=9, n_seqs=1, seed=0)
    with pytest.raises(ValueError, match="seq_len must be an int >= 2"):
        fn(model, seq_len=1, n_seqs=1, seed=0)
    with pytest.raises(ValueError, match="n_seqs must be an int >= 1"):
        fn(model, seq_len=4, n_seqs=0, seed=0)
    with pytest.raises(TypeError, match="model must be a nexttoken.model.GPT"):
        fn(torch.nn.Linear(2, 2), seq_len=4, n_seqs=1, seed=0)


def test_seq_len_limited_by_vocabulary():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=5, block_size=32, n_layer=1, n_head=1, n_embd=8)
    with pytest.raises(ValueError, match=r"seq_len must be in \[2, 5\]"):
        heads.induction_scores(GPT(config), seq_len=6, n_seqs=1, seed=0)


# copy losses


def test_copy_losses_two_copies_same_targets():
    model = offset_head_model(1)  # logits all zero: uniform over 16 tokens
    first, second = heads.copy_losses(model, torch.tensor([1, 2, 3, 4]))
    assert first == pytest.approx(torch.log(torch.tensor(16.0, dtype=torch.float64)).item())
    assert second == pytest.approx(first)


def test_copy_losses_batch_equals_rows():
    model = tiny_gpt()
    ids = torch.tensor([[1, 5, 7, 2], [3, 3, 9, 0]])
    both = heads.copy_losses(model, ids)
    rows = [heads.copy_losses(model, r) for r in ids]
    assert both[0] == pytest.approx(sum(r[0] for r in rows) / 2, abs=1e-12)
    assert both[1] == pytest.approx(sum(r[1] for r in rows) / 2, abs=1e-12)


def test_copy_losses_bad_input():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="n >= 2"):
        heads.copy_losses(model, torch.tensor([3]))
    with pytest.raises(ValueError, match="block_size"):
        heads.copy_losses(model, torch.arange(9))  # 18 tokens > block_size 16
    with pytest.raises(TypeError, match="model must be a nexttoken.model.GPT"):
        heads.copy_losses(object(), torch.tensor([1, 2]))


# the attention-only model


def test_attention_only_gpt_has_no_mlp_and_runs():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=16, block_size=8, n_layer=2, n_head=2, n_embd=8)
    model = heads.AttentionOnlyGPT(config).eval()
    names = {n for n, _ in model.named_parameters()}
    assert not any("mlp" in n or "ln_2" in n for n in names)
    # 16*8 + 8*8 (embeddings) + 2 * (2*8 + 8*24 + 24 + 8*8 + 8) + 2*8 (ln_f)
    assert model.num_parameters() == 128 + 64 + 2 * (16 + 192 + 24 + 64 + 8) + 16
    ids = torch.tensor([[1, 2, 3, 4]])
    assert model(ids).shape == (1, 4, 16)
    s = heads.induction_scores(model, seq_len=4, n_seqs=2, seed=0)
    assert s.shape == (2, 2)


# growing an induction head

TINY = dict(n_embd=16, vocab_size=16, n_ctx=16, batch_size=4, eval_every=2, previous_steps=2)


def test_copy_batch_repeats_a_stretch():
    g = torch.Generator().manual_seed(0)
    x = heads.copy_batch(g, batch_size=8, n_ctx=16, vocab_size=16)
    assert x.shape == (8, 16) and x.dtype == torch.long
    for row in x.tolist():  # some n in [2, 8]: row[n:2n] == row[:n]
        assert any(row[n : 2 * n] == row[:n] for n in range(2, 9))
    again = heads.copy_batch(
        torch.Generator().manual_seed(0), batch_size=8, n_ctx=16, vocab_size=16
    )
    assert torch.equal(x, again)


def test_echo_batch_repeats_two_back():
    table = heads.echo_table(16)
    assert sorted(table.tolist()) == list(range(16))
    x = heads.echo_batch(
        torch.Generator().manual_seed(0), batch_size=64, n_ctx=16, vocab_size=16, echo=1.0
    )
    assert x.shape == (64, 16)
    assert all(row[t] == int(table[row[t - 2]]) for row in x.tolist() for t in range(2, 16))
    half = heads.echo_batch(
        torch.Generator().manual_seed(0), batch_size=64, n_ctx=16, vocab_size=16, echo=0.5
    )
    hits = (half[:, 2:] == table[half[:, :-2]]).double().mean()
    assert 0.45 < hits < 0.6  # half the tokens echo, and a random one matches 1 time in 16


def test_second_stage_freezes_layer_0_and_turns_it_down():
    model = heads.AttentionOnlyGPT(
        heads.GPTConfig(vocab_size=16, block_size=16, n_layer=2, n_head=1, n_embd=16)
    )
    before = model.transformer.h[0].attn.c_proj.weight.detach().clone()
    opt = heads._second_stage(model, 0.05, 1e-3)
    assert torch.equal(model.transformer.h[0].attn.c_proj.weight, before * 0.05)
    trained = {id(p) for group in opt.param_groups for p in group["params"]}
    for name, p in model.named_parameters():
        frozen = name.startswith(("transformer.wte", "transformer.wpe", "transformer.h.0."))
        assert p.requires_grad is not frozen and (id(p) in trained) is not frozen, name


def test_grow_history_rows_and_determinism():
    model, history = heads.grow_induction_head(steps=4, seed=0, **TINY)
    assert isinstance(model, heads.AttentionOnlyGPT) and not model.training
    assert all(p.requires_grad for p in model.parameters())  # handed back trainable
    assert [r["step"] for r in history] == [0, 2, 4]
    assert set(history[0]) == {
        "step",
        "loss_first",
        "loss_second",
        "induction",
        "induction_head",
        "previous",
        "previous_head",
    }
    for row in history:
        assert 0 <= row["induction"] <= 1 and 0 <= row["previous"] <= 1
        assert row["induction_head"].startswith("L") and "H" in row["induction_head"]
    _, again = heads.grow_induction_head(steps=4, seed=0, **TINY)
    assert again == history  # bit for bit on one machine
    # the last row is what the returned model measures
    last = history[-1]
    probe = dict(seq_len=8, n_seqs=64, seed=1)
    assert heads.best_head(heads.induction_scores(model, **probe)) == (
        last["induction_head"],
        last["induction"],
    )


def test_grow_bad_input():
    with pytest.raises(ValueError, match="unknown option"):
        heads.grow_induction_head(steps=1, n_layers=3)
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        heads.grow_induction_head(steps=-1)
    with pytest.raises(ValueError, match="eval_every must be an int >= 1"):
        heads.grow_induction_head(steps=1, eval_every=0)
    with pytest.raises(ValueError, match=r"quiet must be a number in \(0, 1\]"):
        heads.grow_induction_head(steps=1, quiet=0)
    with pytest.raises(ValueError, match="n_layer must be 2"):
        heads.grow_induction_head(steps=1, n_layer=3)


def test_phase_change_step():
    rows = [dict(step=s, induction=v) for s, v in [(0, 0.05), (50, 0.3), (100, 0.6), (150, 0.9)]]
    assert heads.phase_change_step(rows) == 100
    assert heads.phase_change_step(rows, threshold=0.95) is None


def test_load_grown_without_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m nexttoken.heads --out"):
        heads.load_grown(tmp_path)


def test_save_and_load_grown_round_trip(tmp_path):
    model, history = heads.grow_induction_head(steps=2, seed=0, **TINY)
    heads.save_grown(model, history, dict(steps=2, **TINY), tmp_path)
    loaded, loaded_history = heads.load_grown(tmp_path)
    assert loaded_history == history
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    for (name, a), (_, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert a.dtype == b.dtype == torch.float64 and torch.equal(a, b), name
    # a changed file is refused
    path = tmp_path / heads.GROWN_MODEL
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        heads.load_grown(tmp_path)


# the committed grown model (python -m nexttoken.heads --out src/nexttoken/assets)


def test_committed_grown_model_has_an_induction_head():
    model, history = heads.load_grown()  # sha256 checked
    last = history[-1]
    assert last["step"] == heads.GROWN_RECIPE["steps"]
    assert last["induction_head"] == "L1H0" and last["induction"] > 0.6
    assert last["previous_head"] == "L0H0" and last["previous"] > 0.9
    assert (
        last["loss_first"] - last["loss_second"] > 1.5
    )  # the repeat is predicted from the context
    # the phase change: flat through the first stage, then the score jumps with the loss falling
    step = heads.phase_change_step(history)
    assert heads.GROWN_RECIPE["previous_steps"] < step < heads.GROWN_RECIPE["steps"]
    at = {r["step"]: r for r in history}
    assert at[heads.GROWN_RECIPE["previous_steps"]]["induction"] < 0.1
    # the weights measure now what the history says (any CPU: float64, 2 decimals)
    probe = dict(seq_len=16, n_seqs=64, seed=1)
    assert round(float(heads.induction_scores(model, **probe)[1, 0]), 2) == round(
        last["induction"], 2
    )
    prev = heads.previous_token_scores(model, **probe)
    assert round(float(prev[0, 0]), 2) == round(last["previous"], 2)


def test_committed_history_is_reproduced_by_retraining_its_start():
    _, log = heads.load_grown()
    recipe = {k: v for k, v in heads.GROWN_RECIPE.items() if k not in ("steps", "seed")}
    _, early = heads.grow_induction_head(steps=100, seed=heads.GROWN_RECIPE["seed"], **recipe)
    for mine, theirs in zip(early, log, strict=False):
        assert mine["step"] == theirs["step"]
        for key in ("loss_first", "loss_second", "induction", "previous"):
            assert round(mine[key], 2) == round(theirs[key], 2), (mine["step"], key)
        assert mine["previous_head"] == theirs["previous_head"]


def test_ablating_the_previous_token_head_breaks_the_induction_head():
    model, _ = heads.load_grown()
    probe = dict(seq_len=16, n_seqs=64, seed=1)
    with torch.no_grad():
        model.transformer.h[0].attn.c_proj.weight.zero_()
        model.transformer.h[0].attn.c_proj.bias.zero_()
    assert float(heads.induction_scores(model, **probe)[1, 0]) < 0.2  # K-composition: no key left
