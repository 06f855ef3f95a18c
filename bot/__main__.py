"""`python -m bot` is the same as the `incident-bot` command."""

from __future__ import annotations

import sys

from bot.cli import main

# Guarded: the intake applier process is started with `spawn`, which imports the parent's
# main module (this one, as `__mp_main__`) in the child before running its target.
if __name__ == "__main__":
    sys.exit(main())
