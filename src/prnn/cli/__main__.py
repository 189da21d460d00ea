"""``python -m prnn.cli``: the same as the ``prnn`` command."""

import sys

from prnn.cli import main

sys.exit(main())
