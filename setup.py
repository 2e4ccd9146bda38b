"""Build the Cython hot path.

Every ``fastshard/*.pyx`` is an extension module of the same dotted name, so a
new codec file needs no edit here.

Sanitizers (see README, "Development", and fuzz/README.md):

* ``FASTSHARD_SANITIZE=address`` (or ``address,undefined``, any ``-fsanitize=``
  list) builds them with AddressSanitizer / UBSan; undefined behaviour then
  aborts instead of printing and going on, so a fuzzer or the suite sees it.
* ``FASTSHARD_FUZZ=1`` (clang only) adds libFuzzer's coverage instrumentation
  (``-fsanitize=fuzzer-no-link``), so the atheris harnesses in ``fuzz/`` are
  guided by the C code's coverage, not only the Python code's.
"""
import glob
import os
import sys

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - Cython is a build requirement
    sys.exit("fastshard needs Cython to build: pip install Cython")

extra_compile_args = ["-O3"] if os.name != "nt" else ["/O2"]
extra_link_args = []
sanitize = os.environ.get("FASTSHARD_SANITIZE", "")
fuzz = os.environ.get("FASTSHARD_FUZZ", "") not in ("", "0")
if sanitize or fuzz:
    sanitizers = [s for s in sanitize.split(",") if s]
    if fuzz:
        sanitizers.append("fuzzer-no-link")
    flags = [f"-fsanitize={','.join(sanitizers)}", "-fno-omit-frame-pointer", "-g", "-O1"]
    if "undefined" in sanitizers:
        flags.append("-fno-sanitize-recover=undefined")
    extra_compile_args = flags
    # The runtime comes from the preloaded library (libasan, or atheris'
    # asan_with_fuzzer.so), as it must for a module loaded into python.
    extra_link_args = [f"-fsanitize={','.join(s for s in sanitizers if s != 'fuzzer-no-link')}"] \
        if sanitize else []

extensions = [
    Extension(
        path[:-4].replace(os.sep, "."),
        [path],
        extra_compile_args=extra_compile_args,
        extra_link_args=extra_link_args,
    )
    for path in sorted(glob.glob(os.path.join("fastshard", "*.pyx")))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
