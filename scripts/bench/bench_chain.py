"""Benchmark of the chain denominator forward-backward (issue 4 kernels).

``main(argv) -> dict`` measures, on the medium Kaldi fixture den graph
(``medium_den_S4_T34/den.fst``: 2227 states, 24719 arcs, D = 80):

* den forward + backward for S = 64 sequences of T = 50 frames: the C kernel
  (``kb_chain_den_forward_backward_index`` on the graph's cached index) on 1
  and 2 threads, and the torch ops
  (``impl="torch"``) on 1 and 2 intra-op threads. Timings are robust to a
  shared machine: warm-up calls first, then ``--rounds`` rounds (a pause
  between them) of ``--reps`` calls each; the figure is the best call (min),
  with the median and the spread over rounds (best call of each round); the
  1-thread C kernel is also timed in process CPU time (what it costs when it
  has the core, whatever else runs). The load average (and the number of CPUs)
  is recorded before and after each part;
* the C kernel's per-call overhead (one sequence of one frame), with the
  cached graph index and with the one-shot ``kb_chain_den_forward_backward``
  (which builds the index every call);
* effective GFLOP/s, counting 2 flops per arc per sequence per frame per pass
  (forward and backward): ``4 * A * S * T`` per forward-backward;
* the FLOP bound: the single-core FP32 peak measured with a vectorised FMA loop
  (12 independent accumulators, AVX-512 / AVX2 / SSE, compiled with cffi),
  timed in process CPU time (so that other jobs on the machine do not lower
  it), and the effective rate as a fraction of it (x threads for 2 threads);
* peak memory for S = 128, T = 50: the C kernel's scratch as it reports it
  (exact allocation sizes) plus its output buffers, and the peak RSS increase
  of one call in a fresh process (/proc/self/clear_refs + VmHWM; includes the
  (B, T, D) posteriors), for the C kernel and the torch ops;
* the LF-MMI loss (``ChainLoss``: numerator + denominator + penalties, forward
  and backward to the network output) as a fraction of a TDNN-F forward +
  backward (``kbind.nn.TDNNF(40, 80)`` default config) on the same batch: 64
  chunks of 150 frames plus the model's left/right context (50 output frames);
  the supervision is one 2-pdf-per-frame lattice FST per chunk.

Usage: ``python scripts/bench/bench_chain.py [--reps N] [--rounds R] [--quick]
[--den-only] [--no-torch] [--table]`` (``--table``: also print the README
table).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # measure the kbind of this checkout, not an installed one
    sys.path.insert(0, str(ROOT))
from tests.conftest import SHARED  # noqa: E402  (the fixtures' folder, found as the tests find it)
DEN_FST = SHARED / "fixtures" / "kaldi" / "medium_den_S4_T34" / "den.fst"


def den_nnet_output(S: int = 64, T: int = 50, D: int = 80) -> torch.Tensor:
    """The nnet output the den timings run on, here and in bench_kaldi_den.py
    (Kaldi's code on the same input): N(0, 2^2), seed 0, (S, T, D)."""
    return torch.randn(S, T, D, generator=torch.Generator().manual_seed(0)) * 2


_PEAK_SRC = r"""
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define NACC 12
__attribute__((target("avx512f"))) static double fma512(long n, float *sink) {
  __m512 a[NACC]; __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < NACC; i++) a[i] = _mm512_set1_ps((float)i);
  for (long k = 0; k < n; k++) {
#pragma GCC unroll 12
    for (int i = 0; i < NACC; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
  }
  float s = 0; for (int i = 0; i < NACC; i++) s += _mm512_reduce_add_ps(a[i]);
  *sink = s; return (double)n * NACC * 16 * 2;
}
__attribute__((target("avx2,fma"))) static double fma256(long n, float *sink) {
  __m256 a[NACC]; __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < NACC; i++) a[i] = _mm256_set1_ps((float)i);
  for (long k = 0; k < n; k++) {
#pragma GCC unroll 12
    for (int i = 0; i < NACC; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
  }
  float t[8], s = 0;
  for (int i = 0; i < NACC; i++) { _mm256_storeu_ps(t, a[i]); for (int k = 0; k < 8; k++) s += t[k]; }
  *sink = s; return (double)n * NACC * 8 * 2;
}
#endif
static double mul128(long n, float *sink) {
  typedef float v4 __attribute__((vector_size(16)));
  v4 a[12], b = {0.999999f, 0.999999f, 0.999999f, 0.999999f}, c = {1e-7f, 1e-7f, 1e-7f, 1e-7f};
  for (int i = 0; i < 12; i++) a[i] = (v4){(float)i, (float)i, (float)i, (float)i};
  for (long k = 0; k < n; k++)
    for (int i = 0; i < 12; i++) a[i] = a[i] * b + c;
  float s = 0; for (int i = 0; i < 12; i++) s += a[i][0] + a[i][1] + a[i][2] + a[i][3];
  *sink = s; return (double)n * 12 * 4 * 2;
}
double kb_bench_peak(long n, int *width, double *seconds) {
  struct timespec t0, t1; float sink; double flops;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) { *width = 512; flops = fma512(n, &sink); }
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) { *width = 256; flops = fma256(n, &sink); }
  else
#endif
  { *width = 128; flops = mul128(n, &sink); }
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
  *seconds = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  return flops + (sink == 12345.0f);
}
"""


def measure_peak(reps: int = 3):
    """Single-core FP32 FMA peak (GFLOP/s) from a vectorised FMA loop timed in
    process CPU time (best of reps), or None if no compiler is available."""
    try:
        from cffi import FFI
    except ImportError:
        return None
    d = Path(tempfile.mkdtemp(prefix="kbind_peak_"))
    ffi = FFI()
    ffi.cdef("double kb_bench_peak(long n, int *width, double *seconds);")
    ffi.set_source("_kb_bench_peak", _PEAK_SRC, extra_compile_args=["-O2"])
    try:
        so = ffi.compile(tmpdir=str(d), verbose=False)
    except Exception as e:  # no compiler
        return {"error": str(e)}
    import importlib.util
    spec = importlib.util.spec_from_file_location("_kb_bench_peak", so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    w = mod.ffi.new("int *")
    sec = mod.ffi.new("double *")
    best = 0.0
    for _ in range(reps):
        flops = mod.lib.kb_bench_peak(20_000_000, w, sec)
        best = max(best, flops / sec[0] / 1e9)
    return {"gflops": best, "vector_bits": int(w[0])}


def _load():
    """(1-minute load average, CPU count)."""
    return round(os.getloadavg()[0], 2), os.cpu_count()


def _timeit(fn, reps, warmup=2, rounds=1, pause=0.5, clock=time.perf_counter):
    """Warm-up calls, then ``rounds`` rounds of ``reps`` calls (``pause``
    seconds between rounds). Returns min, median over all calls and the best
    call of each round (seconds)."""
    for _ in range(warmup):
        fn()
    ts, best = [], []
    for r in range(rounds):
        if r:
            time.sleep(pause)
        tr = []
        for _ in range(reps):
            t0 = clock()
            fn()
            tr.append(clock() - t0)
        ts += tr
        best.append(min(tr))
    return min(ts), statistics.median(ts), best


def _rss_peak_delta(fn):  # (in-process variant; allocator reuse hides C scratch)
    """Peak RSS increase (bytes) while running fn (Linux: clear_refs + VmHWM)."""
    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        return None
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    base = status("VmRSS:")
    fn()
    hwm = status("VmHWM:")
    if base is None or hwm is None:
        return None
    return max(0, hwm - base)


_RSS_CHILD = r"""
import json, sys, torch
from kbind.chain import DenominatorGraph, denominator_forward_backward
torch.set_num_threads(1)
S, T, impl, fst = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
g = DenominatorGraph.from_fst(fst, 80)
y = torch.randn(S, T, 80)
denominator_forward_backward(g, y[:1, :2].contiguous(), impl=impl)   # imports, graph caches
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")
base = status("VmRSS:")
r = denominator_forward_backward(g, y, impl=impl)
print(json.dumps(status("VmHWM:") - base))
"""


def _rss_subprocess(impl: str, S: int, T: int, fst: str):
    """Peak RSS increase of one forward-backward in a fresh process (bytes), or None."""
    import subprocess
    try:
        r = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(S), str(T), impl, fst],
                           capture_output=True, text=True, timeout=600, cwd=str(ROOT))
        return int(r.stdout.strip().splitlines()[-1])
    except Exception:
        return None


