"""`python -m bench` runs every benchmark in turn (`make bench`)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        runner = getattr(module, "main", None)
        if runner is None:
            continue
        print(f"\n=== bench.{name} ===", flush=True)
        code = runner([])
        if code:
            return int(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
