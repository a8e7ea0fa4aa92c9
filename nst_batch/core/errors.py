"""The core's errors, all of them: one root, :class:`CoreError`, so callers can tell them from
bugs. The core's API raises nothing else on purpose.

::

    CoreError
    ├── ConfigError (also a ValueError): a setting is out of range or does not fit the others
    │   └── DeviceError: the device or precision does not exist or would be emulated here
    ├── ShapeError (also a ValueError): a tensor or layer the caller passed does not fit
    ├── WeightsError: weights missing, unreadable, or not VGG-19
    ├── CorruptTargetsError (also a ValueError): serialised style targets cannot be read back
    └── StylizeError (also a RuntimeError): the stylization cannot go on
        ├── NonFiniteLossError: the loss became NaN or infinite
        ├── TargetsMismatchError: precomputed targets were made for another run
        └── CaptureError: a CUDA graph could not be captured (the loop runs eagerly instead)

A message names the setting it is about by its name in :class:`~nst_batch.core.StyleConfig`
(``size``, ``max_pixels``); ``settings`` lists those names, so an outer ring can say them in its
own words (the CLI's flags) without parsing the text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean X?)`` for the known name nearest to ``word``, or nothing: every ring's
    messages suggest the same way."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class CoreError(Exception):
    """Root of every error the core raises on purpose."""

    def __init__(self, message: str, settings: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.settings: tuple[str, ...] = tuple(settings)


class ConfigError(CoreError, ValueError):
    """A setting is out of range or does not fit the others (nothing has run)."""


class DeviceError(ConfigError):
    """The device or precision asked for does not exist or would be emulated here."""


class ShapeError(CoreError, ValueError):
    """A tensor (or a layer name) passed to the core does not have the shape it needs: a caller's
    mistake, not a user's setting."""


class WeightsError(CoreError):
    """Weights are missing, unreadable, or not VGG-19."""


class StylizeError(CoreError, RuntimeError):
    """The stylization cannot go on."""


class NonFiniteLossError(StylizeError):
    """The loss became NaN or infinite: the weights are too large or the inputs are broken."""


class TargetsMismatchError(StylizeError):
    """Precomputed style targets were made with other weights, layers or settings than this run."""


class CorruptTargetsError(CoreError, ValueError):
    """Serialised style targets cannot be read back (a damaged cache entry)."""


class CaptureError(StylizeError):
    """A CUDA graph could not be captured; the optimisation goes on without graphs."""
