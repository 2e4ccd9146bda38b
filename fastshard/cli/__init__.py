"""The ``fastshard`` command line: ``listen``, ``simulate``, ``bench``.

``main.py`` parses the arguments; each command lives in its own module and is
imported only when it runs, so ``fastshard --help`` stays fast.
"""
from __future__ import annotations

from .main import build_parser, main

__all__ = ["main", "build_parser"]
