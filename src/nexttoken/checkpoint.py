"""Saving and loading models as safetensors (no pickle), and importing Hugging Face GPT-2.

A checkpoint is one ``.safetensors`` file: the model's tensors (the tied output projection stored
once, as ``transformer.wte.weight``) and, in its metadata, the ``GPTConfig`` as JSON (a
:class:`~nexttoken.llama.Llama`'s the same way, format ``"nexttoken-llama"``, its ``LlamaConfig``).
Writes go to a temporary file that is renamed into place, so a failed save never leaves a
half-written checkpoint.

:func:`load_gpt2` reads GPT-2 checkpoints in the Hugging Face layout (``config.json`` +
``model.safetensors``) into the book's :class:`~nexttoken.model.GPT`. The tensor names are the same
as the book's (``transformer.h.0.attn.c_attn.weight`` ...), with two differences of layout:

- OpenAI's GPT-2 stores its four projection matrices as ``Conv1D`` weights, shaped ``(in, out)``
  (``x @ W``); ``torch.nn.Linear`` keeps ``(out, in)`` (``x @ W.T``), so those four are transposed;
- the output projection is tied to ``wte``, so it is not stored (and ``attn.bias`` /
  ``attn.masked_bias``, constant causal-mask buffers of older files, are skipped).

A model from :func:`nexttoken.quantize.quantize` ``(model, "int8")`` is saved as it is: for each
int8 layer its ``weight_int8`` (int8), ``weight_scale`` and ``bias`` (fp32), the other tensors as
usual, and ``"quantization": "int8"`` in the metadata; :func:`load_model` rebuilds the same int8
model (the same tokens). Other quantized copies (``int8_weights``, torch's ``quantize_dynamic``)
are refused by :func:`save_model` with the way to save them.

Every weight must be finite: a NaN or an infinity in a checkpoint is refused at load, naming the
tensor.

:func:`load_llama` reads a Llama-family folder in the Hugging Face layout (Llama, Mistral, Qwen3:
``config.json`` + ``model.safetensors``, or shards listed in ``model.safetensors.index.json``) into
:class:`~nexttoken.llama.Llama`, whose parameter names are the Hugging Face ones: no renaming, no
transposing. :func:`save_llama` writes the reverse, which ``transformers`` loads.

Nothing here touches the network unless ``load_gpt2(..., download=True)`` is asked to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .llama import Llama, LlamaConfig
from .model import GPT, GPTConfig

__all__ = [
    "save_model",
    "load_model",
    "read_config",
    "read_metadata",
    "sha256_file",
    "load_gpt2",
    "gpt2_config_from_hf",
    "gpt2_tensor_map",
    "convert_gpt2_state_dict",
    "find_gpt2",
    "export_hf_gpt2",
    "CONV1D_WEIGHTS",
    "load_llama",
    "save_llama",
    "llama_config_from_hf",
    "LLAMA_FAMILIES",
]

_TIED = "lm_head.weight"
_FORMAT = "nexttoken-gpt"
_FORMATS = {_FORMAT: GPTConfig, "nexttoken-llama": LlamaConfig}  # format -> its config
_META_KEY = "nexttoken"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_dtype(dtype: object) -> None:
    """Raise TypeError unless ``dtype`` is None or a floating-point ``torch.dtype``."""
    if dtype is None:
        return
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            "dtype must be None or a floating-point torch.dtype such as torch.float32, "
            f"torch.float16 or torch.bfloat16; got {dtype!r}"
        )


def _safe_open(path: str | os.PathLike):
    """``safe_open(path)``; a missing file is a FileNotFoundError and a damaged or foreign one
    (truncated, not safetensors, a pickle renamed ``.safetensors``...) a ValueError naming it.
    Nothing in the file is ever executed: safetensors only parses a JSON header and raw bytes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return safe_open(str(path), framework="pt")
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"{path} is not a readable safetensors file ({path.stat().st_size:,} bytes; "
            f"safetensors says: {err}); it may be truncated, damaged, or another format"
        ) from None


def _float_tensor(t: torch.Tensor, name: str, path: str | os.PathLike) -> torch.Tensor:
    """``t`` if it is a floating-point tensor of finite numbers; a ValueError naming it if not."""
    if not t.is_floating_point():
        raise ValueError(
            f"{path}: tensor {name} has dtype {t.dtype}; model weights must be floating point"
        )
    return _finite_tensor(t, name, path)


