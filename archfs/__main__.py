"""``python -m archfs``: the same as the ``archfs`` command."""

import sys

from archfs.cli import main

sys.exit(main())
