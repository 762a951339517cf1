"""The core's errors: plain `ValueError`/`TypeError` subclasses, so library users catch what they expect.

Every one carries `message`, a complete one-line sentence, and `permanent`: False only where trying the same
bytes again later may succeed (a file still being written). The shell maps them to exit codes and settings.
"""

from __future__ import annotations

__all__ = [
    "CoreError",
    "DecodeError",
    "ImageError",
    "ImageTooLargeError",
    "ParameterError",
    "ParameterTypeError",
    "TruncatedImageError",
]


class CoreError(Exception):
    """Base class of the core's errors: `str(err)` is a sentence a user can act on."""

    permanent: bool = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ParameterError(CoreError, ValueError):
    """An argument of a core function has a bad value; `argument` names it as the function spells it."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


class ParameterTypeError(ParameterError, TypeError):
    """An argument of a core function has the wrong type."""


class ImageError(CoreError, ValueError):
    """The input is not a usable image; retrying will not help."""


class DecodeError(ImageError):
    """The bytes are not an image Pillow can decode (truncated, corrupt, unknown format)."""


class TruncatedImageError(DecodeError):
    """The data ends before the picture does. Retried like a transient error: the file may still be arriving
    (a writer that paused longer than the quiet period); one that stays truncated fails after the retries."""

    permanent = False


class ImageTooLargeError(ImageError):
    """The image exceeds the pixel or dimension limits (decompression-bomb guard)."""
