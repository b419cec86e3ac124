"""Private development build of the chain denominator kernel.

Compiles ONLY ``cbridge/chain_den.c`` (with ``cbridge/common.h``) into a cffi
module ``_kb_chain_dev`` under ``/tmp/kbind_chain_dev/`` (or ``--out DIR``),
with the same flags as ``cbridge/build_native.py`` (-O3, ISO C11, OpenMP), so
the kernel can be developed without rebuilding (or breaking) the shared
extension. Usage::

    python scripts/dev_build_chain.py            # build
    python -c "import sys; sys.path.insert(0, '/tmp/kbind_chain_dev'); \
               import _kb_chain_dev as m; print(m.lib.kb_chain_den_forward_backward)"
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CBRIDGE = ROOT / "cbridge"

# The C API of chain_den.c (kept identical to its declaration in kbind_native.h).
CDEF = """
#define KB_OK 0
#define KB_EINVAL 1
#define KB_ENOMEM 2
int kb_chain_den_forward_backward(int32_t num_states, int32_t num_pdfs,
                                  const int32_t *forward_transitions, int64_t num_transitions,
                                  const float *transitions_prob, const int32_t *transitions_pdf,
                                  const int32_t *transitions_hmm_state,
                                  const float *initial_probs, int32_t num_sequences,
                                  int32_t num_frames, const float *nnet_output,
                                  const int64_t *lengths, double leaky_hmm_coefficient,
                                  int32_t num_threads, int32_t isa, float *logprob,
                                  float *deriv, double *checks, int64_t *scratch_bytes,
                                  char *err, size_t errlen);
"""


def _has_openmp() -> bool:
    """Same probe as cbridge/build_native.py."""
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


def build(out: Path, verbose: bool = False, name: str = "_kb_chain_dev",
          source: Path = CBRIDGE / "chain_den.c") -> Path:
    openmp = os.environ.get("KBIND_NO_OPENMP") != "1" and _has_openmp()
    out.mkdir(parents=True, exist_ok=True)
    ffi = FFI()
    ffi.cdef(CDEF)
    cflags = ["-O3", "-std=c11", "-Wall", "-fno-math-errno"]
    ldflags = []
    if openmp:
        cflags.append("-fopenmp")
        ldflags.append("-fopenmp")
    ffi.set_source(name, '#include "kbind_native.h"\n' + CDEF.split("#define KB_ENOMEM 2")[1],
                   sources=[str(source)], include_dirs=[str(CBRIDGE)],
                   extra_compile_args=cflags, extra_link_args=ldflags, libraries=["m"])
    lib = ffi.compile(tmpdir=str(out), verbose=verbose)
    return Path(lib)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/kbind_chain_dev")
    ap.add_argument("--name", default="_kb_chain_dev", help="module name (for variants)")
    ap.add_argument("--source", default=str(CBRIDGE / "chain_den.c"),
                    help="kernel source (a variant copy of chain_den.c)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    print(build(Path(a.out), a.verbose, a.name, Path(a.source)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
