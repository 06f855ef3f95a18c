"""`python -m bot` is the same as the `incident-bot` command."""

from __future__ import annotations

import sys

from bot.cli import main

# Guarded: importing this module (multiprocessing's `spawn` does, as `__mp_main__`, in the
# children of a parent run as `python -m bot`) must not run the command line.
if __name__ == "__main__":
    sys.exit(main())
