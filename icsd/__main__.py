"""`python -m icsd` runs the command line."""

from icsd.cli import entry_point

entry_point()
