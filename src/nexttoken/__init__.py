"""nexttoken: how a GPT-style decoder chooses the next token.

The package behind the notebook book. One module per stage of the pipeline:

    tokenizer  text -> token ids (tiktoken encodings, offline; the book's own BPE in bpe)
    model      ids -> vectors -> decoder blocks -> logits (GPT-2 architecture, one file)
    sampling   logits -> probabilities -> the chosen token
    generate   the autoregressive loop, with and without a KV cache
    configs    GPT-2 and GPT-3 families, and the book model
    checkpoint safetensors save/load
    viz, widgets, exercises, notebook: what the notebooks draw, play with and check

``load_book_model()`` and ``load_book_encoding()`` give the book's trained Shakespeare model and
its encoding, offline; ``load_book_llama_model()`` its Llama-family twin (notebook 14).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "load_book_model",
    "load_book_draft_model",
    "load_book_llama_model",
    "load_book_encoding",
    "__version__",
]


def load_book_model(*args, **kwargs):
    """The book's trained model (see :func:`nexttoken.book.load_book_model`)."""
    from .book import load_book_model as _load

    return _load(*args, **kwargs)


def load_book_draft_model(*args, **kwargs):
    """The book's draft model (see :func:`nexttoken.book.load_book_draft_model`)."""
    from .book import load_book_draft_model as _load

    return _load(*args, **kwargs)


def load_book_llama_model(*args, **kwargs):
    """The book model's Llama-family twin, notebook 14 (see
    :func:`nexttoken.book.load_book_llama_model`)."""
    from .book import load_book_llama_model as _load

    return _load(*args, **kwargs)


def load_book_encoding():
    """The book's encoding (see :func:`nexttoken.book.load_book_encoding`)."""
    from .book import load_book_encoding as _load

    return _load()
