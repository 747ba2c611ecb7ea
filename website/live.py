"""The live book model for the website: what ``make site`` puts in ``_static/live/``.

``vendor_live(folder)`` writes, all served by the site itself (nothing from a CDN):

- ``book.onnx``: the shipped book model exported by :func:`nexttoken.onnx_export.export_onnx`
  (a build product, never committed; the tied embedding stored once);
- ``book.tiktoken``: the book encoding's ranks, checked against ``BOOK_RANKS_SHA256`` first;
- ``manifest.json``: the model's shape, the special token, and the sha256 of the ranks, the model
  and the wasm (the page checks each before using it);
- ``nt-model.js`` (the ``window.nexttoken`` API; the one script a page includes), ``nt-bpe.js``
  (the tokenizer) from ``website/js/``;
- ONNX Runtime Web's WebAssembly build only (``ort.wasm.min.js``, ``ort-wasm-simd-threaded.mjs``
  and ``.wasm``, from ``npm ci``): no WebGPU/WebGL builds, no source maps.

A page uses the model with ``<script src=".../_static/live/nt-model.js"></script>``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

WEBSITE = Path(__file__).resolve().parent
ORT_DIST = WEBSITE / "node_modules" / "onnxruntime-web" / "dist"
# the wasm-only runtime: the script, the module it imports, and the WebAssembly it instantiates
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = ("nt-model.js", "nt-bpe.js")
MODEL_FILE = "book.onnx"
RANKS_FILE = "book.tiktoken"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ort_version() -> str:
    return json.loads((ORT_DIST.parent / "package.json").read_text())["version"]


def vendor_live(folder: Path) -> dict:
    """Write the live model's files into ``folder`` (created); returns the manifest written."""
    from nexttoken.book import load_book_encoding, load_book_model
    from nexttoken.onnx_export import export_onnx
    from nexttoken.tokenizer import BOOK_RANKS_SHA256, ENDOFTEXT, book_ranks_path

    for name in ORT_FILES:
        if not (ORT_DIST / name).is_file():
            raise FileNotFoundError(
                f"{ORT_DIST / name} is missing (run `npm ci --prefix website` first?)"
            )
    folder.mkdir(parents=True, exist_ok=True)
    for name in ORT_FILES:
        shutil.copy2(ORT_DIST / name, folder / name)
    for name in PAGE_FILES:
        shutil.copy2(WEBSITE / "js" / name, folder / name)
    ranks = book_ranks_path()
    if sha256(ranks) != BOOK_RANKS_SHA256:
        raise ValueError(f"{ranks}: sha256 mismatch with BOOK_RANKS_SHA256; not shipping it")
    shutil.copy2(ranks, folder / RANKS_FILE)
    model = load_book_model()  # checks the checkpoint's sha256 against the model card
    export_onnx(model, folder / MODEL_FILE)
    cfg = model.config
    end = load_book_encoding().encode(ENDOFTEXT, allowed_special="all")  # [its id]
    manifest = {
        "runtime": ORT_FILES[0],
        "wasmModule": ORT_FILES[1],
        "wasm": {"file": ORT_FILES[2], "sha256": sha256(folder / ORT_FILES[2])},
        "onnxruntime_web": _ort_version(),
        "config": {
            "vocabSize": cfg.vocab_size,
            "blockSize": cfg.block_size,
            "nLayer": cfg.n_layer,
            "nHead": cfg.n_head,
            "dHead": cfg.d_head,
            "endOfText": end[0],
        },
        "special": {ENDOFTEXT: end[0]},
        "ranks": {"file": RANKS_FILE, "sha256": BOOK_RANKS_SHA256},
        "model": {"file": MODEL_FILE, "sha256": sha256(folder / MODEL_FILE)},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
