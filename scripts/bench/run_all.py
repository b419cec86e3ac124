"""Run every kbind benchmark and print a markdown table (``make bench``).

Results also go to ``bench-out/results.json``. Each benchmark is a script in
this folder with a ``main(argv)`` that returns a dict of figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["bench_io", "bench_features", "bench_decode", "bench_decode_digits", "bench_chain",
           "bench_chain_num", "bench_chain_loss", "bench_ngsgd", "bench_align", "bench_ce"]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    out = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                       "python": sys.version.split()[0]}}
    for name in BENCHES:
        if not (HERE / f"{name}.py").exists():
            continue
        print(f"== {name}", flush=True)
        out[name] = _load(name).main([])
    os.makedirs("bench-out", exist_ok=True)
    with open("bench-out/results.json", "w") as f:
        json.dump(out, f, indent=2)
    print("\n| benchmark | figure | value |\n|---|---|---|")
    for name in BENCHES:
        for k, v in (out.get(name) or {}).items():
            print(f"| {name} | {k} | {v} |")


if __name__ == "__main__":
    main()
