"""Process entry of `icsd` and `python -m icsd`: the worker fork server first, then the command, then exit.

Kept apart from icsd.cli so a daemon command starts its fork server (see icsd.daemon.fork_server) before the
command line's own imports: the server loads the image stack while the rest of icsd loads (measured:
the server started ~45 ms after exec from here, ~80 ms when started from cli.main).
"""

from __future__ import annotations

import sys
import typing

__all__ = ["entry_point"]


def entry_point() -> typing.NoReturn:
    """Run the command line, then exit without tearing the interpreter down.

    When main returns, the work is finished and saved: workers joined, journal closed, images written.
    The interpreter's teardown would still spend ~40 ms garbage-collecting and freeing every module's
    objects at the end of each `icsd batch` (measured); of it only the exit handlers matter (they flush
    the logs and remove multiprocessing's socket folder), so they run, then os._exit. SystemExit from
    argparse (--help, usage) exits normally.
    """
    from icsd.daemon.fork_server import start_for_command

    start_for_command(sys.argv[1:])
    import atexit
    import os

    from icsd.cli import main

    code = main()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader went away (`icsd status | head -1`): quiet, as in icsd.cli.main
        code = code or 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the broken pipe
    except OSError:  # a full disk: fail as the interpreter's own exit would
        code = code or 120
    os._exit(code)
