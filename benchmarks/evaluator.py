"""The judge of every benchmark, ours and pastiche's: the same one each pair's sidecar uses
(:mod:`nst_batch.core.quality`, where the definitions are)."""

from nst_batch.core.quality import CONTENT_LAYER, STYLE_LAYERS, Distances, Evaluator, gram_hw

__all__ = ["CONTENT_LAYER", "STYLE_LAYERS", "Distances", "Evaluator", "gram_hw"]
