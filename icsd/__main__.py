"""`python -m icsd` runs the command line."""

from icsd.launch import entry_point

entry_point()
