"""Parity with TransformerLens, the field's tool, which no one here wrote: the book model's config and
weights converted by nexttoken.inspect, loaded into TransformerLens's own model (built offline: no
download, the network is blocked in every test), give the same activations under the same names.

TransformerLens 4 has no ``HookedTransformer`` any more; its offline equivalent is
``TransformerBridge.boot_native(TransformerBridgeConfig)`` loaded with a state dict in
HookedTransformer's layout through TransformerLens's ``convert_tl_checkpoint``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import nexttoken
from nexttoken import inspect as I
from nexttoken.data import HELD_OUT, load_plays

tl_config = pytest.importorskip("transformer_lens.config")
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402
from transformer_lens.model_bridge.sources import native  # noqa: E402, F401  (boot_native)
from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint  # noqa: E402

#: Every hook name: within this of TransformerLens's value (measured on 2 x 64 tokens of The
#: Tempest: at most 6.7e-6, at blocks.3.hook_resid_post; 6.2e-6 on both simulated CPUs).
HOOK_ATOL = 1e-5
#: The logits (not a hook name) reach about 20, where one float32 step is 1.9e-6: they are a few
#: steps apart (measured 1.9e-5 here, 1.5e-5 and 1.2e-5 on the simulated CPUs): 20 steps allowed.
LOGITS_ATOL = 4e-5


def hooked_transformer(model):
    """TransformerLens's model with the book model's weights (no download)."""
    cfg = tl_config.TransformerBridgeConfig.from_dict(I.hooked_transformer_config(model))
    bridge = TransformerBridge.boot_native(cfg)
    state = convert_tl_checkpoint(I.hooked_transformer_state_dict(model), cfg)
    bridge.load_state_dict(state, strict=True)
    return bridge.eval()


@pytest.fixture(scope="module")
def runs():
    model = nexttoken.load_book_model()
    tokens = nexttoken.load_book_encoding().encode(load_plays()[HELD_OUT][:4000])
    ids = torch.tensor([tokens[:64], tokens[64:128]])
    bridge = hooked_transformer(model)
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(ids)
    return model, I.trace(model, ids), logits, cache


def test_every_hook_name_agrees_with_transformer_lens(runs):
    _, t, logits, cache = runs
    theirs = {name: cache[name] for name in t.names()}  # KeyError if a name were not theirs
    table = I.max_differences(t.activations, theirs)
    print("\nname  max |book - TransformerLens|")
    for name, diff in table.items():
        print(f"{name}  {diff:.1e}")
    assert list(table) == I.hook_names(t.config)
    worst = max(table, key=table.get)
    assert table[worst] <= HOOK_ATOL, (worst, table[worst])
    assert table["hook_embed"] == table["hook_pos_embed"] == 0.0  # the same numbers, copied
    assert float((logits - t.logits).abs().max()) <= LOGITS_ATOL
    assert torch.equal(logits.argmax(-1), t.logits.argmax(-1))


def test_a_wrong_conversion_would_be_caught(runs):
    # the parity is not vacuous: swapping two heads' queries moves hook_q far beyond the tolerance
    model, t, _, _ = runs
    sd = I.hooked_transformer_state_dict(model)
    sd["blocks.0.attn.W_Q"] = sd["blocks.0.attn.W_Q"][[1, 0, 2, 3]]
    cfg = tl_config.TransformerBridgeConfig.from_dict(I.hooked_transformer_config(model))
    bridge = TransformerBridge.boot_native(cfg)
    bridge.load_state_dict(convert_tl_checkpoint(sd, cfg), strict=True)
    with torch.no_grad():
        _, cache = bridge.eval().run_with_cache(t.ids)
    assert float((cache["blocks.0.attn.hook_q"] - t["blocks.0.attn.hook_q"]).abs().max()) > 0.1


def test_the_books_code_does_not_import_transformer_lens():
    src = Path(nexttoken.__file__).parent
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "transformer_lens" for n in names), path
