"""nexttoken.parallel without processes: the cut's algebra, the formulas, the errors, the paper numbers.

The distributed runs themselves are in test_parallel_distributed.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from nexttoken.generate import generate
from nexttoken.model import GPT, GPTConfig
from nexttoken.parallel import (
    ShardBlock,
    bubble,
    check_split,
    count_comm,
    pp_send_bytes,
    ring_allreduce_wire_bytes,
    stage_bounds,
    tp_allreduce_bytes,
)
from nexttoken.parallel.dtensor import qkv_interleave
from nexttoken.parallel.tensor import shard_for_rank

CFG = GPTConfig(vocab_size=61, block_size=16, n_layer=3, n_head=4, n_embd=32, name="t")


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG).eval().double()


@pytest.mark.parametrize("T", [1, 2, 4])
def test_the_shards_partial_sums_add_up_to_the_block(model, T):
    """Row-parallel outputs of the T shards, summed (what the all-reduce does), give the block's.

    Rank 0's partial sum carries the row-parallel bias (added inside its product); the others have
    none, so the sum counts it once.
    """
    block = model.transformer.h[0]
    x = torch.randn(2, 5, CFG.n_embd, dtype=torch.float64)
    shards = [ShardBlock(block, CFG, r, T) for r in range(T)]
    assert [s.attn_proj.bias is not None for s in shards] == [True] + [False] * (T - 1)
    assert [s.mlp_proj.bias is not None for s in shards] == [True] + [False] * (T - 1)
    with torch.no_grad():
        a = sum(s.attention(s.ln_1(x)) for s in shards)
        want_a, _ = block.attn(block.ln_1(x))
        torch.testing.assert_close(a, want_a)
        h = block.ln_2(x)
        m = sum(s.mlp_proj(F.gelu(s.c_fc(h), approximate="tanh")) for s in shards)
        torch.testing.assert_close(m, block.mlp(h))
    # each shard holds 1/T of the cut matrices
    assert shards[0].c_attn.weight.shape == (3 * CFG.n_embd // T, CFG.n_embd)
    assert shards[0].attn_proj.weight.shape == (CFG.n_embd, CFG.n_embd // T)
    assert shards[0].c_fc.weight.shape == (CFG.d_ff // T, CFG.n_embd)
    assert shards[0].mlp_proj.weight.shape == (CFG.n_embd, CFG.d_ff // T)


def test_a_one_rank_shard_is_the_model_and_generate_accepts_it(model):
    shard = shard_for_rank(model, 0, 1)
    ids = torch.randint(0, CFG.vocab_size, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(shard(ids), model(ids))
        # in float32 too, bit for bit: the same fused products (bias inside), in the same order
        one = copy.deepcopy(model).float()
        assert torch.equal(shard_for_rank(one, 0, 1)(ids), one(ids))
    want = generate(model, ids[:, :3], 6, temperature=0.0)
    assert torch.equal(generate(shard, ids[:, :3], 6, temperature=0.0), want)
    assert torch.equal(generate(shard, ids[:, :3], 6, temperature=0.0, use_cache=False), want)


def test_a_shards_cache_holds_its_heads_only(model):
    full = model.new_cache(2, 8).nbytes()
    for T in (1, 2, 4):
        assert shard_for_rank(model, 0, T).new_cache(2, 8).nbytes() == full // T


def test_a_shard_refuses_what_it_cannot_give(model):
    shard = shard_for_rank(model, 0, 1)
    with pytest.raises(ValueError, match="hidden states"):
        shard.run(torch.zeros(1, 2, dtype=torch.long), output_hidden_states=True)
    with pytest.raises(ValueError, match="out of range"):
        shard(torch.full((1, 2), CFG.vocab_size))


def test_splits_that_cannot_work_are_clear_errors():
    with pytest.raises(ValueError, match="n_head=4 is not divisible by tp=3"):
        check_split(CFG, 3)
    with pytest.raises(ValueError, match="pp=4 stages > n_layer=3 blocks"):
        check_split(CFG, 1, 4)
    with pytest.raises(ValueError, match="tp must be >= 1"):
        check_split(CFG, 0)
    with pytest.raises(TypeError, match="pp must be an int"):
        check_split(CFG, 1, 2.0)
    with pytest.raises(ValueError, match="rank must be in"):
        shard_for_rank(GPT(CFG), 2, 2)


def test_tensor_parallel_needs_a_process_group(model):
    from nexttoken.parallel import pipeline_parallel, tensor_parallel

    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="not initialised"):
        tensor_parallel(model)
    with pytest.raises(RuntimeError, match="not initialised"):
        pipeline_parallel(model)
    with pytest.raises(TypeError, match="nexttoken GPT"):
        tensor_parallel("gpt2")


def test_stages_are_contiguous_and_even():
    assert stage_bounds(4, 2) == [(0, 2), (2, 4)]
    assert stage_bounds(5, 3) == [(0, 2), (2, 4), (4, 5)]
    assert stage_bounds(96, 8)[-1] == (84, 96)
    with pytest.raises(ValueError):
        stage_bounds(2, 3)


def test_the_bubble():
    assert bubble(1, 1) == 0.0
    assert bubble(2, 1) == 0.5
    assert bubble(4, 4) == pytest.approx(3 / 7)
    with pytest.raises(ValueError):
        bubble(2, 0)


def test_the_formulas():
    # GPT-2 small, one sequence of 1024 tokens, fp32: 2 x 12 all-reduces of 1024 x 768 numbers
    assert tp_allreduce_bytes(12, 1, 1024, 768) == 2 * 12 * 1024 * 768 * 4
    assert pp_send_bytes(4, 8, 128, 768, 2) == 3 * 8 * 128 * 768 * 2
    assert ring_allreduce_wire_bytes(800, 8) == 1400
    with pytest.raises(ValueError):
        tp_allreduce_bytes(0, 1, 1, 1)
    with pytest.raises(TypeError):
        pp_send_bytes(2, 1.5, 1, 1)


def test_count_comm_wraps_and_restores():
    before = dist.all_reduce, dist.send, dist.isend
    with count_comm() as log:
        assert dist.all_reduce is not before[0]
    assert (dist.all_reduce, dist.send, dist.isend) == before
    log.calls += [("all_reduce", 8), ("send", 4), ("all_reduce", 8)]
    assert log.bytes("all_reduce") == 16 and log.count("all_reduce") == 2 and log.bytes() == 20


def test_qkv_interleave_groups_each_ranks_heads():
    # d = 4, T = 2: rank 0 gets Q rows 0-1, K rows 4-5, V rows 8-9
    assert qkv_interleave(4, 2).tolist() == [0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]


def test_gpt3_175b_on_8_gpus_on_paper():
    from nexttoken.parallel.paper import pp_vs_tp_across_nodes, tp_plan

    p = tp_plan("gpt3-175b", 8, "a100-80gb")
    # rank 0's shard, counted: 1/8 of the blocks + the replicated embeddings, norms, row biases
    assert p["weights"] == 2 * 22_394_130_432
    assert p["fits"]
    assert p["kv_cache"] == 2 * 96 * 12 * 2048 * 128 * 2  # its 12 heads of 96 layers, full context
    assert p["allreduces_per_token"] == 192
    assert p["allreduce_payload"] == 192 * 12288 * 2
    assert 0.020 < p["t_hbm"] < 0.025 and p["t_link"] < 1e-4
    one = tp_plan("gpt3-175b", 1, "a100-80gb")
    assert not one["fits"] and one["allreduce_payload"] == 0
    x = pp_vs_tp_across_nodes(tokens=2048)
    assert x["tp16_bytes"] > 300 * x["tp8_pp2_bytes"]


def test_a_shard_serves_padded_batches_through_the_cache_interface(model):
    """generate_batch (left padding, per-row positions, a mask) runs on a shard unchanged."""
    from nexttoken.batching import generate_batch

    shard = shard_for_rank(model, 0, 1)
    prompts = [[1, 2, 3, 4], [5, 6], [7]]
    want = generate_batch(model, prompts, 5, temperature=0.0)
    got = generate_batch(shard, prompts, 5, temperature=0.0)
    assert [list(map(int, g)) for g in got] == [list(map(int, w)) for w in want]
