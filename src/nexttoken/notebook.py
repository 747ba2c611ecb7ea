"""Notebook plumbing: one call at the top of every notebook makes its outputs reproducible."""

from __future__ import annotations

import random
import warnings

import numpy as np
import torch

__all__ = ["setup", "SEED"]

SEED = 0


def setup(seed: int = SEED) -> None:
    """Make a notebook deterministic and its outputs stable.

    Seeds Python, NumPy and torch; pins torch to one thread (reductions then add up in the same
    order on every machine, so printed floats do not change); sets short print precision; and makes
    matplotlib draw inline figures as PNG at a fixed resolution (SVG would embed dates and ids).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.set_printoptions(precision=4, sci_mode=False, linewidth=100)
    np.set_printoptions(precision=4, suppress=True, linewidth=100)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")

    import matplotlib

    matplotlib.rcParams.update(
        {"figure.dpi": 100, "savefig.dpi": 100, "svg.hashsalt": "nexttoken", "font.size": 10}
    )
    try:  # only inside IPython
        from IPython import get_ipython

        if get_ipython() is not None:
            from matplotlib_inline.backend_inline import set_matplotlib_formats

            set_matplotlib_formats("png")
    except ImportError:  # pragma: no cover - IPython is installed with the book
        pass
