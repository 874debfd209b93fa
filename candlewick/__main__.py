"""``python -m candlewick``: the ``candlewick`` command (``candlewick.cli``)."""

from __future__ import annotations

import sys

from candlewick.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
