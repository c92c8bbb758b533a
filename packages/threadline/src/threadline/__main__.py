"""The ``threadline`` command."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: threadline demo [--otlp URL] [--content] [--output PATH] [--scripted]")
        return 0 if args else 2
    if args[0] == "demo":
        from threadline.demo import main as demo

        return demo(args[1:])
    print(f"threadline: unknown command {args[0]!r} (try: threadline demo)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
