"""`python -m streams.native build|status` (`streams.native`)."""

from __future__ import annotations

import sys

from streams import native


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    if command == "build":
        native.build()
        return 0  # a failed build is not an error: pql falls back to pure Python, said above
    if command == "status":
        print(native.ENGINE)
        return 0
    print("usage: python -m streams.native [build|status]", file=sys.stderr)
    return 2


raise SystemExit(main(sys.argv[1:]))
