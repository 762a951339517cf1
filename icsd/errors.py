"""Exception hierarchy: every error carries a one-line user-facing message and an exit code.

The CLI maps these to exit codes without tracebacks; the daemon logs the message and goes on.
Permanent errors (the input itself is bad) send a file to the failed folder; transient errors
(the system is temporarily unable) are retried with backoff.
"""

from __future__ import annotations

__all__ = [
    "EX_CANTCREAT",
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_USAGE",
    "DecodeError",
    "IcsdError",
    "ImageError",
    "ImageTooLargeError",
    "SettingsError",
    "TransientError",
    "TruncatedImageError",
    "InputError",
    "UsageError",
    "EX_NOINPUT",
    "OutputError",
]

# BSD sysexits.h values: systemd and shell scripts understand them.
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_CONFIG = 78


class IcsdError(Exception):
    """Base class: `str(err)` is a complete sentence a user can act on."""

    exit_code: int = 1
    permanent: bool = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SettingsError(IcsdError):
    """A setting or command-line option is invalid; names the setting and the allowed values."""

    exit_code = EX_CONFIG


class UsageError(IcsdError):
    """The command line is wrong in a way argparse cannot see (an empty -o, say)."""

    exit_code = EX_USAGE


class ImageError(IcsdError):
    """The input is not a usable image; retrying will not help."""

    exit_code = EX_DATAERR


class DecodeError(ImageError):
    """The bytes are not an image Pillow can decode (truncated, corrupt, unknown format)."""


class TruncatedImageError(DecodeError):
    """The data ends before the picture does. Retried like a transient error: the file may still be arriving
    (a writer that paused longer than the quiet period); one that stays truncated fails after the retries."""

    permanent = False


class ImageTooLargeError(ImageError):
    """The image exceeds the pixel or dimension limits (decompression-bomb guard)."""


class InputError(IcsdError):
    """A file named on the command line cannot be read."""

    exit_code = EX_NOINPUT


class OutputError(IcsdError):
    """An output file or folder cannot be created (a file where a folder must be, no permission...)."""

    exit_code = EX_CANTCREAT


class TransientError(IcsdError):
    """A temporary condition (disk full, file busy, worker died); the job may be retried."""

    exit_code = EX_TEMPFAIL
    permanent = False