def _finite_tensor(t: torch.Tensor, name: str, path: str | os.PathLike) -> torch.Tensor:
    """``t`` if every entry is finite; a ValueError naming the tensor and counting NaN and inf."""
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        raise ValueError(
            f"{path}: tensor {name} holds {n_nan} NaN and {n_inf} infinite values of "
            f"{t.numel()}; model weights must be finite (a diverged training run?)"
        )
    return t


def _quantization(model: GPT) -> str | None:
    """``"int8"`` for a :func:`~nexttoken.quantize.quantize` int8 model, None for a float one;
    a TypeError for other quantized layers, which no checkpoint can hold."""
    from .quantize import RowInt8Linear

    kinds = set()
    for name, m in model.named_modules():
        if isinstance(m, RowInt8Linear):
            kinds.add("int8")
        elif not isinstance(m, torch.nn.Linear) and hasattr(m, "in_features"):
            raise TypeError(
                f"save_model cannot store {name} ({type(m).__name__}): it saves float models and "
                "quantize(model, 'int8') ones; save the float model and quantize it after "
                "load_model"
            )
    if kinds and any(isinstance(m, torch.nn.Linear) for m in model.modules()):
        raise TypeError("save_model: this model mixes int8 and float linear layers")
    return "int8" if kinds else None


