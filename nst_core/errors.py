"""Errors the core raises on purpose, so callers can tell them from bugs."""


class StylizeError(RuntimeError):
    """The stylization cannot go on."""


class NonFiniteLossError(StylizeError):
    """The loss became NaN or infinite: the weights are too large or the inputs are broken."""


class TargetsMismatchError(StylizeError):
    """Precomputed style targets were made with other weights, layers or settings than this run."""
