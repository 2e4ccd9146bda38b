"""``python -m bench`` from a checkout whose fastshard/ has no compiled modules (``pip install .``, not -e)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import fastshard

ROOT = Path(__file__).resolve().parent.parent


def _source_checkout(tmp_path: Path) -> Path:
    """bench/ and fastshard/ as a fresh clone has them: sources only."""
    ignore = shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__", "results")
    for name in ("bench", "fastshard"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=ignore)
    return tmp_path


def _run(checkout: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=checkout, capture_output=True, text=True, timeout=60,
                          env=env)


def test_an_installed_fastshard_is_used_instead_of_the_bare_sources(tmp_path):
    checkout = _source_checkout(tmp_path)
    done = _run(checkout, "-c", "import bench, fastshard._etf; print(fastshard.__file__)")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).parent == Path(fastshard.__file__).parent  # the built one, not the copy


def test_without_an_installed_fastshard_one_line_says_what_to_run(tmp_path):
    checkout = _source_checkout(tmp_path)
    # -S: no site processing, so no installed (or editable) fastshard; the libraries stay reachable.
    env = dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"])
    done = _run(checkout, "-S", "-m", "bench", "--quick", env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install -e '.[bench]'" in lines[0], done.stderr
