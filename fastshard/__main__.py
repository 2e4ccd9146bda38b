"""``python -m fastshard`` runs the same command line as ``fastshard``."""
import sys

from .cli import main

sys.exit(main())
