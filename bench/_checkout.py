"""Which fastshard the suite imports when it runs from a source checkout.

``python -m bench`` puts the checkout first on ``sys.path``, so its
``fastshard/`` shadows the installed package.  After ``pip install -e .`` (or
``setup.py build_ext --inplace``) the checkout holds the compiled modules and
that is what we want; after a plain ``pip install '.[bench]'`` it holds only
sources, and the import fails deep inside on ``_etf``.  Then the checkout is
taken off ``sys.path`` so the installed (built) package is used, or, when
there is none, the run stops with one line saying what to run.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_COMPILED = ("_decoder", "_etf", "_inflate")


def _is_built(package_dir: Path) -> bool:
    return all(any((package_dir / (name + suffix)).is_file() for suffix in importlib.machinery.EXTENSION_SUFFIXES)
               for name in _COMPILED)


def _is_root(entry: str) -> bool:
    try:
        return Path(entry or ".").resolve() == ROOT
    except OSError:
        return False


def use_built_fastshard() -> None:
    """Make ``import fastshard`` find a package with its compiled modules, or exit saying how."""
    source = ROOT / "fastshard"
    if "fastshard" in sys.modules or not source.is_dir() or _is_built(source):
        return
    saved = sys.path[:]
    sys.path[:] = [entry for entry in saved if not _is_root(entry)]
    spec = importlib.util.find_spec("fastshard")
    origin = Path(spec.origin).parent if spec is not None and spec.origin else None
    if origin is not None and origin != source and _is_built(origin):
        return  # the installed package; bench's own modules still come from bench.__path__
    sys.path[:] = saved
    raise SystemExit(f"bench: fastshard's compiled modules are not built in {ROOT} and no installed fastshard "
                     f"has them; run `pip install -e '.[bench]'` in {ROOT} (or "
                     "`python setup.py build_ext --inplace`)")
