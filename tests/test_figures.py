"""figures/ holds exactly what `make figures` makes, within a tolerance that holds on any x86-64 CPU.

A figure drawn from a model's numbers is not bit-identical across CPUs: MKL and ATen pick other
kernels on Intel AVX-512, Intel AVX2 and AMD, so a probability moves in its 7th digit and a bar's
anti-aliased edge moves by one grey level. The test therefore compares images the way matplotlib's
own image tests do, by the RMS of the pixel difference in 0..255 grey levels
(`matplotlib.testing.compare.compare_images`), with a tolerance set from measurements:

- across simulated CPUs (`ATEN_CPU_CAPABILITY=avx2|default`, `MKL_ENABLE_INSTRUCTIONS=AVX2|SSE4_2`),
  the largest RMS seen was 0.0019 (figures/softmax_temperature.png, 5 pixels of 360,000 changed);
- the smallest genuine change tried, one token's label gaining one letter in the same figure, gives
  RMS 3.4 (a temperature of 0.72 instead of 0.7: 13.7; a logit moved by 0.02: 10.5).

TOLERANCE sits between the two, 500 times above the CPU noise and 3 times below the smallest real
change. `test_a_genuinely_changed_figure_fails` keeps the second half of that promise.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from matplotlib.testing.compare import calculate_rms, compare_images

from nexttoken.figures import FIGURES, make_figures

ROOT = Path(__file__).resolve().parents[1]

TOLERANCE = 1.0  # RMS of the pixel difference, in grey levels 0..255 (see the module docstring)


def test_every_registered_figure_is_committed():
    committed = {p.name for p in (ROOT / "figures").glob("*.png")}
    assert set(FIGURES) <= committed, "run `make figures` and commit figures/"
    assert committed <= set(FIGURES), "a PNG in figures/ that no code makes"


def test_committed_figures_are_what_the_code_makes_now(tmp_path):
    made = make_figures(tmp_path)
    assert {p.name for p in made} == set(FIGURES)
    for path in made:
        committed = ROOT / "figures" / path.name
        diff = compare_images(str(committed), str(path), tol=TOLERANCE)
        assert diff is None, (
            f"figures/{path.name} differs from what the code draws now (RMS above {TOLERANCE}): "
            f"run `make figures` and commit it. {diff}"
        )


def _pixels(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    buf.seek(0)
    return (imread(buf) * 255).round()


@pytest.fixture(scope="module")
def next_token():
    from nexttoken.figures import _book_next_token
    from nexttoken.notebook import setup

    setup()
    return _book_next_token()


def test_a_genuinely_changed_figure_fails(next_token):
    """One label gaining one letter is a real change: its RMS must be above the tolerance."""
    from nexttoken.viz import temperature_figure

    logits, labels = next_token
    committed = imread(ROOT / "figures" / "softmax_temperature.png")
    committed = (committed * 255).round()
    same = _pixels(temperature_figure(logits, labels, temperature=0.7))
    assert calculate_rms(committed, same) <= TOLERANCE

    changed = list(labels)
    top = int(logits.argmax())
    changed[top] = changed[top] + "x"
    assert calculate_rms(committed, _pixels(temperature_figure(logits, changed, 0.7))) > TOLERANCE
    assert calculate_rms(committed, _pixels(temperature_figure(logits, labels, 0.72))) > TOLERANCE


def test_cpu_rounding_noise_passes(next_token):
    """Logits moved by float32 rounding (what another CPU's kernels do) stay under the tolerance."""
    import torch

    from nexttoken.viz import temperature_figure

    logits, labels = next_token
    noise = torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))
    nudged = logits * (1 + 1e-6 * noise)
    ref = _pixels(temperature_figure(logits, labels, 0.7))
    assert calculate_rms(ref, _pixels(temperature_figure(nudged, labels, 0.7))) <= TOLERANCE
