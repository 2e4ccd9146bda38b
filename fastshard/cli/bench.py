"""``fastshard bench``: run the benchmark suite (``python -m bench``) of a source checkout.

The suite lives in ``bench/`` next to the package in the repository; it is not
installed with the wheel, so it is looked up in the checkout this package was
imported from, then in the current directory.  ``fastshard bench soak`` runs
the fault soak (``python -m bench soak``).  A checkout without compiled
modules (``pip install .`` rather than ``-e``) uses the installed package: see
``bench/_checkout.py``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["find_bench_root", "run_bench"]


def find_bench_root() -> Path | None:
    """The directory holding ``bench/__main__.py``, or None."""
    candidates = [Path(__file__).resolve().parents[2], Path.cwd()]
    for root in candidates:
        if (root / "bench" / "__main__.py").is_file():
            return root
    return None


def run_bench(args: Sequence[str]) -> int:
    root = find_bench_root()
    if root is None:
        print("fastshard: error: the benchmark suite was not found (no bench/__main__.py next to the "
              "fastshard package or in the current directory). It ships with the source repository, "
              "not the installed package: run `fastshard bench` from a checkout, after "
              "`pip install -e '.[bench]'`.", file=sys.stderr, flush=True)
        return 1
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    try:
        # The child shares our terminal and process group, so Ctrl-C reaches it directly.
        return subprocess.call([sys.executable, "-m", "bench", *args], cwd=root, env=env)
    except KeyboardInterrupt:
        return 130
