"""Screenshots of the widgets (figures/widgets/): written by ``make screenshots``, compared with a
tolerance by the browser tests, the way ``figures/`` is compared with what the code draws."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["SCREENSHOTS", "difference", "check_or_write"]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "figures" / "widgets"

# Screenshots are not plots: text antialiasing and PNG encoders may move a few pixels. A picture
# counts as current when its size is within SIZE_PX pixels and at most MAX_CHANGED of its pixels
# differ by more than LEVEL (of 255) in some channel. A new title, figure or layout is far above.
SIZE_PX = 4
LEVEL = 48
MAX_CHANGED = 0.002


def _rgb(data: bytes | Path) -> np.ndarray:
    raw = data.read_bytes() if isinstance(data, Path) else data
    with Image.open(io.BytesIO(raw)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def difference(a: bytes | Path, b: bytes | Path) -> str | None:
    """Why screenshot ``a`` is not ``b`` (None when they match within the tolerance)."""
    x, y = _rgb(a), _rgb(b)
    if abs(x.shape[0] - y.shape[0]) > SIZE_PX or abs(x.shape[1] - y.shape[1]) > SIZE_PX:
        return f"size {x.shape[1]}x{x.shape[0]} != {y.shape[1]}x{y.shape[0]}"
    h, w = min(x.shape[0], y.shape[0]), min(x.shape[1], y.shape[1])
    changed = float((np.abs(x[:h, :w] - y[:h, :w]).max(axis=2) > LEVEL).mean())
    if changed > MAX_CHANGED:
        return f"{changed:.2%} of the pixels differ (tolerance {MAX_CHANGED:.2%})"
    return None


def check_or_write(png: bytes, path: Path, write: bool) -> str | None:
    """Write ``png`` to ``path`` (``write``), else say how it differs from the committed one."""
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return None
    if not path.exists():
        return f"{path.name} is missing: run `make screenshots` and commit figures/widgets/"
    why = difference(png, path)
    if why:
        return f"{path.name} is stale ({why}): run `make screenshots` and commit figures/widgets/"
    return None
