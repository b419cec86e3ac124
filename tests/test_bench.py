"""Every benchmark script in scripts/bench runs (in its quick mode) and returns
the figures README's benchmark table reads, so that the benchmarks cannot rot
unnoticed. No timing is checked: quick figures mean nothing."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "scripts" / "bench"


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_every_benchmark_runs_and_gives_the_figures_of_readmes_table(tmp_path):
    sys.path.insert(0, str(ROOT / "egs" / "digits"))
    import run  # egs/digits/run.py: a tiny corpus up to the graphs, for the digits benchmarks

    data, exp = tmp_path / "data", tmp_path / "exp"
    assert run.main(["--corpus_size", "tiny", "--data", str(data), "--exp", str(exp),
                     "--stop_stage", "4"]) == 0
    run_all = _bench("run_all")
    digits = ["--exp", str(exp), "--data", str(data)]
    results = {"quick": True, "machine": {}}
    for name in run_all.BENCHES:
        extra = digits if name in ("bench_decode_digits", "bench_align", "bench_ce") else []
        results[name] = _bench(name).main(["--quick", *extra])

    # Only the parts that need a trained chain model (`make run`) may be skipped, and
    # Kaldi's figures only when there is no Kaldi build to compare with.
    assert "make run" in results["bench_ce"]["skipped"]
    assert "make run" in results["bench_align"]["chain_skipped"]
    kaldi_expected = bool(os.environ.get("KALDI_ROOT")) or SHARED.is_dir()
    full_only = {k for row in run_all.ROWS for k in row.full_only}
    missing = []
    for bench, key in run_all.needed_keys():
        r = results[bench]
        if (bench, key) in full_only or "skipped" in r or \
                (key.startswith("chain_") and "chain_skipped" in r):
            continue
        if not kaldi_expected and ("kaldi" in key or bench == "bench_kaldi_den"):
            continue
        if r.get(key) is None:
            missing.append((bench, key))
    assert not missing, f"figures the table reads but the benchmarks did not return: {missing}"
    assert abs(results["bench_kaldi_den"]["logprob_rel_diff_vs_kbind"]) < 1e-5
    assert results["bench_align"]["oracle_kaldi_same_alignment_share"] == 1.0
    table = run_all.table(results).splitlines()
    assert len([line for line in table if line.startswith("| ")]) == len(run_all.ROWS) + 1


def test_run_all_writes_results_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "results.json"
    results = _bench("run_all").main(["--quick", "--only", "bench_io", "--out", str(out)])
    assert out.exists() and results["bench_io"]["kbind_read_MBps"] > 0
    printed = capsys.readouterr().out
    assert "| read a float-matrix ark, sequential (page-cached) |" in printed
    assert "`python scripts/bench/bench_io.py`" in printed
