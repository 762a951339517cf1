"""The shell's errors: each carries a one-line user-facing message and a sysexits exit code.

The CLI maps these (and the core's errors, via `exit_code_for`) to exit codes without tracebacks; the
daemon logs the message and goes on. Permanent errors (the input itself is bad) send a file to the failed
folder; transient errors (the system is temporarily unable) are retried with backoff.
"""

from __future__ import annotations

__all__ = [
    "EX_CANTCREAT",
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_USAGE",
    "exit_code_for",
    "DataError",
    "IcsdError",
    "SettingsError",
    "TransientError",
    "InputError",
    "UsageError",
    "EX_NOINPUT",
    "OutputError",
]

# BSD sysexits.h values: systemd and shell scripts understand them.
EX_USAGE = 64
EX_DATAERR = 65  # the input is not a usable image (the core's ImageError)
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



class DataError(IcsdError):
    """A file named on the command line is not a usable image (the core's ImageError, with the file's name)."""

    exit_code = EX_DATAERR


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


def exit_code_for(exc: BaseException) -> int:
    """The sysexits code for a shell or core error: bad image data 65, a bad argument 64, else its own."""
    from icsd.core import ImageError, ParameterError  # light: the core's errors import nothing

    if isinstance(exc, IcsdError):
        return exc.exit_code
    if isinstance(exc, ImageError):
        return EX_DATAERR
    if isinstance(exc, ParameterError):
        return EX_USAGE
    return 1
