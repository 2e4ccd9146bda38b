"""fastshard's benchmark suite: ``python -m bench`` (or ``fastshard bench``).

See bench/README.md for what is measured and how to read the results, and
``bench.__main__.main(argv)`` to run it from Python.
"""
