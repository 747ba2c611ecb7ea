"""Figures: pure functions that take data and return a matplotlib ``Figure``.

One submodule per stage of the book; everything is re-exported here.
"""

from .attention import attention_heatmap, score_scale_figure
from .decoder import activation_figure, layer_trajectory_figure, parameter_breakdown_figure
from .embeddings import (
    cosine_neighbours,
    pca_2d,
    projection_figure,
    token_vector_figure,
    vector_image,
)
from .gpt2 import parity_figure, speed_figure
from .logits import candidate_bars, entropy, temperature_figure, visible_token
from .loop import kv_memory_figure, kv_timing_figure, step_figure
from .pipeline import STAGES, pipeline_figure, walkthrough_figure
from .roofline import roofline_figure
from .sampling import (
    distribution_text_figure,
    draws_figure,
    filter_figure,
    repeated_ngrams,
    repetition_figure,
)
from .tokens import (
    token_chips,
    token_counts_figure,
    token_label,
    token_pieces,
    vocab_sizes_figure,
)
from .training import corpus_figure, loss_curve_figure, token_loss_figure

__all__ = ["STAGES", "pipeline_figure", "walkthrough_figure"]
__all__ += ["candidate_bars", "entropy", "temperature_figure", "visible_token"]  # 05
__all__ += ["filter_figure", "draws_figure", "distribution_text_figure"]  # 06
__all__ += ["repeated_ngrams", "repetition_figure"]  # 06
__all__ += ["step_figure", "kv_memory_figure", "kv_timing_figure"]  # 07
__all__ += ["token_chips", "token_label", "token_pieces", "vocab_sizes_figure"]  # 01
__all__ += ["token_counts_figure"]  # 01
__all__ += ["cosine_neighbours", "pca_2d", "vector_image", "token_vector_figure"]  # 02
__all__ += ["projection_figure"]  # 02
__all__ += ["attention_heatmap", "score_scale_figure"]  # 03
__all__ += ["activation_figure", "layer_trajectory_figure", "parameter_breakdown_figure"]  # 04
__all__ += ["parity_figure", "speed_figure"]  # 09
__all__ += ["corpus_figure", "loss_curve_figure", "token_loss_figure"]  # 08
__all__ += ["roofline_figure"]  # 10 (and 11, 12)
