"""fastshard's benchmark suite: ``python -m bench`` (or ``fastshard bench``).

See bench/README.md for what is measured and how to read the results, and
``bench.__main__.main(argv)`` to run it from Python.
"""

from ._checkout import use_built_fastshard

# Before anything imports fastshard: a checkout without compiled modules must not shadow an installed one.
use_built_fastshard()
