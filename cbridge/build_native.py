"""cffi build script for kbind's native core (API mode).

The C declarations come from ``kbind_native.h`` (the single header that
declares the C API); the sources are every ``*.c`` in this folder. Built with
optimisation and OpenMP when the compiler supports it. ``setup.py`` runs this
through ``cffi_modules``; ``python cbridge/build_native.py`` builds in place.

Environment: ``KBIND_NO_OPENMP=1`` builds without OpenMP; ``KBIND_SANITIZE=1``
builds with AddressSanitizer and UndefinedBehaviorSanitizer, for checking the
C core's bounds (run Python with ``LD_PRELOAD=$(gcc -print-file-name=libasan.so)
ASAN_OPTIONS=detect_leaks=0``; rebuild without it afterwards).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = HERE / "kbind_native.h"


def source_files():
    return sorted(HERE.glob("*.c"))


def source_hash() -> str:
    """Hash of the C sources and headers; the Python side compares it."""
    h = hashlib.sha256()
    for p in sorted(list(HERE.glob("*.c")) + list(HERE.glob("*.h"))):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _cdef_text() -> str:
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    lines = [ln for ln in text.splitlines()
             if not ln.startswith("#") or ln.startswith("#define KB_")]
    return "\n".join(lines)


def _has_openmp() -> bool:
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "t.c"
        src.write_text("#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n")
        try:
            r = subprocess.run([cc, "-fopenmp", str(src), "-o", str(Path(d) / "t")],
                               capture_output=True)
        except OSError:
            return False
        return r.returncode == 0


def make_builder() -> FFI:
    ffi = FFI()
    ffi.cdef(_cdef_text())
    openmp = os.environ.get("KBIND_NO_OPENMP") != "1" and _has_openmp()
    cflags = ["-O3", "-std=c11", "-Wall", "-fno-math-errno",
              f'-DKB_SOURCE_HASH="{source_hash()}"']
    ldflags = []
    if os.environ.get("KBIND_SANITIZE") == "1":
        sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        cflags += sanitize + ["-O1", "-g"]
        ldflags += sanitize
    if openmp:
        cflags.append("-fopenmp")
        ldflags.append("-fopenmp")
    ffi.set_source(
        "kbind._kbind_native",
        '#include "kbind_native.h"\n',
        sources=[str(p.relative_to(HERE.parent)) for p in source_files()],
        include_dirs=[str(HERE)],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
        libraries=["m"],
    )
    return ffi


ffibuilder = make_builder()

if __name__ == "__main__":
    os.chdir(HERE.parent)
    ffibuilder.compile(verbose="-v" in sys.argv)
