"""Benchmark of NG-SGD (issue 5): training-step overhead and preconditioner cost.

``main(argv) -> dict`` measures

* the step time of a TDNN-F training step -- forward, backward from a fixed
  output derivative (the chain loss is left out, so the overhead is relative
  to the network alone, the conservative figure), SGD update -- with NG-SGD
  (``natural_gradient=True``, every affine/linear layer preconditioned as
  Kaldi's) and with plain SGD, on the same batch, for the digits recipe's
  model (``egs/digits``: dim 256, bottleneck 64, strides 1,1,0,3,3,3; 32
  chunks) and Kaldi's usual TDNN-F size (dim 1536, bottleneck 160, strides
  1,1,1,0,3x12; 128 chunks on a GPU, fewer on a CPU, see ``--chunks``), all
  chunks of 150 frames (50 output frames) plus the model's context. The
  preconditioners are warmed up past Kaldi's first 10 always-updating calls,
  and an even number of update periods (4 steps) is timed, so the figure is
  the steady-state mix of 1 updating and 3 non-updating calls;
* the time of one ``precondition_directions`` call for the two factors of a
  1536/160 TDNN-F layer with time stride 3 at a minibatch of 128 chunks x 50
  frames (N = 6400 rows): ``linear`` (TdnnComponent 1536 -> 160, offsets
  -3,0, no bias): input X of 6400 x 3072 (rank 20), output derivative
  6400 x 160 (rank 80); ``affine`` (160 -> 1536, offsets 0,3, bias): input
  6400 x 321 (rank 20), output derivative 6400 x 1536 (rank 80); each updating
  (t <= 10 or every 4th call) and not, with ``X̂`` formed (``explicit``) and
  left factored (``factored``, what the layer does for the larger side of
  each factor: linear_in and affine_out); and, for scale, the plain weight
  gradient ``gᵀ x`` of that factor.

Times are the median of ``--reps`` runs (min in brackets). On a CPU they are
process CPU times with 1 torch thread by default (``--clock cpu --threads
1``): on a shared, loaded machine wall times swing by 10x between identical
runs, CPU time much less (memory-bandwidth contention remains). On a GPU:
wall time. Usage: ``python scripts/bench/bench_ngsgd.py [--reps N] [--quick]
[--device cuda] [--chunks N] [--threads N] [--clock cpu|wall]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kbind.nn import TDNNF, TdnnfConfig, set_natural_gradient  # noqa: E402
from kbind.optim import OnlineNaturalGradient  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


_CLOCK = time.perf_counter


def _time(fn, reps, device):
    """(median, min) over ``reps`` runs of ``_CLOCK`` (wall, or process CPU time)."""
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = _CLOCK()
        fn()
        _sync(device)
        times.append(_CLOCK() - t0)
    return statistics.median(times), min(times)


def step_time(cfg: TdnnfConfig, chunks: int, num_pdfs: int, reps: int, device) -> dict:
    torch.manual_seed(0)
    model = TDNNF(40, num_pdfs, cfg).to(device).train()
    frames = model.left_context + 150 + model.right_context
    x = torch.randn(chunks, frames, 40, device=device)
    out = model(x)
    g_out = torch.randn_like(out.output) * 0.01
    g_xent = torch.randn_like(out.output_xent) * 0.01
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step():
        o = model(x)
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward([o.output, o.output_xent], [g_out, g_xent])
        opt.step()

    res = {}
    for ng in (False, True):
        set_natural_gradient(model, ng)
        for _ in range(12 if ng else 2):          # past the 10 always-updating calls
            step()

        def four():
            for _ in range(4):
                step()
        med, mn = _time(four, reps, device)
        res["ng" if ng else "plain"] = (med / 4, mn / 4)
    nparams = sum(p.numel() for p in model.parameters())
    return {"params": nparams, "chunks": chunks, "frames_in": frames,
            "plain_s": res["plain"], "ng_s": res["ng"],
            "overhead": res["ng"][0] / res["plain"][0] - 1.0}


def precondition_time(reps: int, device, N: int = 6400) -> dict:
    torch.manual_seed(0)
    shapes = {"linear_in (6400x3072, r20)": (3072, 20), "linear_out (6400x160, r80)": (160, 80),
              "affine_in (6400x321, r20)": (321, 20), "affine_out (6400x1536, r80)": (1536, 80)}
    out = {}
    for name, (D, R) in shapes.items():
        X = torch.randn(N, D, device=device) @ (torch.randn(D, D, device=device) / D ** 0.5)
        out[name] = {}
        for how in ("explicit", "factored"):
            ng = OnlineNaturalGradient(rank=R, update_period=4).to(device)
            call = ng.precondition_directions if how == "explicit" else ng.precondition_factored
            for _ in range(11):                       # initialise, pass t <= 10
                call(X)
            upd, noupd = [], []
            for _ in range(max(reps, 2)):
                for k in range(4):
                    updating = ng._updating(ng._counter())
                    _sync(device)
                    t0 = _CLOCK()
                    call(X)
                    _sync(device)
                    (upd if updating else noupd).append(_CLOCK() - t0)
            out[name][f"{how} updating_ms"] = 1e3 * statistics.median(upd)
            out[name][f"{how} not_updating_ms"] = 1e3 * statistics.median(noupd)
            out[name][f"{how} mean_per_call_ms"] = 1e3 * (statistics.median(upd)
                                                          + 3 * statistics.median(noupd)) / 4
    # plain weight gradients of the two factors, for scale
    x1, g1 = torch.randn(N, 3072, device=device), torch.randn(N, 160, device=device)
    x2, g2 = torch.randn(N, 321, device=device), torch.randn(N, 1536, device=device)
    out["plain gᵀx linear (160x3072)"] = {"ms": 1e3 * _time(lambda: g1.t() @ x1, reps,
                                                           device)[0]}
    out["plain gᵀx affine (1536x321)"] = {"ms": 1e3 * _time(lambda: g2.t() @ x2, reps,
                                                           device)[0]}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="digits model and preconditioner only")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads on a CPU (0: torch's default)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="",
                    help="process CPU time (default on a CPU: robust on a shared machine) "
                         "or wall time (default on a GPU)")
    ap.add_argument("--chunks", type=int, default=0,
                    help="chunks per minibatch for the 1536/160 model (default 128 on GPU, "
                         "8 on CPU)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    global _CLOCK
    clock = args.clock or ("wall" if device.type == "cuda" else "cpu")
    _CLOCK = time.process_time if clock == "cpu" else time.perf_counter
    if device.type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
    results = {"device": str(device), "threads": torch.get_num_threads(), "clock": clock}
    digits = TdnnfConfig(dim=256, bottleneck_dim=64, time_strides=[1, 1, 0, 3, 3, 3],
                         prefinal_dim=128, prefinal_big_dim=256)
    r = step_time(digits, 32, 120, args.reps, device)
    print(f"device {device}, {results['threads']} threads, {clock} clock", flush=True)
    print(f"digits TDNN-F ({r['params']} params, 32 x {r['frames_in']} frames): plain "
          f"{r['plain_s'][0] * 1e3:.1f} ms [{r['plain_s'][1] * 1e3:.1f}], NG-SGD "
          f"{r['ng_s'][0] * 1e3:.1f} ms [{r['ng_s'][1] * 1e3:.1f}] per step: overhead "
          f"{100 * r['overhead']:.1f}%", flush=True)
    results["digits step plain (ms)"] = round(r["plain_s"][0] * 1e3, 1)
    results["digits step NG-SGD (ms)"] = round(r["ng_s"][0] * 1e3, 1)
    results["digits NG-SGD overhead (%)"] = round(100 * r["overhead"], 1)
    if not args.quick:
        chunks = args.chunks or (128 if device.type == "cuda" else 8)
        kaldi = TdnnfConfig(dim=1536, bottleneck_dim=160, time_strides=[1, 1, 1, 0] + [3] * 12,
                            prefinal_dim=256, prefinal_big_dim=1536)
        r = step_time(kaldi, chunks, 2000, max(2, args.reps // 2), device)
        print(f"1536/160 TDNN-F ({r['params']} params, {chunks} x {r['frames_in']} frames): "
              f"plain {r['plain_s'][0]:.3f} s [{r['plain_s'][1]:.3f}], NG-SGD "
              f"{r['ng_s'][0]:.3f} s [{r['ng_s'][1]:.3f}] per step: overhead "
              f"{100 * r['overhead']:.1f}%", flush=True)
        results["1536/160 chunks"] = chunks
        results["1536/160 step plain (s)"] = round(r["plain_s"][0], 3)
        results["1536/160 step NG-SGD (s)"] = round(r["ng_s"][0], 3)
        results["1536/160 NG-SGD overhead (%)"] = round(100 * r["overhead"], 1)
    pre = precondition_time(args.reps, device)
    for name, v in pre.items():
        print(f"  {name}: " + ", ".join(f"{k} {x:.2f}" for k, x in v.items()), flush=True)
        for k, x in v.items():
            results[f"precondition {name} {k}"] = round(x, 2)
    return results


if __name__ == "__main__":
    main()
