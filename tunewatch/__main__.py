"""``python -m tunewatch``: the ``tunewatch`` command (:mod:`tunewatch._entry`)."""

from __future__ import annotations

import sys

from tunewatch._entry import main

if __name__ == "__main__":
    sys.exit(main())
