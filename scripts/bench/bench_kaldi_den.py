"""Kaldi's own chain denominator forward-backward on the CPU: the reference for
the den rows of bench_chain.py.

``main(argv) -> dict`` compiles ``kaldi_den_timing.cc`` (our program calling
Kaldi's ``chain::DenominatorComputation``) against the Kaldi build
(``$KALDI_ROOT``, else ``../shared/kaldi``) into ``bench-out/kaldi``, and times
it on the input bench_chain.py gives kbind's C kernel: the medium fixture den
graph (``medium_den_S4_T34/den.fst``: 2227 states, 24719 arcs, D = 80), S = 64
sequences of T = 50 frames of ``bench_chain.den_nnet_output()``, leaky-HMM
coefficient 0.1, one thread (``OPENBLAS_NUM_THREADS=1``; Kaldi's CPU den code
is single-threaded). One call is what Kaldi's chain training does for the
denominator: construct ``DenominatorComputation`` (exp of the nnet output),
``Forward()``, ``Backward()``; the graph is built once, as kbind caches its
index. Reported as bench_chain.py reports the C kernel: the best call of
``--rounds`` rounds of ``--reps`` calls (and the median), in wall-clock and
process CPU time, and effective GFLOP/s = ``4 * arcs * S * T`` / best time.
Also Kaldi's log-likelihood and its relative difference from kbind's on the same
input (the check that both ran on the same thing).

Usage: ``python scripts/bench/bench_kaldi_den.py [--reps N] [--rounds R] [--quick]``
(``--quick``: S = 8, two calls).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _kaldi  # noqa: E402
import bench_chain  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7, help="calls per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of --reps calls")
    ap.add_argument("--quick", action="store_true", help="S = 8, one round of two calls")
    ap.add_argument("--den-fst", default=str(bench_chain.DEN_FST))
    a = ap.parse_args(argv)
    why = _kaldi.unavailable()
    if why:
        print(f"bench_kaldi_den: no Kaldi to time ({why})")
        return {"skipped": why}
    from kbind.chain import DenominatorGraph, denominator_forward_backward
    from kbind.io import write_object

    S, T, D = (8, 50, 80) if a.quick else (64, 50, 80)
    reps, rounds = (2, 1) if a.quick else (a.reps, a.rounds)
    leaky = 0.1
    prog = _kaldi.build("kaldi_den_timing")
    y = bench_chain.den_nnet_output(S, T, D)
    with tempfile.TemporaryDirectory() as tmp:
        mat = Path(tmp) / "nnet_output.mat"
        write_object(str(mat), y.transpose(0, 1).reshape(T * S, D).numpy())  # row t*S + s
        _, r = _kaldi.run([prog, a.den_fst, D, mat, S, leaky, 2, rounds, reps])
    k = json.loads(r.stdout)
    g = DenominatorGraph.from_fst(a.den_fst, D)
    ours = float(denominator_forward_backward(g, y, leaky_hmm_coefficient=leaky).logprob.sum())
    flops = 4.0 * k["num_arcs"] * S * T
    best, best_cpu = min(k["wall_ms"]), min(k["cpu_ms"])
    per_round = [min(k["wall_ms"][i * reps:(i + 1) * reps]) for i in range(rounds)]
    return {
        "graph_states": k["num_states"], "graph_arcs": k["num_arcs"], "S": S, "T": T, "D": D,
        "threads": 1,
        "kaldi_den_1t_ms": round(best, 2),
        "kaldi_den_1t_median_ms": round(statistics.median(k["wall_ms"]), 2),
        "kaldi_den_1t_round_best_ms": [round(x, 2) for x in per_round],
        "kaldi_den_1t_gflops": round(flops / (best * 1e-3) / 1e9, 3),
        "kaldi_den_1t_cpu_ms": round(best_cpu, 2),
        "kaldi_den_1t_cpu_gflops": round(flops / (best_cpu * 1e-3) / 1e9, 3),
        "kaldi_logprob": k["logprob"],
        "logprob_rel_diff_vs_kbind": abs(k["logprob"] - ours) / abs(ours),
        "kaldi_root": str(_kaldi.find_kaldi()),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
