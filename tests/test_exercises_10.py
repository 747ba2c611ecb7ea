"""Notebook 10's checkers: each right answer passes; each recognised wrong answer fails and names its
misconception; hints are staged and never give the answer away. Its figures and widget draw."""

from __future__ import annotations

from matplotlib.figure import Figure

from nexttoken import load_book_model
from nexttoken.exercises import serving as ex
from nexttoken.paged import PagedKVCache
from nexttoken.serve import Engine
from nexttoken.viz import serving as viz


def run(check, answer, capsys):
    ok = check(answer)
    return ok, capsys.readouterr().out


def right_positions(lengths):
    L = max(lengths)
    return [[max(0, j - (L - n)) for j in range(L)] for n in lengths]


POSITIONS_WRONG = {
    "column indices": lambda ls: [list(range(max(ls))) for _ in ls],
    "right padding": lambda ls: [list(range(n)) + [0] * (max(ls) - n) for n in ls],
    "negative positions": lambda ls: [[j - (max(ls) - n) for j in range(max(ls))] for n in ls],
    "raised ZeroDivisionError": lambda ls: 1 / 0,
    "must be a function": "nope",
}


def test_positions(capsys):
    assert run(ex.check_positions, right_positions, capsys)[0]
    ok, out = run(ex.check_positions, None, capsys)
    assert not ok and "TODO" in out
    for why, wrong in POSITIONS_WRONG.items():
        ok, out = run(ex.check_positions, wrong, capsys)
        assert not ok and why in out, (why, out)


BLOCKS_WRONG = {
    "rounded down": lambda n, b: n // b,
    "one block too many": lambda n, b: n // b + 1,
    "number of tokens": lambda n, b: n,
    "round the division up": lambda n, b: n / b,
}


def test_blocks_needed(capsys):
    assert run(ex.check_blocks_needed, lambda n, b: -(-n // b), capsys)[0]
    for why, wrong in BLOCKS_WRONG.items():
        ok, out = run(ex.check_blocks_needed, wrong, capsys)
        assert not ok and why in out, (why, out)


def test_cache_outweighs(capsys):
    assert run(ex.check_cache_outweighs, 37, capsys)[0]
    wrong = {36: "rounded down", 73: "keys only", 19: "fp32 cache", 74007: "one token"}
    for answer, why in wrong.items():
        ok, out = run(ex.check_cache_outweighs, answer, capsys)
        assert not ok and why in out, (answer, out)
    ok, out = run(ex.check_cache_outweighs, "37", capsys)
    assert not ok and "batch size" in out
    assert ex.gpt3_175b_parameters() == 174_604_259_328


def test_hints_are_staged_and_never_the_answer(capsys):
    outs = [run(ex.check_blocks_needed, lambda n, b: n // b, capsys)[1] for _ in range(4)]
    assert "Hint 1/3" in outs[0] and "Hint 2/3" in outs[1] and "Hint 3/3" in outs[3]
    outs = [run(ex.check_cache_outweighs, 36, capsys)[1] for _ in range(3)]
    assert not any("37" in o for o in outs)


def test_static_steps_prediction(capsys):
    book = load_book_model()
    static = Engine(book, max_batch=2, num_blocks=20, block_tokens=8, static=True)
    for n in [3, 12, 4, 4, 10, 2]:
        static.add_request([1, 2, 3], n, temperature=0)
    static.run()
    assert static.steps == 26
    assert run(lambda a: ex.check_static_steps_prediction(a, static.steps), 26, capsys)[0]
    ok, out = run(lambda a: ex.check_static_steps_prediction(a, static.steps), 12, capsys)
    assert not ok and "LONGEST" in out


def test_figures_draw():
    rows = [
        {"threads": t, "batch": b, "tokens_per_s": 10.0 * b**0.5, "bound": b**0.6,
         "fraction_of_bound": 0.9}
        for t in (1, 2) for b in (1, 2, 4)
    ]  # fmt: skip
    from nexttoken.configs import get_config

    figs = [
        viz.throughput_figure(rows),
        viz.kv_vs_weights_figure([get_config("gpt2")], [124_439_808], [256, 1024], [1, 4, 16]),
        viz.paging_figure(viz.chat_lengths(50), 1024, [16]),
        viz.timeline_figure({"a": [[0, None], [0, 1]], "b": [[None, None]]}, 2),
    ]
    cache = PagedKVCache(get_config("book"), 6, 4)
    cache.add("s")
    cache.reserve("s", 6)
    cache.lengths["s"] = 6
    figs.append(viz.block_table_figure(cache.tables, cache.lengths, 6, 4))
    assert all(isinstance(f, Figure) for f in figs)
    w = viz.paging_waste([10, 20], 32, 16)
    assert w == {"used": 30, "contiguous": 64, "paged": 48,
                 "contiguous_waste": 1 - 30 / 64, "paged_waste": 1 - 30 / 48}  # fmt: skip
    lengths = viz.chat_lengths(200)
    assert lengths == viz.chat_lengths(200) and 8 <= min(lengths) and max(lengths) <= 1024


def test_widget_buttons_drive_the_engine():
    from nexttoken.widgets.serving import engine_widget

    book = load_book_model()
    box = engine_widget(book, [[1, 2, 3], [4, 5]], max_batch=2, num_blocks=8, block_tokens=4)
    assert {"nt-widget", "nt-serving"} <= set(box._dom_classes)
    add, n_new, step, run_, reset = box.children[0].children
    engine = box.serving_state["engine"]
    add.click()
    add.click()
    add.click()
    assert len(engine.waiting) == 3
    step.click()
    assert len(engine.running) == 2 and len(engine.waiting) == 1
    assert engine.cache.num_free == 1  # 13 and 12 tokens: 4 + 3 blocks of 4 tokens
    run_.click()
    assert not engine.has_work() and len(engine.results()) == 3
    reset.click()
    assert box.serving_state["engine"] is not engine
    assert "step 0" in viz.engine_figure(box.serving_state["engine"]).axes[0].get_title()
