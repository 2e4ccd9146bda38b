"""What produced a set of numbers: machine, Python, library versions, commit, date."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["LIBRARIES", "describe"]

LIBRARIES = ("fastshard", "picows", "orjson", "zlib-ng", "zstandard", "websockets", "aiohttp", "discord.py",
             "erlpack", "Cython", "matplotlib")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 0


def _commit(root: Path) -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "fastshard"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + (" (fastshard/ modified)" if dirty else "")


def _decoder_kind() -> str:
    from fastshard.codec import make_decoder

    decoder = make_decoder("json", 2)
    return f"{type(decoder).__module__}.{type(decoder).__name__}"


def describe(root: Path, argv: list[str]) -> dict[str, Any]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = _module_version(name)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": _cores(),
        "memory_gb": _memory_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions,
        "commit": _commit(root),
        "decoder": _decoder_kind(),
        "argv": " ".join(["python -m bench", *argv]),
    }


def _module_version(name: str) -> str:
    """For a package used from a checkout without being installed (fastshard itself, usually)."""
    try:
        module = __import__(name.replace("-", "_").replace(".py", ""))
    except ImportError:
        return "not installed"
    return f"{getattr(module, '__version__', '?')} (from source)"


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return None