def _lattice_supervision(S, T, D, seed=0):
    """One numerator FST per sequence: T frames, two pdfs per frame (prob 1/2)."""
    from kbind.chain import Supervision
    from kbind.io.fst import Fst

    rng = np.random.default_rng(seed)
    fsts = []
    for _ in range(S):
        lines = []
        for t in range(T):
            a, b = rng.choice(D, 2, replace=False)
            lines.append(f"{t} {t + 1} {a + 1} {a + 1} 0.6931472")
            lines.append(f"{t} {t + 1} {b + 1} {b + 1} 0.6931472")
        lines.append(f"{T}")
        fsts.append(Fst.from_text("\n".join(lines) + "\n"))
    return Supervision.from_fsts(fsts)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7, help="calls per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of --reps calls")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, no TDNN-F")
    ap.add_argument("--den-only", action="store_true",
                    help="only the denominator timings (no memory, no TDNN-F)")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch-ops timings")
    ap.add_argument("--table", action="store_true", help="print the README table")
    ap.add_argument("--den-fst", default=str(DEN_FST))
    a = ap.parse_args(argv)
    reps, rounds = (3, 1) if a.quick else (a.reps, a.rounds)

    from kbind import _native
    from kbind.chain import ChainLoss, DenominatorGraph, denominator_forward_backward
    from kbind.chain import denominator as den_mod

    out: dict = {"load_before": _load()}
    g = DenominatorGraph.from_fst(a.den_fst, 80)
    A, H = g.num_arcs, g.num_states
    S, T, D = 64, 50, 80
    out.update(graph_states=H, graph_arcs=A, S=S, T=T, D=D)
    y = den_nnet_output(S, T, D)
    L = torch.full((S,), T, dtype=torch.long)
    flops = 4.0 * A * S * T
    out["flops_per_fb"] = flops
    nthreads0 = torch.get_num_threads()

    peak = measure_peak()
    out["peak_fp32_gflops_1core"] = peak.get("gflops") if peak else None
    out["peak_vector_bits"] = peak.get("vector_bits") if peak else None

    # ---- den forward + backward: C kernel and torch ops, 1 and 2 threads
    for n in (1, 2):
        if _native.available():
            def c_fb(n=n):
                den_mod._c_forward_backward(g, y, L, 0.1, num_threads=n)
            out[f"load_before_c_{n}t"] = _load()
            tmin, tmed, best = _timeit(c_fb, reps, rounds=rounds)
            out[f"den_c_{n}t_ms"] = 1e3 * tmin
            out[f"den_c_{n}t_median_ms"] = 1e3 * tmed
            out[f"den_c_{n}t_round_best_ms"] = [round(1e3 * b, 2) for b in best]
            out[f"den_c_{n}t_gflops"] = flops / tmin / 1e9
            if out["peak_fp32_gflops_1core"]:
                out[f"den_c_{n}t_frac_of_peak"] = (flops / tmin / 1e9) / (
                    n * out["peak_fp32_gflops_1core"])
            if n == 1:
                tcpu, _, _ = _timeit(c_fb, reps, rounds=rounds, clock=time.process_time)
                out["den_c_1t_cpu_ms"] = 1e3 * tcpu
                out["den_c_1t_cpu_gflops"] = flops / tcpu / 1e9
        if a.no_torch:
            continue
        torch.set_num_threads(n)
        try:
            out[f"load_before_torch_{n}t"] = _load()
            tmin, tmed, best = _timeit(
                lambda: denominator_forward_backward(g, y, impl="torch"), max(2, reps // 2),
                warmup=1, rounds=rounds)
        finally:
            torch.set_num_threads(nthreads0)
        out[f"den_torch_{n}t_ms"] = 1e3 * tmin
        out[f"den_torch_{n}t_median_ms"] = 1e3 * tmed
        out[f"den_torch_{n}t_round_best_ms"] = [round(1e3 * b, 2) for b in best]
        out[f"den_torch_{n}t_gflops"] = flops / tmin / 1e9
    if _native.available():
        # per-call overhead: one sequence of one frame (the graph index is
        # cached with the graph; building it is timed through the one-shot call)
        y1, L1 = y[:1, :1].contiguous(), torch.ones(1, dtype=torch.int64)
        tmin, _, _ = _timeit(lambda: den_mod._c_forward_backward(g, y1, L1, 0.1, num_threads=1),
                             20, rounds=rounds)
        out["den_c_call_overhead_ms"] = 1e3 * tmin
        graph_args = den_mod._c_graph_args(g)
        lp1, post1 = torch.empty(1), torch.empty(1, 1, D)
        P = _native.ptr

        def one_shot():
            _native.call("kb_chain_den_forward_backward", g.num_states, D, *graph_args, 1, 1,
                         P(y1, D, "nnet_output"), _native.ffi.NULL, 0.1, 1, -1,
                         P(lp1, 1, "logprob"), P(post1, D, "posteriors"), _native.ffi.NULL,
                         _native.ffi.NULL)
        tmin, _, _ = _timeit(one_shot, 20, rounds=rounds)
        out["den_c_one_shot_call_ms"] = 1e3 * tmin
    if "den_c_1t_ms" in out and "den_torch_1t_ms" in out:
        out["speedup_c_vs_torch_1t"] = out["den_torch_1t_ms"] / out["den_c_1t_ms"]
    if a.den_only:
        out["load_after"] = _load()
        if a.table:
            print(table(out))
        return out

    # ---- memory for S = 128, T = 50
    S2 = 128
    y2 = torch.randn(S2, T, D, generator=torch.Generator().manual_seed(1))
    L2 = torch.full((S2,), T, dtype=torch.long)
    if _native.available():
        for n in (1, 2):
            st: dict = {}
            den_mod._c_forward_backward(g, y2, L2, 0.1, num_threads=n, stats=st)
            out[f"mem_c_S128_{n}t_scratch_MB"] = st["scratch_bytes"] / 2**20
        out["mem_c_S128_outputs_MB"] = (S2 * T * D + S2) * 4 / 2**20
        d = _rss_subprocess("c", S2, T, a.den_fst)
        out["mem_c_S128_1t_rss_peak_delta_MB"] = None if d is None else d / 2**20
    out["mem_kaldi_alpha_S128_MB"] = (T + 1) * (H + 1) * S2 * 4 / 2**20
    d = _rss_subprocess("torch", S2, T, a.den_fst)
    out["mem_torch_S128_rss_peak_delta_MB"] = None if d is None else d / 2**20

    # ---- LF-MMI loss vs TDNN-F forward + backward on the same batch
    if not a.quick:
        from kbind.nn import TDNNF

        for n in (1, 2):
            torch.set_num_threads(n)
            try:
                torch.manual_seed(0)
                model = TDNNF(feat_dim=40, num_pdfs=80)
                model.train()
                Tin = model.left_context + 150 + model.right_context
                x = torch.randn(64, Tin, 40)
                To = model(x).output.shape[1]
                sup = _lattice_supervision(64, To, 80)
                loss_fn = ChainLoss(g, leaky_hmm_coefficient=0.1, out_of_range_regularize=0.0)

                def net():
                    model.zero_grad(set_to_none=True)
                    o = model(x).output
                    o.backward(torch.ones_like(o) * 1e-3)

                yo = (torch.randn(64, To, 80, generator=torch.Generator().manual_seed(2)) * 2)

                def loss():
                    yy = yo.clone().requires_grad_(True)
                    loss_fn(yy, sup).backward()

                tnet, _, _ = _timeit(net, max(2, reps // 3), warmup=1)
                tloss, _, _ = _timeit(loss, reps, warmup=1)
                out[f"tdnnf_fwd_bwd_{n}t_ms"] = 1e3 * tnet
                out[f"lfmmi_loss_fwd_bwd_{n}t_ms"] = 1e3 * tloss
                out[f"loss_over_network_{n}t"] = tloss / tnet
                if f"den_c_{n}t_ms" in out:
                    out[f"den_only_over_network_{n}t"] = out[f"den_c_{n}t_ms"] / (1e3 * tnet)
                out["tdnnf_output_frames"] = To
                out["tdnnf_input_frames"] = Tin
            finally:
                torch.set_num_threads(nthreads0)
    out["load_after"] = _load()
    if a.table:
        print(table(out))
    return out


def table(r: dict) -> str:
    """The README table (markdown) from main()'s figures."""
    peak = r.get("peak_fp32_gflops_1core")
    rows = ["| den forward+backward, S=64 T=50, medium graph | threads | ms (best; median) "
            "| GFLOP/s | % of FMA peak |", "|---|---|---|---|---|"]
    for impl in ("c", "torch"):
        for n in (1, 2):
            k = f"den_{impl}_{n}t"
            if f"{k}_ms" not in r:
                continue
            gf = r[f"{k}_gflops"]
            pct = f"{100 * gf / (n * peak):.1f}" if peak else "?"
            name = "C kernel" if impl == "c" else "torch ops"
            rows.append(f"| {name} | {n} | {r[f'{k}_ms']:.1f}; {r[f'{k}_median_ms']:.1f} "
                        f"| {gf:.1f} | {pct} |")
    lines = ["\n".join(rows)]
    if peak:
        lines.append(f"FMA peak (1 core, {r.get('peak_vector_bits')}-bit, CPU time): "
                     f"{peak:.0f} GFLOP/s; FLOP bound {1e3 * r['flops_per_fb'] / (peak * 1e9):.2f} ms")
    if "den_c_1t_cpu_ms" in r:
        lines.append(f"C kernel, 1 thread, process CPU time: {r['den_c_1t_cpu_ms']:.1f} ms "
                     f"({r['den_c_1t_cpu_gflops']:.1f} GFLOP/s)")
    if "den_c_call_overhead_ms" in r:
        lines.append(f"C kernel per-call overhead (S=1, T=1): {r['den_c_call_overhead_ms']:.2f} ms "
                     f"with the cached graph index, {r['den_c_one_shot_call_ms']:.2f} ms building "
                     f"it each call")
    mem = [f"{k}: {v:.1f} MB" for k, v in r.items() if k.startswith("mem_") and v is not None]
    if mem:
        lines.append("Memory, S=128 T=50: " + "; ".join(mem))
    lines.append(f"load average (1 min) before/after: {r.get('load_before')} / "
                 f"{r.get('load_after')} (load, CPUs)")
    return "\n\n".join(lines)


if __name__ == "__main__":
    res = main(sys.argv[1:])
    print(json.dumps(res, indent=2))
