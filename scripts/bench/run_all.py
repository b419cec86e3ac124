"""Run every kbind benchmark and print README's benchmark table (``make bench``).

Each benchmark is a script in this folder with a ``main(argv) -> dict`` of
figures; this script runs them in turn, saves every figure (and the machine and
its load average before and after) to ``bench-out/results.json``, and prints the
markdown table README shows, built from those dicts only: one row per figure
README quotes, with kbind's figure, the reference (kaldiio, kaldi-native-fbank,
torch ops or Kaldi itself, run on the same input) and the command that
produced the row. ``--quick`` runs each benchmark in its quick mode (small
sizes, one round): for checking that they run, not for figures.

    python scripts/bench/run_all.py [--quick] [--only bench_io,bench_chain]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BENCHES = ["bench_io", "bench_features", "bench_decode", "bench_decode_digits", "bench_chain",
           "bench_kaldi_den", "bench_chain_num", "bench_chain_loss", "bench_ngsgd",
           "bench_align", "bench_ce"]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _command(*benches: str) -> str:
    return ", ".join(f"`python scripts/bench/{b}.py`" for b in benches)


@dataclass
class Row:
    """One row of the table. ``cells(v)`` gives the (kbind, reference) cells,
    reading figures through ``v(bench, key)``, which gives None for an absent
    one; ``full_only`` lists the figures only a full run measures."""
    what: str
    benches: Tuple[str, ...]
    cells: Callable
    full_only: Tuple[Tuple[str, str], ...] = ()


def _n(x, fmt="{:.1f}", scale=1.0) -> str:
    """A figure formatted, or "?" when it is absent."""
    return "?" if x is None else fmt.format(x * scale if scale != 1.0 else x)


def _den_1t(v):
    c = lambda k: v("bench_chain", k)  # noqa: E731
    peak, flops, ms = c("peak_fp32_gflops_1core"), c("flops_per_fb"), c("den_c_1t_ms")
    bound = 1e3 * flops / (peak * 1e9) if peak and flops else None
    times = ms / bound if bound and ms else None
    return (f"C: best {_n(ms)} ms = {_n(c('den_c_1t_gflops'))} effective GFLOP/s (median "
            f"{_n(c('den_c_1t_median_ms'))} ms); {_n(times)}x the FLOP bound of "
            f"{_n(bound, '{:.2f}')} ms at the measured {_n(peak, '{:.0f}')} GFLOP/s FMA peak",
            f"torch ops {_n(c('den_torch_1t_ms'), '{:.0f}')} ms "
            f"({_n(c('den_torch_1t_gflops'))} GFLOP/s); Kaldi's CPU code "
            f"{_n(v('bench_kaldi_den', 'kaldi_den_1t_ms'), '{:.0f}')} ms "
            f"({_n(v('bench_kaldi_den', 'kaldi_den_1t_gflops'), '{:.2f}')} GFLOP/s)")


def _decode(beam):
    def cells(v):
        d = lambda k: v("bench_decode_digits", k)  # noqa: E731
        return (f"{_n(d(f'beam{beam}_search_rtf'), '{:.4f}')} / "
                f"{_n(d(f'beam{beam}_search+determinize_rtf'), '{:.4f}')} "
                f"({_n(d(f'beam{beam}_search+determinize_ms_per_utt'))} ms per utterance with "
                f"lattice; HCLG {_n(d('hclg_states'), '{:d}')} states, "
                f"{_n(d('hclg_arcs'), '{:d}')} arcs)",
                f"Kaldi's latgen-faster-mapped {_n(d(f'kaldi_beam{beam}_search_rtf'), '{:.4f}')}"
                f" / {_n(d(f'kaldi_beam{beam}_search+determinize_rtf'), '{:.4f}')}")
    return cells


def _align(src):
    def cells(v):
        a = lambda k: v("bench_align", f"{src}_{k}")  # noqa: E731
        return (f"{_n(a('fps_per_cpu_second'), '{:,d}')} (compile "
                f"{_n(a('compile_ms_per_utt'))} ms per utterance)",
                f"Kaldi's align-compiled-mapped {_n(a('kaldi_fps_per_cpu_second'), '{:,d}')} "
                f"(the process: reading archives, adding transition probabilities; the same "
                f"alignment for {_n(a('kaldi_same_alignment_share'), '{:.0f}', 100)}% of "
                f"utterances)")
    return cells


def _ngsgd_step(v):
    g = lambda k: v("bench_ngsgd", k)  # noqa: E731
    big = (f"+{_n(g('1536/160 NG-SGD overhead (%)'))}% "
           f"({_n(g('1536/160 step NG-SGD (s)'), '{:.2f}')} vs "
           f"{_n(g('1536/160 step plain (s)'), '{:.2f}')} s)")
    digits = (f"+{_n(g('digits NG-SGD overhead (%)'))}% "
              f"({_n(g('digits step NG-SGD (ms)'), '{:.0f}')} vs "
              f"{_n(g('digits step plain (ms)'), '{:.0f}')} ms)")
    return (f"1536/160 model, {_n(g('1536/160 chunks'), '{:d}')} chunks: {big} / digits "
            f"model, 32 chunks: {digits}", "")


def _ngsgd_precondition(v):
    g = lambda k: v("bench_ngsgd", f"precondition {k}")  # noqa: E731
    return (f"{_n(g('linear_in (6400x3072, r20) factored mean_per_call_ms'))} / "
            f"{_n(g('affine_out (6400x1536, r80) factored mean_per_call_ms'))} ms",
            f"the plain weight gradient itself: "
            f"{_n(g('plain gᵀx linear (160x3072) ms'), '{:.0f}')} / "
            f"{_n(g('plain gᵀx affine (1536x321) ms'), '{:.0f}')} ms")


ROWS: List[Row] = [
    Row("read a float-matrix ark, sequential (page-cached)", ("bench_io",),
        lambda v: (f"{_n(v('bench_io', 'kbind_read_MBps'), '{:.0f}')} MB/s "
                   f"({_n(v('bench_io', 'archive_mb'), '{:.0f}')} MB)",
                   f"kaldiio {_n(v('bench_io', 'kaldiio_read_MBps'), '{:.0f}')} MB/s")),
    Row("write the same ark with `ark,scp`", ("bench_io",),
        lambda v: (f"{_n(v('bench_io', 'kbind_write_MBps'), '{:.0f}')} MB/s", "")),
    Row("random access through the scp", ("bench_io",),
        lambda v: (f"{_n(v('bench_io', 'kbind_scp_random_access_MBps'), '{:.0f}')} MB/s "
                   f"({_n(v('bench_io', 'scp_random_reads'), '{:d}')} of "
                   f"{_n(v('bench_io', 'entries'), '{:d}')} entries)", "")),
    Row("80-bin fbank, 1 thread, real-time factor, float64 (default)", ("bench_features",),
        lambda v: (_n(v("bench_features", "kbind_fbank80_f64_rtf"), "{:.4f}"),
                   f"kaldi-native-fbank {_n(v('bench_features', 'knf_fbank80_rtf'), '{:.4f}')} "
                   f"(incl. Python calls); Kaldi's compute-fbank-feats "
                   f"{_n(v('bench_features', 'kaldi_fbank80_rtf'), '{:.4f}')} (the process, "
                   f"reading the wav files included; its features within "
                   f"{_n(v('bench_features', 'kaldi_fbank80_max_abs_diff'), '{:.1e}')} of "
                   f"kbind's)")),
    Row("80-bin fbank, float32 (one utterance per call / batched)", ("bench_features",),
        lambda v: (f"{_n(v('bench_features', 'kbind_fbank80_f32_rtf'), '{:.4f}')} / "
                   f"{_n(v('bench_features', 'kbind_fbank80_f32_batched_rtf'), '{:.4f}')}", "")),
    Row("13-dim MFCC, float64", ("bench_features",),
        lambda v: (_n(v("bench_features", "kbind_mfcc13_f64_rtf"), "{:.4f}"), "")),
    Row("decode the digits test set (oracle log-likelihoods), 1 thread, beam 13: RTF of the "
        "search / with lattice determinisation", ("bench_decode_digits",), _decode("13")),
    Row("same, beam 8", ("bench_decode_digits",), _decode("8")),
    Row("LF-MMI den forward+backward, medium graph (2227 states, 24719 arcs), S=64, T=50, "
        "1 thread", ("bench_chain", "bench_kaldi_den"), _den_1t),
    Row("same, 2 threads", ("bench_chain",),
        lambda v: (f"C: best {_n(v('bench_chain', 'den_c_2t_ms'))} ms = "
                   f"{_n(v('bench_chain', 'den_c_2t_gflops'))} GFLOP/s",
                   f"torch ops {_n(v('bench_chain', 'den_torch_2t_ms'), '{:.0f}')} ms")),
    Row("same, extra memory at S=128, T=50", ("bench_chain",),
        lambda v: (f"C: {_n(v('bench_chain', 'mem_c_S128_1t_scratch_MB'))} MB scratch on 1 "
                   f"thread, {_n(v('bench_chain', 'mem_c_S128_2t_scratch_MB'))} MB on 2",
                   f"torch ops {_n(v('bench_chain', 'mem_torch_S128_rss_peak_delta_MB'), '{:.0f}')}"
                   f" MB (peak RSS increase); Kaldi's alpha array alone "
                   f"{_n(v('bench_chain', 'mem_kaldi_alpha_S128_MB'))} MB")),
    Row("same, per-call overhead (S=1, T=1)", ("bench_chain",),
        lambda v: (f"{_n(v('bench_chain', 'den_c_call_overhead_ms'), '{:.2f}')} ms with the "
                   "graph index cached",
                   f"{_n(v('bench_chain', 'den_c_one_shot_call_ms'), '{:.2f}')} ms building it "
                   "each call")),
    Row("LF-MMI loss (den + num + l2 + xent) / TDNN-F forward+backward, 64x150 frames, D=80",
        ("bench_chain",),
        lambda v: (f"{_n(v('bench_chain', 'loss_over_network_1t'), scale=100)}% on 1 thread, "
                   f"{_n(v('bench_chain', 'loss_over_network_2t'), scale=100)}% on 2", ""),
        full_only=(("bench_chain", "loss_over_network_1t"),
                   ("bench_chain", "loss_over_network_2t"))),
    Row("LF-MMI numerator forward+backward, e2e biphone supervisions (D=3280), S=64, T=100",
        ("bench_chain_num",),
        lambda v: (f"C: {_n(v('bench_chain_num', 'eq_c_1t_ms'), '{:.0f}')} ms 1 thread, "
                   f"{_n(v('bench_chain_num', 'eq_c_2t_ms'), '{:.0f}')} ms 2 threads (forward "
                   f"alone {_n(v('bench_chain_num', 'eq_c_1t_forward_only_ms'))} ms; allocating "
                   f"and zeroing the (S,T,D) posteriors "
                   f"{_n(v('bench_chain_num', 'eq_alloc_zero_STD_ms'), '{:.0f}')} ms)",
                   f"torch ops {_n(v('bench_chain_num', 'eq_torch_1t_ms'), '{:.0f}')} ms")),
    Row("ChainLoss forward+backward (num + den + l2 + xent), B=32, T=62, D=3280 / D=80, "
        "1 thread", ("bench_chain_loss",),
        lambda v: (f"{_n(v('bench_chain_loss', 'D3280_loss_fwd_bwd_ms'), '{:.0f}')} / "
                   f"{_n(v('bench_chain_loss', 'D80_loss_fwd_bwd_ms'), '{:.0f}')} ms (den "
                   f"{_n(v('bench_chain_loss', 'D3280_den_ms'), '{:.0f}')} / "
                   f"{_n(v('bench_chain_loss', 'D80_den_ms'), '{:.0f}')} ms)", "")),
    Row("TDNN-F training step, NG-SGD vs plain SGD (network only, process CPU time, 1 thread)",
        ("bench_ngsgd",), _ngsgd_step,
        full_only=tuple(("bench_ngsgd", f"1536/160 {k}") for k in (
            "chunks", "NG-SGD overhead (%)", "step NG-SGD (s)", "step plain (s)"))),
    Row("NG-SGD preconditioning per call (mean of updating and non-updating calls), 1536/160 "
        "layer, 128x50 frames: linear input 6400x3072 / affine output derivative 6400x1536 "
        "(left factored)", ("bench_ngsgd",), _ngsgd_precondition),
    Row("forced alignment (C Viterbi, beam 10, retry 40), flat-start chain model, digits test "
        "set: output frames per CPU-second, 1 thread", ("bench_align",), _align("chain")),
    Row("same with oracle log-likelihoods on the 3-state monophone graphs", ("bench_align",),
        _align("oracle")),
    Row("CE training of a 3x512 BLSTM on the digits alignments, iRTF: minibatches in memory / "
        "cut from the features as training goes / labels aligned on the fly", ("bench_ce",),
        lambda v: (f"{_n(v('bench_ce', 'pure_irtf'))} / {_n(v('bench_ce', 'static_irtf'))} / "
                   f"{_n(v('bench_ce', 'on_the_fly_irtf'))}", "")),
]


def needed_keys() -> List[Tuple[str, str]]:
    """(bench, key) of every figure the table reads."""
    seen: List[Tuple[str, str]] = []

    def v(bench, key):
        seen.append((bench, key))
        return None
    for row in ROWS:
        row.cells(v)
    return seen


def _skipped(results: dict, bench: str) -> Optional[str]:
    r = results.get(bench)
    if r is None:
        return "not run"
    return r.get("skipped") or r.get("chain_skipped") or r.get("oracle_skipped")


def table(results: dict) -> str:
    """README's benchmark table (markdown) from the benchmarks' dicts."""
    lines = ["| what | kbind | reference | command |", "|---|---|---|---|"]
    for row in ROWS:
        kb, ref = row.cells(lambda b, k: (results.get(b) or {}).get(k))
        why = [f"{b}: {_skipped(results, b)}" for b in row.benches if _skipped(results, b)]
        if why and "?" in kb:
            kb, ref = "(skipped: " + "; ".join(why) + ")", ""
        lines.append(f"| {row.what} | {kb} | {ref} | {_command(*row.benches)} |")
    m = results.get("machine", {})
    lines.append("")
    lines.append(f"{m.get('cpu_count')} CPUs ({m.get('cpu')}), {m.get('platform')}; "
                 f"load average (1, 5, 15 min) before {m.get('load_before')}, after "
                 f"{m.get('load_after')}; `python scripts/bench/run_all.py"
                 f"{' --quick' if results.get('quick') else ''}` (`make bench`).")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: Optional[Sequence[str]] = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="each benchmark in its quick mode (checks, not figures)")
    ap.add_argument("--only", default="", help="comma-separated benchmarks (default: all)")
    ap.add_argument("--out", default=str(ROOT / "bench-out" / "results.json"))
    a = ap.parse_args(argv)
    names = [b for b in BENCHES if not a.only or b in a.only.split(",")]
    out: dict = {"quick": a.quick,
                 "machine": {"cpu_count": os.cpu_count(), "cpu": _cpu_model(),
                             "platform": platform.platform(), "python": sys.version.split()[0],
                             "load_before": [round(x, 2) for x in os.getloadavg()]}}
    for name in names:
        print(f"== {name}", flush=True)
        out[name] = _load(name).main(["--quick"] if a.quick else [])
    out["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print()
    print(table(out))
    return out


if __name__ == "__main__":
    main()
