"""export_onnx writes the book model as one ONNX graph (the live website runs it in the page):
ONNX Runtime computes the book model's logits, keys/values and attention weights from it, read at
once or one token at a time through its KV cache, and the file holds each weight once."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from nexttoken import load_book_encoding, load_book_model
from nexttoken.onnx_export import INPUT_NAMES, OUTPUT_NAMES, export_onnx

PROMPTS = [
    "ROMEO:\nBut soft, what light through yonder window breaks?",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "<|endoftext|>The Tragedy of",
    "O",
]


@pytest.fixture(scope="module")
def model():
    return load_book_model()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "book.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return path, session


def _empty_past(model) -> np.ndarray:
    cfg = model.config
    return np.zeros((cfg.n_layer, 2, cfg.n_head, 0, cfg.d_head), np.float32)


def _ids(text: str) -> list[int]:
    return load_book_encoding().encode(text, allowed_special="all")


def test_graph_inputs_and_outputs(exported):
    graph = onnx.load(str(exported[0])).graph
    assert [i.name for i in graph.input] == INPUT_NAMES
    assert [o.name for o in graph.output] == OUTPUT_NAMES


@pytest.mark.parametrize("text", PROMPTS)
def test_logits_and_attention_equal_the_book_model(model, exported, text):
    ids = _ids(text)
    logits, present, attentions = exported[1].run(
        None, {"ids": np.array([ids]), "past": _empty_past(model)}
    )
    with torch.no_grad():
        out = model.run(torch.tensor([ids]), output_attentions=True)
    cfg, N = model.config, len(ids)
    assert logits.shape == (cfg.vocab_size,)
    np.testing.assert_allclose(logits, out.logits[0, -1].numpy(), atol=1e-4, rtol=0)
    assert attentions.shape == (cfg.n_layer, cfg.n_head, N, N)
    expected = torch.stack([a[0] for a in out.attentions]).numpy()
    np.testing.assert_allclose(attentions, expected, atol=1e-5, rtol=0)
    assert present.shape == (cfg.n_layer, 2, cfg.n_head, N, cfg.d_head)


def test_one_token_at_a_time_through_the_cache(model, exported):
    """A prompt, then 6 tokens fed one by one with the previous ``present`` as ``past``: the
    logits of every step equal the model's over the whole sequence (positions P .. P+N-1)."""
    ids = _ids(PROMPTS[0])
    session = exported[1]
    logits, present, _ = session.run(None, {"ids": np.array([ids]), "past": _empty_past(model)})
    for _ in range(6):
        nxt = int(np.argmax(logits))
        ids.append(nxt)
        logits, present, attentions = session.run(None, {"ids": np.array([[nxt]]), "past": present})
        with torch.no_grad():
            out = model.run(torch.tensor([ids]), output_attentions=True)
        np.testing.assert_allclose(logits, out.logits[0, -1].numpy(), atol=1e-4, rtol=0)
        assert present.shape[3] == len(ids)
        last_rows = torch.stack([a[0, :, -1:] for a in out.attentions]).numpy()  # (L, H, 1, T)
        np.testing.assert_allclose(attentions, last_rows, atol=1e-5, rtol=0)


def test_a_full_context_of_256_tokens(model, exported):
    cfg = model.config
    text = "Now is the winter of our discontent made glorious summer by this sun of York. " * 30
    ids = _ids(text)[: cfg.block_size]
    logits, _, _ = exported[1].run(None, {"ids": np.array([ids]), "past": _empty_past(model)})
    with torch.no_grad():
        expected = model(torch.tensor([ids]))[0, -1].numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def _stored_tensors(path) -> list[onnx.TensorProto]:
    """Every tensor the file stores: initializers and Constant nodes' values."""
    graph = onnx.load(str(path)).graph
    constants = [
        a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.t.dims
    ]
    return [*graph.initializer, *constants]


def test_the_file_holds_each_weight_once(model, exported):
    """The tied embedding/output matrix is stored once (no transposed copy): the file is the
    parameters' float32 bytes plus < 0.5% (a zero bias for the output Gemm, the graph)."""
    path = exported[0]
    cfg = model.config
    tensors = _stored_tensors(path)
    vocab_wide = sorted(list(t.dims) for t in tensors if cfg.vocab_size in t.dims)
    assert vocab_wide == [[cfg.vocab_size], [cfg.vocab_size, cfg.n_embd]]  # bias, embedding
    n_stored = sum(int(np.prod(t.dims)) for t in tensors)
    assert model.num_parameters() <= n_stored < model.num_parameters() + cfg.vocab_size + 1000
    weights = 4 * model.num_parameters()
    assert weights < path.stat().st_size < weights * 1.005


def test_bad_arguments_are_refused_and_nothing_is_written(model, tmp_path):
    with pytest.raises(TypeError, match="nexttoken GPT"):
        export_onnx("book", tmp_path / "x.onnx")
    with pytest.raises(ValueError, match=r"must end in \.onnx"):
        export_onnx(model, tmp_path / "x.bin")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(model, tmp_path / "missing" / "x.onnx")
    assert list(tmp_path.iterdir()) == []