def save_model(
    model: GPT | Llama, path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``model`` (weights + config) to ``path`` atomically; returns the path.

    A :class:`~nexttoken.llama.Llama` is stored the same way (format ``"nexttoken-llama"``, its
    tied output projection once, as ``model.embed_tokens.weight``); float weights only."""
    if not isinstance(model, (GPT, Llama)):
        raise TypeError(f"model must be a nexttoken GPT or Llama, got {type(model).__name__}")
    path = Path(path)
    quantization = _quantization(model)
    if quantization is not None and isinstance(model, Llama):
        raise TypeError("save_model stores float Llama models only (no int8 Llama checkpoints)")
    tied = isinstance(model, GPT) or model.config.tie_embeddings
    tensors = {
        k: v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if not (tied and k == _TIED)
    }
    kind = _FORMAT if isinstance(model, GPT) else "nexttoken-llama"
    info = {"format": kind, "config": dataclasses.asdict(model.config)}
    if quantization is not None:
        info["quantization"] = quantization
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("metadata must map str to str")
        info[k] = v
    # one metadata key: safetensors writes several keys in a random order, which would give the
    # same weights a different sha256 on every save
    meta = {_META_KEY: json.dumps(info, sort_keys=True)}
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


def read_config(path: str | os.PathLike) -> GPTConfig | LlamaConfig:
    """The ``GPTConfig`` (or, for a Llama checkpoint, ``LlamaConfig``) in a checkpoint's metadata."""
    with _safe_open(path) as f:
        meta = f.metadata() or {}
    info = _read_info(meta, path)
    config, cls = info["config"], _FORMATS[info["format"]]
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the config in its metadata is not a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(
            f"{path}: unknown config fields {unknown} in its metadata; {cls.__name__} has "
            f"{sorted(known)}"
        )
    try:
        return cls(**config)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{path}: bad config in its metadata: {err}") from None


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The extra ``metadata`` that :func:`save_model` stored with a checkpoint."""
    with _safe_open(path) as f:
        info = _read_info(f.metadata() or {}, path)
    return {k: v for k, v in info.items() if k not in ("format", "config", "quantization")}


def _read_quantization(path: str | os.PathLike) -> str | None:
    with _safe_open(path) as f:
        q = _read_info(f.metadata() or {}, path).get("quantization")
    if q not in (None, "int8"):
        raise ValueError(f"{path}: unknown quantization {q!r} in its metadata; known: int8")
    return q


def _read_info(meta: dict[str, str], path: str | os.PathLike) -> dict:
    try:
        if _META_KEY in meta:
            info = json.loads(meta[_META_KEY])
        else:  # the first checkpoints had one metadata key per field
            info = dict(meta)
            if "config" in info:
                info["config"] = json.loads(info["config"])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: its metadata is not valid JSON ({err})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: its metadata is not a JSON object")
    if info.get("format") not in _FORMATS or "config" not in info:
        raise ValueError(f"{path} is not a nexttoken checkpoint (no config in its metadata)")
    return info


def load_model(
    path: str | os.PathLike, *, expected_sha256: str | None = None, dtype: torch.dtype | None = None
) -> GPT | Llama:
    """Build the model stored at ``path`` (in eval mode): a :class:`GPT`, or a
    :class:`~nexttoken.llama.Llama` for a ``"nexttoken-llama"`` checkpoint.

    With ``expected_sha256``, the file's hash is checked first and a mismatch is refused.
    Every tensor must be present with the right shape; a missing, extra or mis-shaped one is an
    error that names it.
    """
    path = Path(path)
    _check_dtype(dtype)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if expected_sha256 is not None:
        got = sha256_file(path)
        if got != expected_sha256:
            raise ValueError(
                f"sha256 mismatch for {path.name}: got {got}, expected {expected_sha256}"
            )
    config = read_config(path)
    if isinstance(config, LlamaConfig):
        return _load_llama_checkpoint(path, config, dtype)
    if _read_quantization(path) == "int8":
        if dtype not in (None, torch.float32):
            raise ValueError(f"{path.name} is an int8 checkpoint: it loads as stored (dtype=None)")
        return _load_int8(path, config)
    with torch.device("meta"):
        model = GPT(config)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != _TIED}
    tensors = _read_tensors(path, expected)
    tensors = {k: t if dtype is None else t.to(dtype) for k, t in tensors.items()}
    tensors[_TIED] = tensors["transformer.wte.weight"]
    model.load_state_dict(tensors, assign=True)
    model.lm_head.weight = model.transformer.wte.weight  # re-tie after assign
    return model.eval()


def _load_llama_checkpoint(path: Path, config: LlamaConfig, dtype: torch.dtype | None) -> Llama:
    """The :class:`~nexttoken.llama.Llama` of a ``"nexttoken-llama"`` checkpoint."""
    if _read_quantization(path) is not None:
        raise ValueError(f"{path}: a Llama checkpoint holds float weights only")
    with torch.device("meta"):
        model = Llama(config)
    tied = config.tie_embeddings
    expected = {k: v.shape for k, v in model.state_dict().items() if not (tied and k == _TIED)}
    tensors = _read_tensors(path, expected)
    tensors = {k: t if dtype is None else t.to(dtype) for k, t in tensors.items()}
    model.load_state_dict(tensors, assign=True, strict=not tied)
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight  # one tensor
    return model.eval()


def _read_tensors(
    path: Path, expected: dict[str, torch.Size], int8: frozenset[str] = frozenset()
) -> dict[str, torch.Tensor]:
    """Every tensor of ``expected`` (name -> shape) from ``path``: float and finite (``int8``:
    the names that must be int8 instead); a missing, extra, mis-typed or mis-shaped one is a
    ValueError naming it."""
    tensors = {}
    with _safe_open(path) as f:
        keys = set(f.keys())
        missing = sorted(set(expected) - keys)
        extra = sorted(keys - set(expected))
        if missing or extra:
            raise ValueError(
                f"checkpoint {path.name}: missing tensors {missing}, unexpected {extra}"
            )
        for k in expected:
            t = f.get_tensor(k)
            if k in int8:
                if t.dtype != torch.int8:
                    raise ValueError(f"{path}: tensor {k} has dtype {t.dtype}; expected int8")
            else:
                _float_tensor(t, k, path)
            if t.shape != expected[k]:
                raise ValueError(
                    f"checkpoint {path.name}: tensor {k} has shape {tuple(t.shape)}, "
                    f"expected {tuple(expected[k])}"
                )
            tensors[k] = t
    return tensors


def _load_int8(path: Path, config: GPTConfig) -> GPT:
    """The int8 model of an int8 checkpoint: every ``nn.Linear`` of ``GPT(config)`` a
    :class:`~nexttoken.quantize.RowInt8Linear` built from its stored int8 weights and scales."""
    from .quantize import RowInt8Linear, use_float64_attention

    with torch.device("meta"):
        model = GPT(config)
    use_float64_attention(model)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    expected = {}
    for k, v in model.state_dict().items():
        owner, _, leaf = k.rpartition(".")
        if owner not in linears:
            expected[k] = v.shape
        elif leaf == "bias":
            expected[k] = v.shape
    for n, m in linears.items():
        expected[f"{n}.weight_int8"] = torch.Size((m.out_features, m.in_features))
        expected[f"{n}.weight_scale"] = torch.Size((m.out_features,))
    tensors = _read_tensors(path, expected, frozenset(f"{n}.weight_int8" for n in linears))
    for n in linears:
        parent, _, child = n.rpartition(".")
        bias = tensors.pop(f"{n}.bias", None)
        w, s = tensors.pop(f"{n}.weight_int8"), tensors.pop(f"{n}.weight_scale")
        setattr(model.get_submodule(parent), child, RowInt8Linear(w, s.float(), bias))
    model.load_state_dict(tensors, assign=True, strict=False)
    left = [k for k, v in model.state_dict().items() if v.device.type == "meta"]
    if left:  # cannot happen with a checkpoint that passed the checks above
        raise ValueError(f"checkpoint {path.name}: tensors {left} were not loaded")
    return model.eval()


# --- Hugging Face GPT-2 import -------------------------------------------------------------------

#: The four weights GPT-2 stores as ``Conv1D`` ``(in, out)``: transposed to ``nn.Linear``'s ``(out, in)``.
CONV1D_WEIGHTS = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)
_SKIPPED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not weights
_PREFIX = "transformer."


def gpt2_config_from_hf(hf: dict, name: str = "") -> GPTConfig:
    """The :class:`GPTConfig` of a Hugging Face GPT-2 ``config.json`` (as a dict).

    Refuses (``ValueError`` naming the field) what the book's architecture does not implement: an
    activation other than ``gelu_new`` (GELU, tanh approximation), ``n_inner`` other than ``4 *
    n_embd``, untied output weights, unscaled or layer-scaled attention, cross-attention.
    """
    if not isinstance(hf, dict):
        raise TypeError(f"hf must be a dict (a parsed config.json), got {type(hf).__name__}")
    if hf.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"model_type must be 'gpt2', got {hf.get('model_type')!r}")
    sizes = ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size")
    missing = [k for k in sizes if k not in hf]
    if missing:
        raise ValueError(f"config.json lacks {missing}")
    for k in sizes:
        if isinstance(hf[k], bool) or not isinstance(hf[k], int):
            raise ValueError(f"{k} must be an integer, got {hf[k]!r}")
    eps = hf.get("layer_norm_epsilon", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise ValueError(f"layer_norm_epsilon must be a number, got {eps!r}")
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(
            f"activation_function must be 'gelu_new' (GELU, tanh approximation), got {act!r}"
        )
    n_inner = hf.get("n_inner")
    if n_inner is not None and n_inner != 4 * hf["n_embd"]:
        raise ValueError(f"n_inner must be None or 4 * n_embd = {4 * hf['n_embd']}, got {n_inner}")
    unsupported = {
        "tie_word_embeddings": (True, "the book ties the output projection to wte"),
        "scale_attn_weights": (True, "the book scales scores by 1/sqrt(d_head)"),
        "scale_attn_by_inverse_layer_idx": (False, "not implemented in the book"),
        "add_cross_attention": (False, "a decoder-only model has no cross-attention"),
    }
    for key, (allowed, why) in unsupported.items():
        if hf.get(key, allowed) != allowed:
            raise ValueError(f"{key}={hf[key]!r} is not supported ({why}); expected {allowed}")
    return GPTConfig(
        vocab_size=int(hf["vocab_size"]),
        block_size=int(hf["n_positions"]),
        n_layer=int(hf["n_layer"]),
        n_head=int(hf["n_head"]),
        n_embd=int(hf["n_embd"]),
        layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        name=name,
    )


def gpt2_tensor_map(config: GPTConfig) -> list[dict]:
    """How each stored GPT-2 tensor maps onto the book's model, one dict per tensor.

    Keys: ``hf_name`` (as in ``model.safetensors``, with the ``transformer.`` prefix), ``name``
    (the book's parameter), ``hf_shape`` and ``shape`` (tuples) and ``transpose`` (True for the
    four ``Conv1D`` weights). Works for any config without building tensors (uses the meta device).
    """
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    with torch.device("meta"):
        model = GPT(config)
    rows = []
    for name, p in model.state_dict().items():
        if name == _TIED:
            continue
        transpose = name.endswith(CONV1D_WEIGHTS)
        shape = tuple(p.shape)
        rows.append(
            dict(
                hf_name=name,
                name=name,
                hf_shape=shape[::-1] if transpose else shape,
                shape=shape,
                transpose=transpose,
            )
        )
    return rows


def convert_gpt2_state_dict(tensors: dict[str, torch.Tensor], config: GPTConfig) -> dict:
    """Hugging Face GPT-2 tensors -> the book's state dict (``lm_head.weight`` tied to ``wte``).

    Accepts names with or without the ``transformer.`` prefix; skips the ``attn.bias`` /
    ``attn.masked_bias`` buffers and an ``lm_head.weight`` equal to ``wte``. Transposes the
    ``Conv1D`` weights. A missing, unexpected or mis-shaped tensor is a ``ValueError`` naming it.
    """
    got: dict[str, torch.Tensor] = {}
    for k, t in tensors.items():
        if k.endswith(_SKIPPED_SUFFIXES):
            continue
        if k == _TIED:
            continue  # checked against wte below
        key = k if k.startswith(_PREFIX) else _PREFIX + k
        got[key] = t
    out: dict[str, torch.Tensor] = {}
    expected = gpt2_tensor_map(config)
    missing = sorted(r["hf_name"] for r in expected if r["hf_name"] not in got)
    extra = sorted(set(got) - {r["hf_name"] for r in expected})
    if missing or extra:
        raise ValueError(f"GPT-2 checkpoint: missing tensors {missing}, unexpected {extra}")
    for r in expected:
        t = got[r["hf_name"]]
        if tuple(t.shape) != r["hf_shape"]:
            raise ValueError(
                f"GPT-2 checkpoint: tensor {r['hf_name']} has shape {tuple(t.shape)}, expected "
                f"{r['hf_shape']}" + (" (Conv1D layout: (in, out))" if r["transpose"] else "")
            )
        out[r["name"]] = t.t().contiguous() if r["transpose"] else t
    if _TIED in tensors:
        head = tensors[_TIED]
        wte = out[_PREFIX + "wte.weight"]
        if head.shape != wte.shape or not torch.equal(head, wte):
            raise ValueError("GPT-2 checkpoint: lm_head.weight differs from wte (untied weights)")
    out[_TIED] = out[_PREFIX + "wte.weight"]
    return out


_FILES = ("config.json", "model.safetensors")


def find_gpt2(name: str, *, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The local Hugging Face cache folder holding ``name``'s ``config.json`` and
    ``model.safetensors``, or None. Offline: only looks at the cache, never the network.

    ``name`` is a Hub id such as ``"gpt2"`` or ``"openai-community/gpt2-medium"`` (a bare GPT-2
    name is also looked up under ``openai-community/``).
    """
    if not isinstance(name, str) or not name:
        raise TypeError("name must be a non-empty str, e.g. 'gpt2'")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - installed with transformers
        return None
    candidates = [name] if "/" in name else [name, f"openai-community/{name}"]
    for repo in candidates:
        paths = [try_to_load_from_cache(repo, f, cache_dir=cache_dir) for f in _FILES]
        if all(isinstance(p, str) for p in paths):
            folder = Path(paths[0]).parent
            if Path(paths[1]).parent == folder:
                return folder
    return None


def _download_gpt2(name: str, cache_dir: str | os.PathLike | None) -> Path:
    from huggingface_hub import hf_hub_download  # network access: only with download=True

    paths = [Path(hf_hub_download(name, f, cache_dir=cache_dir)) for f in _FILES]
    return paths[0].parent


def load_gpt2(
    source: str | os.PathLike,
    *,
    download: bool = False,
    dtype: torch.dtype | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> GPT:
    """A GPT-2 checkpoint in the Hugging Face layout, as the book's :class:`GPT` (eval mode).

    ``source`` is either a local folder with ``config.json`` and ``model.safetensors`` (what
    ``GPT2LMHeadModel.save_pretrained`` writes), or a model name (``"gpt2"``, ``"gpt2-medium"``,
    ``"openai-community/gpt2-large"`` ...) looked up in the local Hugging Face cache.

    **Network**: by default nothing is downloaded (like ``HF_HUB_OFFLINE=1``); a name missing from
    the cache is a ``FileNotFoundError``. Only ``download=True`` fetches the two files from the
    Hugging Face Hub (about 0.5 GB for ``"gpt2"``) into the cache.

    ``dtype`` converts the weights (e.g. ``torch.bfloat16``); default: as stored (float32).
    A missing, unexpected or mis-shaped tensor, or a config the book does not implement, is a
    ``ValueError`` naming it.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a folder path or a model name, got {type(source).__name__}"
        )
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    if not str(source).strip():
        raise ValueError(
            f"source is empty ({str(source)!r}): give a folder with config.json and "
            "model.safetensors, or a model name such as 'gpt2'"
        )
    _check_dtype(dtype)
    folder = Path(source)
    label = folder.name  # the config's name: the folder's (or the model's) name, not a full path
    if not folder.is_dir():
        if isinstance(source, os.PathLike) or str(source).startswith((".", "/", "~")):
            raise FileNotFoundError(f"no folder at {source}")
        found = find_gpt2(str(source), cache_dir=cache_dir)
        if found is None and download:
            found = _download_gpt2(str(source), cache_dir)
        if found is None:
            raise FileNotFoundError(
                f"{source!r} is neither a folder nor in the local Hugging Face cache; "
                f"call load_gpt2({str(source)!r}, download=True) to fetch it (needs network)"
            )
        folder, label = found, str(source).split("/")[-1]
    for f in _FILES:
        if not (folder / f).is_file():
            raise FileNotFoundError(f"{folder} has no {f} (expected the Hugging Face layout)")
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    try:
        hf = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_path} is not valid JSON ({err})") from None
    try:
        config = gpt2_config_from_hf(hf, name=label)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{config_path}: {err}") from None
    with _safe_open(weights_path) as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for k, t in tensors.items():
        if not k.endswith(_SKIPPED_SUFFIXES):  # the mask buffers may be bool or uint8
            _float_tensor(t, k, weights_path)
    try:
        state = convert_gpt2_state_dict(tensors, config)
    except ValueError as err:
        raise ValueError(f"{weights_path}: {err}") from None
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    with torch.device("meta"):
        model = GPT(config)
    model.load_state_dict(state, assign=True)
    model.lm_head.weight = model.transformer.wte.weight  # re-tie after assign
    return model.eval()


def export_hf_gpt2(
    model: GPT, folder: str | os.PathLike, *, eos_token_id: int | None = None
) -> Path:
    """Write ``model`` in the Hugging Face GPT-2 layout: ``folder/config.json`` and
    ``folder/model.safetensors`` (what ``GPT2LMHeadModel.save_pretrained`` writes), so that
    ``transformers.GPT2LMHeadModel.from_pretrained(folder)`` and :func:`load_gpt2` both read it.

    The inverse of :func:`convert_gpt2_state_dict`: the four ``Conv1D`` weights of every block are
    stored transposed, ``(in, out)``; the tied output projection is not stored; tensors are written
    in float32. ``eos_token_id`` (e.g. the encoding's ``<|endoftext|>``) goes into ``config.json``
    as the begin and end token. Returns the folder. Nothing is downloaded.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a nexttoken GPT, got {type(model).__name__}")
    if any(
        not isinstance(m, torch.nn.Linear) and hasattr(m, "in_features") for m in model.modules()
    ):
        raise TypeError(
            "export_hf_gpt2 writes float models; this one is quantized (export the float model)"
        )
    if eos_token_id is not None and not (
        isinstance(eos_token_id, int) and 0 <= eos_token_id < model.config.vocab_size
    ):
        raise ValueError(
            f"eos_token_id must be None or an int in [0, {model.config.vocab_size}), "
            f"got {eos_token_id!r}"
        )
    c = model.config
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    tensors = {}
    for r in gpt2_tensor_map(c):
        t = state[r["name"]].detach().to(torch.float32)
        tensors[r["hf_name"]] = (t.t() if r["transpose"] else t).contiguous().clone()
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_ctx": c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": c.layer_norm_eps,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "torch_dtype": "float32",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


#: ``model_type`` -> (architecture, what it adds to Llama) of the folders :func:`load_llama` reads.
LLAMA_FAMILIES = {
    "llama": ("LlamaForCausalLM", "the base"),
    "mistral": ("MistralForCausalLM", "a sliding window"),
    "qwen3": ("Qwen3ForCausalLM", "qk-norm"),
}
_LLAMA_INDEX = "model.safetensors.index.json"
_LLAMA_SKIPPED = ("rotary_emb.inv_freq",)  # a buffer of old checkpoints, recomputed from theta


def _hf_int(hf: dict, key: str, default: object = None) -> int:
    value = hf.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be an int >= 1, got {value!r}")
    return value


def _hf_rope_theta(hf: dict) -> float:
    """RoPE's base from ``rope_parameters`` (transformers 5) or ``rope_theta`` (earlier); a scaled
    RoPE (``rope_type`` other than default, ``rope_scaling``) is refused by name."""
    rope = hf.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        raise ValueError(f"rope_parameters must be a JSON object, got {rope!r}")
    scaling = hf.get("rope_scaling")
    kind = rope.get("rope_type", rope.get("type", "default"))
    plain = scaling in (None, {}) or (
        isinstance(scaling, dict) and scaling.get("rope_type") == "default"
    )
    if kind != "default" or not plain:
        raise ValueError(
            f"rope_type {kind!r} / rope_scaling {scaling!r} is not implemented: the book's RoPE is "
            f"the default one (rope_type 'default', no rope_scaling)"
        )
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    if isinstance(theta, bool) or not isinstance(theta, (int, float)):
        raise ValueError(f"rope_theta must be a number, got {theta!r}")
    return float(theta)


def llama_config_from_hf(hf: dict, name: str = "", block_size: int | None = None) -> LlamaConfig:
    """The :class:`~nexttoken.llama.LlamaConfig` of a Hugging Face Llama, Mistral or Qwen3
    ``config.json`` (as a dict); ``block_size`` None is ``max_position_embeddings``.

    Refuses (``ValueError`` naming the field) a GPT-2 config (use :func:`load_gpt2`), other model
    types, and what :class:`~nexttoken.llama.Llama` does not implement: an activation other than
    SiLU, biases, scaled RoPE, per-layer sliding windows.
    """
    if not isinstance(hf, dict):
        raise TypeError(f"hf must be a dict (a parsed config.json), got {type(hf).__name__}")
    kind = hf.get("model_type")
    if kind == "gpt2":
        raise ValueError(
            "model_type is 'gpt2': this is a GPT-2 checkpoint, load it with load_gpt2, not load_llama"
        )
    if kind not in LLAMA_FAMILIES:
        raise ValueError(f"model_type must be one of {sorted(LLAMA_FAMILIES)}, got {kind!r}")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"hidden_act must be 'silu' (SwiGLU's gate), got {act!r}")
    for key in ("attention_bias", "mlp_bias"):
        if hf.get(key, False) is not False:
            raise ValueError(f"{key}={hf[key]!r} is not supported (no biases); expected false")
    if "sliding_attention" in (hf.get("layer_types") or []) or hf.get("use_sliding_window"):
        raise ValueError(
            "use_sliding_window / layer_types with 'sliding_attention' is not supported: the "
            "book's sliding window is one window for every layer (Mistral's sliding_window)"
        )
    n_head = _hf_int(hf, "num_attention_heads")
    window = hf.get("sliding_window") if kind == "mistral" else None
    eps = hf.get("rms_norm_eps", 1e-6)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise ValueError(f"rms_norm_eps must be a number, got {eps!r}")
    tied = hf.get("tie_word_embeddings", False)
    if not isinstance(tied, bool):
        raise ValueError(f"tie_word_embeddings must be true or false, got {tied!r}")
    head_dim = hf.get("head_dim")
    return LlamaConfig(
        vocab_size=_hf_int(hf, "vocab_size"),
        block_size=_hf_int(hf, "max_position_embeddings") if block_size is None else block_size,
        n_layer=_hf_int(hf, "num_hidden_layers"),
        n_head=n_head,
        n_kv_head=_hf_int(hf, "num_key_value_heads", n_head),
        n_embd=_hf_int(hf, "hidden_size"),
        intermediate_size=_hf_int(hf, "intermediate_size"),
        head_dim=None if head_dim is None else _hf_int(hf, "head_dim"),
        rope_theta=_hf_rope_theta(hf),
        rms_norm_eps=float(eps),
        sliding_window=None if window is None else _hf_int(hf, "sliding_window"),
        tie_embeddings=tied,
        qk_norm=kind == "qwen3",
        name=name,
    )


def _llama_files(folder: Path) -> list[Path]:
    """The safetensors files of a Hugging Face folder: ``model.safetensors``, or the shards its
    ``model.safetensors.index.json`` lists. Pickled weights (``pytorch_model.bin``) are refused."""
    single, index = folder / "model.safetensors", folder / _LLAMA_INDEX
    if single.is_file():
        return [single]
    if not index.is_file():
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        why = f" (it has {pickles}: pickles, which are never loaded here)" if pickles else ""
        raise FileNotFoundError(f"{folder} has no model.safetensors nor {_LLAMA_INDEX}{why}")
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ValueError(
            f"{index} is not a safetensors index (a 'weight_map' object): {err}"
        ) from None
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
        raise ValueError(f"{index}: weight_map must map tensor names to file names")
    shards = []
    for f in sorted(set(weight_map.values())):
        shard = folder / f
        if Path(f).name != f or not shard.name.endswith(".safetensors"):
            raise ValueError(f"{index}: shard {f!r} must be a .safetensors file in {folder}")
        if not shard.is_file():
            raise FileNotFoundError(f"{index} lists {f}, which is not in {folder}")
        shards.append(shard)
    return shards


def _read_llama_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    """Every tensor of ``files`` (float and finite, each name once)."""
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        with _safe_open(path) as f:
            for k in f.keys():
                if k.endswith(_LLAMA_SKIPPED):
                    continue
                if k in tensors:
                    raise ValueError(f"{path}: tensor {k} is stored twice (in two shards)")
                tensors[k] = _float_tensor(f.get_tensor(k), k, path)
    return tensors


def load_llama(
    source: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    block_size: int | None = None,
) -> Llama:
    """A Llama-family folder in the Hugging Face layout as the book's :class:`~nexttoken.llama.Llama`
    (eval mode), offline.

    ``source``: a folder with ``config.json`` and ``model.safetensors`` (or sharded safetensors with
    ``model.safetensors.index.json``), as ``LlamaForCausalLM`` / ``MistralForCausalLM`` /
    ``Qwen3ForCausalLM.save_pretrained`` write it. ``dtype`` converts the weights (default: as
    stored, which must then be one dtype). ``block_size`` overrides ``max_position_embeddings``
    (RoPE runs beyond the trained context, but the model was never trained there).

    A missing, unexpected, mis-shaped or non-float tensor, a GPT-2 folder (use :func:`load_gpt2`)
    or a config :class:`~nexttoken.llama.Llama` does not implement is an error naming it.
    """
    if not isinstance(source, (str, os.PathLike)) or not str(source).strip():
        raise TypeError(f"source must be a folder path, got {source!r}")
    _check_dtype(dtype)
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder at {source} (load_llama reads a local folder only)")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json (expected the Hugging Face layout)")
    try:
        hf = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_path} is not valid JSON ({err})") from None
    try:
        config = llama_config_from_hf(hf, name=folder.name, block_size=block_size)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{config_path}: {err}") from None
    tensors = _read_llama_tensors(_llama_files(folder))
    with torch.device("meta"):
        model = Llama(config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if config.tie_embeddings:
        head = tensors.pop(_TIED, None)
        embed = tensors.get("model.embed_tokens.weight")
        if head is not None and (embed is None or not torch.equal(head, embed)):
            raise ValueError(
                f"{folder}: tie_word_embeddings is true but lm_head.weight differs from "
                f"model.embed_tokens.weight"
            )
        del expected[_TIED]
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ValueError(f"{folder}: missing tensors {missing}, unexpected {extra}")
    for k, t in tensors.items():
        if t.shape != expected[k]:
            raise ValueError(
                f"{folder}: tensor {k} has shape {tuple(t.shape)}, expected {tuple(expected[k])} "
                f"(from config.json)"
            )
    dtypes = {t.dtype for t in tensors.values()}
    if dtype is None and len(dtypes) > 1:
        raise ValueError(
            f"{folder}: tensors of several dtypes {sorted(map(str, dtypes))}: pass dtype"
        )
    if dtype is not None:
        tensors = {k: t.to(dtype) for k, t in tensors.items()}
    model.load_state_dict(tensors, assign=True, strict=not config.tie_embeddings)
    if config.tie_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight  # tied: one tensor
    return model.eval()


def save_llama(model: Llama, folder: str | os.PathLike, *, eos_token_id: int | None = None) -> Path:
    """Write ``model`` in the Hugging Face layout (``config.json`` + ``model.safetensors``) that
    ``transformers.AutoModelForCausalLM.from_pretrained(folder)`` and :func:`load_llama` read:
    ``LlamaForCausalLM``, or ``MistralForCausalLM`` with a sliding window, ``Qwen3ForCausalLM`` with
    qk-norm. The tied output projection is stored once; tensors keep the model's dtype; each file
    is written to a temporary name and renamed. Returns the folder.
    """
    if not isinstance(model, Llama):
        raise TypeError(f"model must be a nexttoken Llama, got {type(model).__name__}")
    c = model.config
    if c.qk_norm and c.sliding_window is not None:
        raise ValueError("no Hugging Face family has both qk_norm and one sliding window")
    if eos_token_id is not None and not (
        isinstance(eos_token_id, int) and not isinstance(eos_token_id, bool)
        and 0 <= eos_token_id < c.vocab_size
    ):  # fmt: skip
        raise ValueError(
            f"eos_token_id must be None or an int in [0, {c.vocab_size}), got {eos_token_id!r}"
        )
    kind = "qwen3" if c.qk_norm else "mistral" if c.sliding_window is not None else "llama"
    state = model.state_dict()
    dtype = state["model.embed_tokens.weight"].dtype
    tensors = {
        k: t.detach().cpu().contiguous().clone()
        for k, t in state.items()
        if not (c.tie_embeddings and k == _TIED)
    }
    config = {
        "architectures": [LLAMA_FAMILIES[kind][0]],
        "model_type": kind,
        "vocab_size": c.vocab_size,
        "hidden_size": c.n_embd,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_kv_head,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": c.block_size,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "rope_theta": c.rope_theta,  # where transformers before 5.0 reads it
        "tie_word_embeddings": c.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "dtype": str(dtype).removeprefix("torch."),
    }
    if kind == "mistral":
        config["sliding_window"] = c.sliding_window
    if kind == "qwen3":
        config["use_sliding_window"] = False
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / "model.safetensors")
    tmp = out / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, out / "config.json")
    return out
