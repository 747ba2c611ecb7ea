"""Named model configurations: the GPT-2 family, the GPT-3 family and the book's own model.

GPT-2: Radford et al. 2019, and the released checkpoints (vocabulary 50257, context 1024, d_head 64).
GPT-3: Brown et al. 2020, Table 2.1 (vocabulary 50257, context 2048, d_ff = 4 d_model). Two rows of
that table are not self-consistent, and the configurations here say how they were read:

- GPT-3 XL: the table gives d_model 2048, 24 heads and d_head 128, but 24 x 128 = 3072 != 2048.
  We keep d_model = 2048 (it fixes the parameter count) and d_head = 128, hence 16 heads.
- GPT-3 13B: the table gives d_model 5140, which 40 heads of 128 cannot make; 40 x 128 = 5120, so
  5140 is read as a typo for 5120.

Head count does not change the parameter count, so these readings do not move any number the book
reports about size.
"""

from __future__ import annotations

from .model import GPTConfig

__all__ = ["CONFIGS", "get_config", "names", "GPT2_FAMILY", "GPT3_FAMILY", "BOOK", "BOOK_DRAFT"]

_V = 50257  # GPT-2/GPT-3 vocabulary (r50k_base): 50,000 merges + 256 bytes + <|endoftext|>


def _cfg(name: str, n_layer: int, n_embd: int, n_head: int, block_size: int) -> GPTConfig:
    return GPTConfig(
        vocab_size=_V,
        block_size=block_size,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        name=name,
    )


GPT2_FAMILY: dict[str, GPTConfig] = {
    "gpt2": _cfg("gpt2", 12, 768, 12, 1024),  # 124M
    "gpt2-medium": _cfg("gpt2-medium", 24, 1024, 16, 1024),  # 355M
    "gpt2-large": _cfg("gpt2-large", 36, 1280, 20, 1024),  # 774M
    "gpt2-xl": _cfg("gpt2-xl", 48, 1600, 25, 1024),  # 1558M
}

GPT3_FAMILY: dict[str, GPTConfig] = {
    "gpt3-small": _cfg("gpt3-small", 12, 768, 12, 2048),
    "gpt3-medium": _cfg("gpt3-medium", 24, 1024, 16, 2048),
    "gpt3-large": _cfg("gpt3-large", 24, 1536, 16, 2048),
    "gpt3-xl": _cfg("gpt3-xl", 24, 2048, 16, 2048),  # table: 24 heads; see module docstring
    "gpt3-2.7b": _cfg("gpt3-2.7b", 32, 2560, 32, 2048),
    "gpt3-6.7b": _cfg("gpt3-6.7b", 32, 4096, 32, 2048),
    "gpt3-13b": _cfg("gpt3-13b", 40, 5120, 40, 2048),  # table: 5140; see module docstring
    "gpt3-175b": _cfg("gpt3-175b", 96, 12288, 96, 2048),
}

#: The book's own model, trained on 37 Shakespeare plays with the book's 4096-token BPE.
BOOK = GPTConfig(vocab_size=4096, block_size=256, n_layer=4, n_head=4, n_embd=256, name="book")

#: The book's draft model for speculative decoding (notebook 11): same encoding, one block, d = 128.
BOOK_DRAFT = GPTConfig(
    vocab_size=4096, block_size=256, n_layer=1, n_head=4, n_embd=128, name="book-draft"
)

CONFIGS: dict[str, GPTConfig] = {
    **GPT2_FAMILY,
    **GPT3_FAMILY,
    "book": BOOK,
    "book-draft": BOOK_DRAFT,
}


def names() -> list[str]:
    """All configuration names, in table order."""
    return list(CONFIGS)


def get_config(name: str) -> GPTConfig:
    """The configuration called ``name`` (see :func:`names`)."""
    if not isinstance(name, str):
        raise TypeError(f"config name must be a str, got {type(name).__name__}")
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown config {name!r}; known: {', '.join(CONFIGS)}") from None
