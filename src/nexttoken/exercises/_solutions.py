"""The worked answers, one per exercise, printed only by an explicit ``solution(key)``.

No hint stage contains an answer (``tests/test_exercises_hints.py`` checks every stage against the
``secrets`` below: the answer's value and the expressions that give it away). A reader who is stuck
asks for the answer with ``solution(key)``; the last hint of every exercise says so.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SOLUTIONS", "Solution", "solution"]


@dataclass(frozen=True)
class Solution:
    """One exercise's worked answer: ``answer`` (code or numbers, with why), where the solutions
    notebook works it (``notebook``), and the ``secrets`` no hint may contain."""

    key: str
    exercise: str
    notebook: str
    answer: str
    secrets: tuple[str, ...] = ()


_NB = {
    "00": "00_the_pipeline",
    "01": "01_text_to_tokens",
    "02": "02_tokens_to_vectors",
    "03": "03_self_attention",
    "04": "04_the_decoder_block",
    "05": "05_logits_and_softmax",
    "06": "06_choosing_the_next_token",
    "07": "07_the_autoregressive_loop",
    "08": "08_training_the_book_model",
    "09": "09_a_real_gpt2",
    "10": "10_many_requests_at_once",
    "11": "11_faster_tokens",
    "12": "12_beyond_one_machine",
    "13": "13_why_this_token",
    "14": "14_todays_decoders",
}


def _s(key: str, exercise: str, nb: str, answer: str, *secrets: str) -> Solution:
    return Solution(
        key, exercise, f"notebooks/solutions/{_NB[nb]}_solutions.ipynb", answer, secrets
    )


SOLUTIONS: dict[str, Solution] = {
    s.key: s
    for s in (
        # notebook 00
        _s(
            "output",
            "decoder output size",
            "00",
            "One d_model-wide vector per token, before the projection to the vocabulary: "
            "10 x 12,288 = 122,880 numbers.",
            "122,880",
            "122880",
        ),
        _s(
            "probs",
            "logits to probabilities",
            "00",
            "    z = logits - logits.max(dim=-1, keepdim=True).values   # exp() stays finite\n"
            "    e = torch.exp(z)\n    return e / e.sum(dim=-1, keepdim=True)",
            "logits.max(dim=-1, keepdim=True)",
        ),
        _s(
            "step",
            "one step of the loop",
            "00",
            "    next_id = model(ids)[:, -1].argmax(dim=-1, keepdim=True)   # (1, 1)\n"
            "    return torch.cat([ids, next_id], dim=1)",
            "argmax(dim=-1, keepdim=True)",
            "torch.cat([ids",
        ),
        # notebook 01
        _s(
            "token count",
            "token count",
            "01",
            "Ask the encoding: len(get_encoding('gpt2').encode('Le chat mange une souris')) = 7.",
            "len(get_encoding",
        ),
        _s(
            "vocab size",
            "vocabulary size",
            "01",
            "get_encoding('o200k_base').n_vocab = 200,019 (ordinary and special tokens, up to the "
            "largest id).",
            "200,019",
            "200019",
            ".n_vocab",
        ),
        _s(
            "first merge",
            "first BPE merge",
            "01",
            "Count the adjacent byte pairs inside each pre-token and take the most frequent "
            "(ties: the smallest byte values):\n"
            "    Counter(p for piece in pretokenize(text) for p in pairwise(piece.encode()))"
            ".most_common(1)\n(nexttoken.exercises.tokens.most_frequent_pair(text) gives it too)",
            "most_common(1)",
        ),
        _s(
            "pieces",
            "gpt2 token strings",
            "01",
            "Decode the ids one at a time: [enc.decode([i]) for i in enc.encode(text)] = "
            "[' The', ' cat', ' eats', ' a', ' mouse']",
            "decode([i])",
            "' The', ' cat'",
        ),
        # notebook 02
        _s(
            "one-hot",
            "one-hot matrix",
            "02",
            "    torch.nn.functional.one_hot(torch.tensor(ids), vocab_size).float()   # (N, V)",
            "one_hot(torch.tensor(ids)",
        ),
        _s(
            "input vectors",
            "input vectors (B, N, d)",
            "02",
            "    model.transformer.wte(ids) + model.transformer.wpe.weight[:N]   # (B, N, d)",
            "wte(ids) +",
            "wpe.weight[:N]",
        ),
        _s(
            "embedding bytes",
            "embedding table bytes",
            "02",
            "vocab_size x n_embd numbers x bytes per number: GPT-3 13B in fp16: 50,257 x 5,120 x 2 "
            "= 514,631,680 bytes (notebook 02 section 4 sizes GPT-3 175B's table the same way).",
            "514,631,680",
            "514631680",
            "1,235,116,032",
            "1235116032",
            "vocab_size x n_embd numbers",
        ),
        # notebook 04
        _s(
            "layer norm",
            "LayerNorm by hand",
            "04",
            "    mu = x.mean(-1, keepdim=True)\n    var = x.var(-1, keepdim=True, unbiased=False)\n"
            "    return (x - mu) / torch.sqrt(var + 1e-5)",
            "torch.sqrt(var + 1e-5)",
        ),
        _s(
            "split heads",
            "split heads",
            "04",
            "    B, N, d = x.shape\n    return x.view(B, N, n_head, d // n_head).transpose(1, 2)",
            "view(B, N, n_head, d // n_head)",
        ),
        _s(
            "mlp params",
            "MLP parameters",
            "04",
            "d x 4d + 4d (first layer) + 4d x d + d (second) = 8 d^2 + 5 d; GPT-2 XL (d = 1,600): "
            "20,488,000.",
            "20,488,000",
            "20488000",
            "1,208,020,992",
            "1208020992",
            "8 d^2 + 5 d",
        ),
        _s(
            "total params",
            "total parameters",
            "04",
            "sum(p.numel() for p in meta_model('gpt2-xl').parameters()) = 1,557,611,200 (the "
            "tied projection counted once).",
            "1,557,611,200",
            "1557611200",
            "174,604,259,328",
            "174604259328",
        ),
        # notebook 06
        _s(
            "top-k",
            "top-k filter",
            "06",
            "    kth = torch.topk(logits, k, dim=-1).values[..., -1:]\n"
            "    return logits.masked_fill(logits < kth, float('-inf'))",
            "values[..., -1:]",
        ),
        _s(
            "top-p",
            "top-p filter",
            "06",
            "    s, order = torch.sort(logits, descending=True)\n    sp = torch.softmax(s, -1)\n"
            "    drop = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, order, "
            "sp.cumsum(-1) - sp >= p)\n    return logits.masked_fill(drop, float('-inf'))",
            "cumsum(-1) - sp >= p",
        ),
        _s(
            "chi-square",
            "chi-square statistic",
            "06",
            "    expected = observed.sum() * probs\n"
            "    return float(((observed - expected) ** 2 / expected).sum())",
            "(O_i - E_i)^2 / E_i",
            "** 2 / expected",
        ),
        # notebook 08
        _s(
            "cross-entropy",
            "cross-entropy",
            "08",
            "    logp = torch.log_softmax(logits, dim=-1)\n"
            "    return -logp.gather(-1, targets.unsqueeze(-1)).mean()",
            "-logp.gather",
        ),
        _s(
            "uniform loss",
            "loss of a uniform guess",
            "08",
            "-ln(1 / V) = ln V; GPT-2's V = 50,257: ln(50257) = 10.8249 nats (the book's V = 4,096: "
            "8.3178, notebook 08 section 2).",
            "10.8249",
            "10.825",
            "ln(50257)",
            "log(50257)",
            "8.3178",
            "8.318",
            "ln(4096)",
            "log(4096)",
        ),
        _s(
            "perplexity",
            "perplexity",
            "08",
            "    return math.exp(loss)   # e ** loss: the loss is in nats",
            "math.exp(loss)",
            "e ** loss",
        ),
        _s(
            "nats per char",
            "nats per character",
            "08",
            "    return nats_per_token * tokens / characters   # the same total, over the characters",
            "nats_per_token * tokens / characters",
            "(nats per token) x (number of tokens)",
        ),
        _s(
            "targets",
            "inputs and next-token targets",
            "08",
            "    return data[start : start + n], data[start + 1 : start + n + 1]",
            "data[start + 1",
        ),
        # notebook 09
        _s(
            "convert block",
            "convert one block",
            "09",
            "    {k: (v.T if k.endswith('.weight') and v.dim() == 2 else v) for k, v in "
            "stored.items()}",
            "v.T if k.endswith",
        ),
        _s(
            "silent transposes",
            "silent transposes",
            "09",
            "Only the square one: {'attn.c_proj.weight'} (768 x 768).",
            "{'attn.c_proj.weight'}",
        ),
        _s(
            "roofline",
            "roofline",
            "09",
            "20e9 bytes/s / (124,439,808 parameters x 4 bytes) = 40.2 tokens/s.",
            "40.2",
            "40.18",
            "(n_params * 4)",
        ),
        _s(
            "hidden pairs",
            "pair the hidden states",
            "09",
            "    ours = [*out.hidden_states[:-1], out.final_hidden]\n"
            "    return [(a - b).abs().max().item() for a, b in zip(ref_hidden, ours)]",
            "out.final_hidden",
        ),
        # notebook 03
        _s(
            "mask",
            "causal mask",
            "03",
            "Query i may look at keys j <= i (itself and the past): the lower triangle, diagonal "
            "included:\n    torch.ones(n, n, dtype=torch.bool).tril()",
            ".tril()",
            "torch.tril(",
        ),
        _s(
            "weights",
            "causal attention weights",
            "03",
            "    s = q @ k.T / math.sqrt(q.size(-1))                 # (N, N) scores\n"
            "    s = s.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float('-inf'))\n"
            "    return torch.softmax(s, dim=-1)                     # each row sums to 1",
            "q @ k.T / math.sqrt",
            "masked_fill(",
        ),
        _s(
            "visible",
            "visible words",
            "03",
            "The word itself and every word before it; nothing after it, however related.",
        ),
        _s(
            "scale",
            "score scale",
            "03",
            "sqrt(d_head) = sqrt(128) = 11.3137...: the standard deviation of a dot product of "
            "d_head unit-variance numbers.",
            "11.31",
            "sqrt(128)",
        ),
        # notebook 05
        _s(
            "softmax",
            "stable softmax",
            "05",
            "    e = (s - s.amax(dim=-1, keepdim=True)).exp()\n"
            "    return e / e.sum(dim=-1, keepdim=True)",
            "s.amax(dim=-1, keepdim=True)",
            "subtract that row's largest",
        ),
        _s(
            "projection",
            "GPT-3 projection size",
            "05",
            "d_model x vocabulary = 12,288 x 50,257 = 617,558,016 weights (no bias).",
            "617,558,016",
            "617558016",
            "12288 * 50257",
        ),
        _s(
            "entropy",
            "entropy",
            "05",
            "    return -torch.special.xlogy(p, p).sum(dim=-1)",
            "-torch.special.xlogy(p, p)",
        ),
        # notebook 06
        _s(
            "temperature",
            "temperature",
            "06",
            "    return torch.softmax(logits / T, dim=-1)",
            "softmax(logits / T",
            "softmax(x / t",
        ),
        # notebook 07
        _s(
            "greedy loop",
            "greedy loop",
            "07",
            "    ids = list(ids)\n    for _ in range(n):\n"
            "        logits = model(torch.tensor([ids]))            # (1, N, V)\n"
            "        ids.append(int(logits[0, -1].argmax()))\n    return ids",
            "logits[0, -1].argmax()",
        ),
        _s(
            "kv bytes",
            "KV cache bytes per token",
            "07",
            "A key and a value per layer, n_embd numbers each:\n"
            "    2 * config.n_layer * config.n_embd * bytes_per_number",
            "2 * config.n_layer * config.n_embd",
            "2 * n_layer * n_embd",
        ),
        _s(
            "window",
            "sliding window",
            "07",
            "The last block_size ids (all of them if there are fewer):\n    ids[-block_size:]",
            "ids[-block_size:]",
            "[-block_size:]",
        ),
        # notebook 10
        _s(
            "positions",
            "left-padded positions",
            "10",
            "L = max(lengths); row b has L - n_b padding columns on its left, so column j holds "
            "position j - (L - n_b) for a real token and 0 for padding:\n"
            "    [[max(0, j - (L - n)) for j in range(L)] for n in lengths]",
            "j - (L - n)",
            "j - pad_b",
            "max(0, j",
        ),
        _s(
            "blocks",
            "blocks needed",
            "10",
            "A division rounded UP, exact for integers (0 tokens need 0 blocks):\n"
            "    -(-n_tokens // block_tokens)      # or (n_tokens + block_tokens - 1) // block_tokens",
            "-(-",
            "+ b - 1) // b",
            "block_tokens - 1) //",
            "math.ceil",
        ),
        _s(
            "outweighs",
            "cache outweighs the model",
            "10",
            "weights = 2 bytes x 174,604,259,328 parameters; one full sequence caches "
            "2 (key, value) x 96 layers x 12,288 numbers x 2 bytes x 2,048 tokens = 9,663,676,416 "
            "bytes; the smallest batch whose cache is larger: weights // per_sequence + 1 = 37",
            "37",
            "// per_sequence + 1",
        ),
        # notebook 11
        _s(
            "quantize",
            "int8 per-channel quantization",
            "11",
            "    scale = w.abs().amax(dim=1) / 127          # one scale per row (output channel)\n"
            "    w_int8 = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)\n"
            "    return w_int8, scale",
            "amax(dim=1) / 127",
            "amax(1) / 127",
        ),
        _s(
            "accept",
            "accept probability",
            "11",
            "Keep x with probability min(1, p(x) / q(x)): always when the target likes x at least as "
            "much as the draft, else only the share p/q of the draft's over-proposals.",
            "min(1, p",
            "min(1.0, p",
        ),
        _s(
            "tokens per round",
            "tokens per round",
            "11",
            "Proposal i is emitted only if proposals 1..i are all kept (probability alpha^i); the "
            "target adds one token: 1 + alpha + ... + alpha^k = sum(alpha**i for i in range(k + 1)) "
            "(= (1 - alpha**(k + 1)) / (1 - alpha) for alpha != 1, and k + 1 at alpha = 1).",
            "1 + alpha + alpha^2",
            "1 + alpha + ... + alpha^k",
            "range(k + 1)",
            "(1 - alpha**(k + 1))",
            "(1 - a**(k+1))",
        ),
        # notebook 12
        _s(
            "mlp cut",
            "MLP cut",
            "12",
            'W_fc by "columns" (each device holds some columns of h and applies GELU to them alone), '
            'W_proj by "rows" (the matching rows; each device\'s product is one term of a sum, added '
            "up by one all-reduce): {'W_fc': 'columns', 'W_proj': 'rows'}",
        ),
        _s(
            "tp bytes",
            "tensor-parallel bytes",
            "12",
            "Two all-reduces per block (after attention, after the MLP), each of the (B, N, d) block "
            "output:\n    2 * n_layer * B * N * d * bytes_per_number",
            "2 * n_layer * B * N * d",
            "two per block, n_layer blocks",
        ),
        _s(
            "bubble",
            "pipeline bubble",
            "12",
            "The pass takes m + p - 1 slots and each stage works m of them: idle share "
            "(p - 1) / (m + p - 1).",
            "(p - 1) / (m + p - 1)",
            "(p-1)/(m+p-1)",
        ),
        # notebook 13
        _s(
            "logit lens",
            "logit lens by hand",
            "13",
            "The final LayerNorm (with its gamma and beta), then the unembedding:\n"
            "    z = torch.nn.functional.layer_norm(resid, (resid.size(-1),), gamma, beta, 1e-5)\n"
            "    return z @ W_U.T                      # (N, d) @ (d, V) -> (N, V) logits",
            "layer_norm(resid",
            "@ W_U.T",
        ),
        _s(
            "attribution",
            "one part's attribution",
            "13",
            "With sigma frozen, LayerNorm is linear: centre the part, divide by the whole stream's "
            "sigma, scale by gamma (beta goes to the bias term, once), then dot with the token's row:\n"
            "    return float(((part - part.mean()) / sigma * gamma) @ u)",
            "(part - part.mean()) / sigma",
            "/ sigma * gamma",
        ),
        _s(
            "previous token",
            "previous-token score",
            "13",
            "The diagonal just below the main one, averaged over its N - 1 entries:\n"
            "    return float(pattern.diagonal(-1).mean())",
            "diagonal(-1)",
            "diagonal(offset=-1)",
        ),
        _s(
            "induction",
            "induction score",
            "13",
            "Position i of the second copy looks at i - T + 1 (just after the earlier occurrence):\n"
            "    return float(torch.stack([pattern[i, i - T + 1] for i in range(T, 2 * T)]).mean())\n"
            "(the same as pattern.diagonal(-(T - 1))[1:].mean())",
            "i - T + 1",
            "i - t + 1",
            "diagonal(-(T - 1))",
            "diagonal(1 - T)",
        ),
        _s(
            "divergence",
            "first divergence",
            "13",
            "    for i, (a, b) in enumerate(zip(acts_a, acts_b)):\n"
            "        if (a - b).abs().max() > atol:\n"
            "            return i",
            "(a - b).abs().max() > atol",
        ),
        # notebook 14
        _s(
            "rope half",
            "RoPE, Llama's layout",
            "14",
            "Pair i is (x[i], x[i + d/2]), turned by positions * theta**(-2i/d):\n"
            "    freqs = theta ** (-torch.arange(0, d, 2) / d); angles = positions[:, None] * freqs\n"
            "    a, b = x[:, : d // 2], x[:, d // 2 :]\n"
            "    torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)",
            "a * cos - b * sin",
            "x[:, : d // 2]",
            "x[:, d // 2 :]",
        ),
        _s(
            "equal width",
            "MLP width at equal size",
            "14",
            "GPT: V d + T d + 2 d + L (12 d^2 + 13 d); Llama without its MLP: V d + d + L (2 d^2 + "
            "2 d n_kv_head d_head + 2 d); h = (GPT - Llama without MLP) / (3 d L). The book model's "
            "shape gives 793.08; the twin uses 792.",
            "/ (3 * d * n_layer)",
            "(3 d L)",
            "793.08",
        ),
        _s(
            "gqa kv bytes",
            "KV cache of one sequence",
            "14",
            "A key and a value per key/value head of every layer, for the tokens kept:\n"
            "    2 * n_layer * n_kv_head * d_head * min(tokens, window or tokens) * bytes_per_number",
            "2 * n_layer * n_kv_head",
            "min(tokens, window",
        ),
        _s(
            "merge partials",
            "merging two partials",
            "14",
            "M = max(m1, m2); e1, e2 = exp(m1 - M), exp(m2 - M);\n"
            "    (e1 * acc1 + e2 * acc2) / (e1 * s1 + e2 * s2)",
            "e1 * acc1 + e2 * acc2",
            "(e1 * s1 + e2 * s2)",
            "exp(m1 - M)",
        ),
    )
}


def solution(key: str) -> None:
    """Print the worked answer of exercise ``key`` (``solution("blocks")``) and where the solutions
    notebook works it. Unknown keys raise a ValueError that lists the known ones."""
    if not isinstance(key, str) or key.strip().lower() not in SOLUTIONS:
        known = ", ".join(repr(k) for k in SOLUTIONS)
        raise ValueError(f"no exercise called {key!r}; the exercises are: {known}")
    s = SOLUTIONS[key.strip().lower()]
    print(f"Solution: {s.exercise}\n{s.answer}\n(worked in {s.notebook})")
