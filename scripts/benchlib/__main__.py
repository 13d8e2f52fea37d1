"""Entry point for `python -m benchlib` (what scripts/bench runs)."""
import sys

from benchlib.cli import main

sys.exit(main())
