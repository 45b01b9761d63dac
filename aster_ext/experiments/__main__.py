"""``python -m aster_ext.experiments reproduce [--quick]``."""

from __future__ import annotations

import sys

from .reproduce import main

if __name__ == "__main__":
    sys.exit(main())
