"""Read throughput of a float-matrix archive: kbind vs kaldiio.

Writes an archive of ``--size-mb`` MB of float32 feature matrices (default
1024: 2048 utterances of 1000x128), then reads it sequentially with
``kbind.io.read_table`` and with ``kaldiio.load_ark``, best of ``--repeat``
runs each (the file is in the page cache after writing, so this measures
parsing, not the disk). Also times random access through the scp.

    python scripts/bench/bench_io.py [--size-mb 1024] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write the archive (default: tmp)")
    ap.add_argument("--json", default=None, help="also write results here")
    ap.add_argument("--quick", action="store_true", help="16 MB, one run")
    args = ap.parse_args(argv)
    if args.quick:
        args.size_mb, args.repeat = 16, 1

    from kbind.io import RandomAccessTable, read_table, write_table

    rows, cols = 1000, 128
    per = rows * cols * 4
    n = max(1, args.size_mb * (1 << 20) // per)
    rng = np.random.default_rng(0)
    mats = [rng.normal(size=(rows, cols)).astype(np.float32) for _ in range(8)]
    tmp = tempfile.TemporaryDirectory(dir=args.dir)
    ark = os.path.join(tmp.name, "feats.ark")
    scp = os.path.join(tmp.name, "feats.scp")
    t0 = time.perf_counter()
    with write_table(f"ark,scp:{ark},{scp}") as w:
        for i in range(n):
            w.write(f"utt{i:06d}", mats[i % len(mats)])
    t_write = time.perf_counter() - t0
    size_mb = os.path.getsize(ark) / (1 << 20)

    def bench(fn):
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            count = fn()
            best = min(best, time.perf_counter() - t0)
            assert count == n, (count, n)
        return best

    def kbind_read():
        c = 0
        for _, m in read_table(f"ark:{ark}", kind="matrix"):
            c += 1
        return c

    results = {"archive_mb": round(size_mb, 1), "entries": n,
               "kbind_write_MBps": round(size_mb / t_write, 1)}
    results["kbind_read_MBps"] = round(size_mb / bench(kbind_read), 1)
    try:
        import kaldiio

        def kaldiio_read():
            c = 0
            for _, m in kaldiio.load_ark(ark):
                c += 1
            return c

        results["kaldiio_read_MBps"] = round(size_mb / bench(kaldiio_read), 1)
    except ImportError:
        results["kaldiio_read_MBps"] = None

    keys = [f"utt{i:06d}" for i in rng.permutation(n)[:500]]
    table = RandomAccessTable(f"scp:{scp}", kind="matrix")
    t0 = time.perf_counter()
    for k in keys:
        table[k]
    dt = time.perf_counter() - t0
    results["kbind_scp_random_access_MBps"] = round(len(keys) * per / (1 << 20) / dt, 1)
    results["scp_random_reads"] = len(keys)
    table.close()
    tmp.cleanup()
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
