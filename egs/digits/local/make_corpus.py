#!/usr/bin/env python3
"""Make the synthetic multi-voice digits/phrases corpus as Kaldi data dirs.

    python egs/digits/local/make_corpus.py --out egs/digits/data --size default --seed 0 --jobs 2

Writes ``<out>/{train,dev,test}`` (wav.scp text utt2spk spk2utt utt2dur
spk2gender), ``<out>/wav/<hash>/...``, ``<out>/local/lm_train_text``,
``<out>/local/vocab.txt`` and ``<out>/corpus_info.json``.  Rerunning with the
same arguments is a no-op; a killed run resumes.  See corpus.py for details.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if str(HERE.parents[2]) not in sys.path:        # repo root, for kbind when not installed
    sys.path.append(str(HERE.parents[2]))

import corpus  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (e.g. egs/digits/data)")
    ap.add_argument("--size", default="default", choices=sorted(corpus.SIZES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="parallel synthesis processes")
    ap.add_argument("--engines", default=",".join(corpus.ENGINES),
                    help="comma-separated subset of: " + ",".join(corpus.ENGINES))
    ap.add_argument("--force", action="store_true", help="rebuild data dirs even on a cache hit")
    ap.add_argument("--list-voices", action="store_true", help="print the working voices and exit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    engines = [e for e in args.engines.split(",") if e]
    try:
        if args.list_voices:
            voices = corpus.find_voices(engines)
            train, test = corpus.split_voices(voices)
            for v in voices:
                print(v.engine, v.name, v.gender, "test" if v in test else "train")
            return 0
        info = corpus.build_corpus(args.out, size=args.size, seed=args.seed, jobs=args.jobs,
                                   engines=engines, force=args.force)
    except KeyboardInterrupt:
        print("make_corpus.py: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError) as exc:
        print(f"make_corpus.py: error: {exc}", file=sys.stderr)
        return 1
    print(corpus.summary_line(info), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
