"""Saving and loading models as safetensors (no pickle).

A checkpoint is one ``.safetensors`` file: the model's tensors (the tied output projection stored
once, as ``transformer.wte.weight``) and, in its metadata, the ``GPTConfig`` as JSON. Writes go to a
temporary file that is renamed into place, so a failed save never leaves a half-written checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .model import GPT, GPTConfig

__all__ = ["save_model", "load_model", "read_config", "sha256_file"]

_TIED = "lm_head.weight"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(model: GPT, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` (weights + config) to ``path`` atomically; returns the path."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")
    path = Path(path)
    tensors = {
        k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != _TIED
    }
    meta = {"format": "nexttoken-gpt", "config": json.dumps(dataclasses.asdict(model.config))}
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("metadata must map str to str")
        meta[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_config(path: str | os.PathLike) -> GPTConfig:
    """The ``GPTConfig`` stored in a checkpoint's metadata."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "nexttoken-gpt" or "config" not in meta:
        raise ValueError(f"{path} is not a nexttoken checkpoint (no config in its metadata)")
    return GPTConfig(**json.loads(meta["config"]))


def load_model(
    path: str | os.PathLike, *, expected_sha256: str | None = None, dtype: torch.dtype | None = None
) -> GPT:
    """Build the model stored at ``path`` (in eval mode).

    With ``expected_sha256``, the file's hash is checked first and a mismatch is refused.
    Every tensor must be present with the right shape; a missing, extra or mis-shaped one is an
    error that names it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if expected_sha256 is not None:
        got = sha256_file(path)
        if got != expected_sha256:
            raise ValueError(
                f"sha256 mismatch for {path.name}: got {got}, expected {expected_sha256}"
            )
    config = read_config(path)
    with torch.device("meta"):
        model = GPT(config)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != _TIED}
    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        missing = sorted(set(expected) - keys)
        extra = sorted(keys - set(expected))
        if missing or extra:
            raise ValueError(
                f"checkpoint {path.name}: missing tensors {missing}, unexpected {extra}"
            )
        for k in expected:
            t = f.get_tensor(k)
            if t.shape != expected[k]:
                raise ValueError(
                    f"checkpoint {path.name}: tensor {k} has shape {tuple(t.shape)}, "
                    f"expected {tuple(expected[k])}"
                )
            tensors[k] = t if dtype is None else t.to(dtype)
    tensors[_TIED] = tensors["transformer.wte.weight"]
    model.load_state_dict(tensors, assign=True)
    model.lm_head.weight = model.transformer.wte.weight  # re-tie after assign
    return model.eval()
