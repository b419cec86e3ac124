"""The Kaldi build the benchmarks time as a reference: ``$KALDI_ROOT``, else
``<shared>/kaldi``, found as the tests find it (``tests.conftest.find_kaldi``).

:func:`unavailable` says why there is no usable build (None when there is one),
:func:`program` gives the path of one of its programs, :func:`build` compiles
one of our C++ timing programs in this folder against it (``Makefile.kaldi``:
the flags of Kaldi's ``src/kaldi.mk``) into ``bench-out/kaldi``, and
:func:`run` runs a program on one thread (``OPENBLAS_NUM_THREADS=1``) and
returns its wall time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.conftest import find_kaldi, kaldi_program  # noqa: E402

BUILD_DIR = ROOT / "bench-out" / "kaldi"
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def unavailable() -> Optional[str]:
    """Why the Kaldi build cannot be used (None when it can)."""
    root = find_kaldi()
    try:
        prog = kaldi_program(root, "copy-int-vector")
    except FileNotFoundError as e:
        return str(e)
    r = subprocess.run([str(prog), "ark,t:-", "ark,t:-"], input=b"a 1\n", capture_output=True)
    if r.returncode:
        return f"{prog} does not run: {r.stderr.decode(errors='replace')[-300:]}"
    return None


def program(name: str) -> Path:
    """The path of Kaldi program ``name``."""
    return kaldi_program(find_kaldi(), name)


def build(name: str) -> Path:
    """Compile ``<name>.cc`` of this folder against the Kaldi build (make: only
    when the source is newer than the program); returns the program's path."""
    out = BUILD_DIR / name
    subprocess.run(["make", "-s", "-f", str(HERE / "Makefile.kaldi"), f"KALDI_ROOT={find_kaldi()}",
                    f"OUT_DIR={BUILD_DIR}", str(out)], check=True)
    return out


def run(cmd, **kwargs) -> tuple:
    """Run ``cmd`` (program paths or names of Kaldi programs first) on one
    thread; returns (wall seconds, completed process). Fails with the program's
    message on a non-zero exit."""
    cmd = [str(c) for c in cmd]
    env = {**os.environ, **ONE_THREAD}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, **kwargs)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited with {r.returncode}: {r.stderr[-2000:]}")
    return dt, r
