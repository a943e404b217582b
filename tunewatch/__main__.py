"""``python -m tunewatch``: the ``tunewatch`` command."""

from __future__ import annotations

import sys

from tunewatch._cli import main

if __name__ == "__main__":
    sys.exit(main())
