"""Build the Cython hot path.

Every ``fastshard/*.pyx`` is an extension module of the same dotted name, so a
new codec file needs no edit here.  ``FASTSHARD_SANITIZE=address`` builds them
with AddressSanitizer (see README, "Development").
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
sanitize = os.environ.get("FASTSHARD_SANITIZE")
if sanitize:
    flags = [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g", "-O1"]
    extra_compile_args = flags
    extra_link_args = [f"-fsanitize={sanitize}"]

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
