"""``python -m prnn`` (and ``torchrun -m prnn``): the same as the ``prnn`` command."""

import sys

from prnn.cli import main

sys.exit(main())
