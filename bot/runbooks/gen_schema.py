"""Write or check `runbooks/runbook.schema.json`: `python -m bot.runbooks.gen_schema [--check] [PATH]`.

Kept apart from `schema` so that running it as `__main__` never imports the module twice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.runbooks.schema import schema_json

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the JSON Schema generated from the runbook models."""
    parser = argparse.ArgumentParser(prog="python -m bot.runbooks.gen_schema", description=main.__doc__)
    parser.add_argument("path", nargs="?", default="runbooks/runbook.schema.json", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the models")
    args = parser.parse_args(argv)
    text = schema_json()
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if current != text:
            print(f"{args.path}: out of date; run python -m bot.runbooks.gen_schema", file=sys.stderr)
            return 1
        print(f"{args.path}: up to date")
        return 0
    args.path.write_text(text, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
