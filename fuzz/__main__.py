"""Run every fuzz harness for a given time: ``python -m fuzz --seconds 60``.

Options: ``--only etf,zstd_stream`` (a subset), ``--sanitized`` (the Cython
modules were built with ``FASTSHARD_SANITIZE``/``FASTSHARD_FUZZ``: preload the
sanitizer runtime that atheris ships), ``--corpus DIR`` (keep what the runs
find, one folder per harness; a temporary folder otherwise; the committed
seeds in fuzz/seeds are only read).  Prints executions, coverage and the
outcome of each harness; exits 1 if any found a problem (the input that failed
is left beside the corpora as ``NAME-crash-*``/``NAME-timeout-*``).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from . import HARNESSES

ROOT = Path(__file__).resolve().parent.parent
SEEDS = Path(__file__).resolve().parent / "seeds"
# Extra read-only seed folders: the OTP-written ETF vectors of the test suite.
EXTRA_SEEDS = {"etf": [ROOT / "tests" / "data" / "etf"]}

_DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
_STAT = re.compile(r"stat::number_of_executed_units: (\d+)")


def sanitizer_env() -> dict[str, str]:
    """What a process needs to load Cython modules built with ASan/UBSan + libFuzzer coverage."""
    runtime = Path(sysconfig.get_paths()["purelib"]) / "asan_with_fuzzer.so"
    if not runtime.exists():
        sys.exit(f"--sanitized: {runtime} is missing (pip install atheris)")
    return {
        "LD_PRELOAD": str(runtime),
        "PYTHONMALLOC": "malloc",       # every Python allocation through ASan
        "ASAN_OPTIONS": "detect_leaks=0:allocator_may_return_null=1",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    }


def run_one(name: str, seconds: int, corpus: Path, env: dict[str, str], extra: list[str]) -> dict:
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = [SEEDS / name] + [p for p in EXTRA_SEEDS.get(name, []) if p.is_dir()]
    cmd = [sys.executable, "-m", f"fuzz.{name}", f"-max_total_time={seconds}", "-print_final_stats=1",
           "-timeout=10", "-rss_limit_mb=2560", f"-artifact_prefix={corpus.parent}/{name}-", *extra,
           str(corpus), *map(str, seeds)]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace")
    out = proc.stdout
    done = _DONE.findall(out)
    stat = _STAT.search(out)
    result = {"name": name, "rc": proc.returncode, "seconds": time.monotonic() - started,
              "execs": int(stat.group(1)) if stat else (int(done[-1][0]) if done else 0),
              "cov": int(done[-1][1]) if done else None, "ft": int(done[-1][2]) if done else None,
              "corpus": int(done[-1][3]) if done else None}
    if proc.returncode != 0:
        result["tail"] = "\n".join(out.splitlines()[-40:])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60, help="per harness (default 60)")
    ap.add_argument("--only", default="", help="comma-separated harness names: " + ", ".join(HARNESSES))
    ap.add_argument("--sanitized", action="store_true", help="preload atheris' ASan+libFuzzer runtime")
    ap.add_argument("--corpus", type=Path, default=None, help="keep the corpora here (one folder per harness)")
    ap.add_argument("extra", nargs="*", help="more libFuzzer flags, after --")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(HARNESSES)
    unknown = [n for n in names if n not in HARNESSES]
    if unknown:
        ap.error(f"unknown harness {', '.join(unknown)}; choose from {', '.join(HARNESSES)}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if args.sanitized:
        env.update(sanitizer_env())
    base = args.corpus or Path(tempfile.mkdtemp(prefix="fastshard-fuzz-"))
    results = []
    for name in names:
        print(f"{name}: {HARNESSES[name]} ({args.seconds} s)", flush=True)
        r = run_one(name, args.seconds, base / name, env, args.extra)
        results.append(r)
        status = "ok" if r["rc"] == 0 else f"FAILED (exit {r['rc']})"
        print(f"  {r['execs']:,} executions, cov {r['cov']} ft {r['ft']}, corpus {r['corpus']}: {status}",
              flush=True)
        if r["rc"] != 0:
            print(r["tail"])
    print(f"\n{'harness':16s} {'execs':>12s} {'exec/s':>8s} {'cov':>6s} {'ft':>7s}  result")
    for r in results:
        rate = r["execs"] / r["seconds"] if r["seconds"] else 0
        print(f"{r['name']:16s} {r['execs']:12,} {rate:8,.0f} {r['cov'] or 0:6d} {r['ft'] or 0:7d}  "
              f"{'ok' if r['rc'] == 0 else 'FAILED'}")
    print(f"corpora in {base}")
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
