"""`python -m icsd` runs the command line."""

import sys

from icsd.cli import main

sys.exit(main())
