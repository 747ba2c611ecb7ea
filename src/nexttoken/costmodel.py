"""Speculative decoding's cost model against the measured benchmark: what a speed-up would take.

Notebook 11 reads ``benchmarks/results_faster.json`` (``load_results("faster")["speculative"]``):
for each pair (target + draft) and each ``k``, the measured cost of a draft step and of a verifying
pass inside a round, the acceptance ``alpha``, and plain greedy decoding's tokens/s measured beside
it. From those, the cost model (:func:`nexttoken.speculative.predicted_tokens_per_s`) says what one
quantity would have to become, the others staying as measured, for speculation to reach a given
speed-up: the acceptance, the verifying pass's cost, or the draft step's cost.

Times are in ms, costs in "steps" (multiples of one plain decoding step of the target, with its
loop).
"""

from __future__ import annotations

from collections.abc import Mapping

from .speculative import expected_tokens_per_round, predicted_tokens_per_s

__all__ = [
    "k_rows",
    "cost_model_speedup",
    "alpha_needed",
    "what_it_takes",
    "what_it_takes_table",
    "verify_pass_table",
]

_ROW_KEYS = ("draft_step_in_round_ms", "target_pass_in_round_ms", "plain_tokens_per_s_interleaved")


def k_rows(pair: Mapping) -> dict[int, Mapping]:
    """The measured rounds of one pair, by ``k``: its ``"k=<int>"`` entries, in increasing ``k``."""
    if not isinstance(pair, Mapping):
        raise TypeError(f"pair must be a dict of benchmark rows, got {type(pair).__name__}")
    rows = {int(key[2:]): r for key, r in pair.items() if key.startswith("k=")}
    if not rows:
        raise ValueError(
            "pair has no 'k=<int>' rows (a pair of results_faster.json's 'speculative')"
        )
    for k, r in rows.items():
        missing = [key for key in _ROW_KEYS if key not in r]
        if missing:
            raise ValueError(f"row k={k} lacks {', '.join(missing)}")
    return dict(sorted(rows.items()))


def _check_alpha(alpha: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")


def _check_speedup(speedup: float) -> None:
    if isinstance(speedup, bool) or not isinstance(speedup, int | float) or not speedup > 0:
        raise ValueError(f"speedup must be a positive number, got {speedup!r}")


def cost_model_speedup(
    row: Mapping,
    k: int,
    alpha: float,
    verify_ms: float | None = None,
    draft_ms: float | None = None,
) -> float:
    """The cost model's speed-up over plain greedy decoding for one measured row.

    ``row``: one ``"k=<k>"`` entry of a pair; ``alpha``: the acceptance to assume (the tokens per
    round are then ``expected_tokens_per_round(alpha, k)``); ``verify_ms`` / ``draft_ms``: replace
    the measured verifying pass / draft step (ms). Plain decoding's speed is the one measured
    interleaved with the row.
    """
    _check_alpha(alpha)
    d = row["draft_step_in_round_ms"] if draft_ms is None else draft_ms
    v = row["target_pass_in_round_ms"] if verify_ms is None else verify_ms
    tokens = expected_tokens_per_round(alpha, k)
    return 1e3 * predicted_tokens_per_s(d, v, k, tokens) / row["plain_tokens_per_s_interleaved"]


def alpha_needed(row: Mapping, k: int, speedup: float = 1.3, tol: float = 1e-6) -> float | None:
    """The smallest acceptance at which the cost model reaches ``speedup`` (None: not even at 1).

    The speed-up grows with ``alpha`` (more tokens per round for the same cost), so bisect.
    """
    _check_speedup(speedup)
    if cost_model_speedup(row, k, 1.0) < speedup:
        return None
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost_model_speedup(row, k, mid) < speedup else (lo, mid)
    return hi


def what_it_takes(pair: Mapping, speedup: float = 1.3, alpha: float | None = None) -> list[dict]:
    """For each ``k`` of a pair: the cost model's speed-up, and three ways to reach ``speedup``.

    ``alpha``: the acceptance to assume (default: each row's measured one). Each returned dict has
    ``k``, ``alpha``, ``speedup`` (the cost model's), ``alpha_needed`` (None: unreachable even with
    every proposal kept), ``verify_steps`` and ``draft_steps`` (the most a verifying pass / a draft
    step may cost, in plain steps; None: impossible even at zero cost), and the measured
    ``verify_steps_now`` / ``draft_steps_now``.
    """
    _check_speedup(speedup)
    if alpha is not None:
        _check_alpha(alpha)
    out = []
    for k, r in k_rows(pair).items():
        a = r["alpha"] if alpha is None else alpha
        step = 1e3 / r["plain_tokens_per_s_interleaved"]  # ms of a plain step, with its loop
        budget = expected_tokens_per_round(a, k) * step / speedup  # ms a round may cost
        verify = budget - k * r["draft_step_in_round_ms"]
        draft = (budget - r["target_pass_in_round_ms"]) / k
        out.append(
            {
                "k": k,
                "alpha": a,
                "speedup": cost_model_speedup(r, k, a),
                "alpha_needed": alpha_needed(r, k, speedup),
                "verify_steps": verify / step if verify > 0 else None,
                "draft_steps": draft / step if draft > 0 else None,
                "verify_steps_now": r["target_pass_in_round_ms"] / step,
                "draft_steps_now": r["draft_step_in_round_ms"] / step,
            }
        )
    return out


def what_it_takes_table(pair: Mapping, speedup: float = 1.3, alpha: float | None = None) -> str:
    """:func:`what_it_takes` as a printed table, one line per ``k``."""
    lines = [
        f"   k  alpha  cost model  | for {speedup}x:  alpha needed  or verify (now)   or draft (now)",
        "              speed-up  |                              in steps         in steps",
    ]
    for row in what_it_takes(pair, speedup, alpha):
        need = row["alpha_needed"]
        verify, draft = row["verify_steps"], row["draft_steps"]
        lines.append(
            f"  {row['k']:2d}  {row['alpha']:5.3f}  {row['speedup']:10.2f}  | "
            f"{'unreachable' if need is None else f'{need:.3f}':>24}  "
            f"{'impossible' if verify is None else f'{verify:.2f}':>10} "
            f"({row['verify_steps_now']:.2f})  "
            f"{'impossible' if draft is None else f'{draft:.2f}':>10} "
            f"({row['draft_steps_now']:.2f})"
        )
    return "\n".join(lines)


def verify_pass_table(spec: Mapping, pairs: tuple[str, ...]) -> str:
    """The measured cost of a verifying pass over ``k + 1`` tokens, per pair, in ms and in steps.

    ``spec``: results_faster.json's ``"speculative"``; ``pairs``: the pairs to set side by side.
    """
    unknown = [p for p in pairs if p not in spec]
    if unknown:
        raise ValueError(f"unknown pair(s) {unknown}; known: {', '.join(spec)}")
    rows = {p: k_rows(spec[p]) for p in pairs}
    ks = sorted(set.intersection(*(set(r) for r in rows.values())))
    head = "   k  tokens  " + "  ".join(f"{p + ' ms (steps)':>24}" for p in pairs)
    lines = [head]
    for k in ks:
        cells = []
        for p in pairs:
            r = rows[p][k]
            step = 1e3 / r["plain_tokens_per_s_interleaved"]
            ms = r["target_pass_in_round_ms"]
            cells.append(f"{f'{ms:.1f} ({ms / step:.2f})':>24}")
        lines.append(f"  {k:2d}  {k + 1:6d}  " + "  ".join(cells))
    return "\n".join(lines)
