"""``python -m mds_loader.cli ...``: the ``mds`` command line, where the console script is not on the PATH."""

import sys

from .app import main

sys.exit(main())
