"""``python -m ganno.cli``: the ``ganno`` command."""

import sys

from ganno.cli import main

sys.exit(main())
