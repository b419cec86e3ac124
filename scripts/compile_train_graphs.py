#!/usr/bin/env python3
"""Kaldi's compile-train-graphs: training graphs (transition-ids -> words) for
integer transcripts.

Usage (Kaldi's argument order):
  compile_train_graphs.py [options] <tree-rxfilename> <model-rxfilename>
      <lexicon-fst-rxfilename> <transcriptions-rspecifier> <graphs-wspecifier>
e.g.
  compile_train_graphs.py --read-disambig-syms=lang/phones/disambig.int \\
      exp/mono/tree exp/mono/final.mdl lang/L.fst \\
      'ark:utils/sym2int.pl --map-oov 1 -f 2- lang/words.txt data/train/text|' \\
      ark,scp:exp/mono/fsts.ark,exp/mono/fsts.scp

The transcripts may also be text with words (``--words-txt lang/words.txt``,
``--map-oov <word>``); the model may be a Kaldi final.mdl (only its
TransitionModel is read) or a bare TransitionModel.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _bool(s: str) -> bool:
    if s.lower() in ("true", "1", "yes"):
        return True
    if s.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tree")
    ap.add_argument("model")
    ap.add_argument("lexicon_fst")
    ap.add_argument("transcriptions_rspecifier")
    ap.add_argument("graphs_wspecifier")
    ap.add_argument("--read-disambig-syms", default="",
                    help="file with the disambiguation symbols on L's input side")
    ap.add_argument("--transition-scale", type=float, default=1.0)
    ap.add_argument("--self-loop-scale", type=float, default=1.0)
    ap.add_argument("--reorder", type=_bool, default=True)
    ap.add_argument("--rm-eps", type=_bool, default=False)
    ap.add_argument("--batch-size", type=int, default=250, help="(accepted, unused)")
    ap.add_argument("--words-txt", default="",
                    help="transcripts are words: map them with this words.txt")
    ap.add_argument("--map-oov", default="", help="with --words-txt: word for OOVs")
    args = ap.parse_args(argv)

    from kbind.hmm.graph_compiler import TrainingGraphCompiler
    from kbind.hmm.lang import SymbolTable
    from kbind.hmm.transition_model import TransitionModel
    from kbind.hmm.tree import ContextDependency
    from kbind.io.fst import Fst
    from kbind.io.table import read_table, write_table

    tree = ContextDependency.from_file(args.tree)
    tm = TransitionModel.from_file(args.model)
    L = Fst.from_file(args.lexicon_fst)
    disambig = []
    if args.read_disambig_syms:
        with open(args.read_disambig_syms) as fh:
            disambig = [int(x) for x in fh.read().split()]
    comp = TrainingGraphCompiler(L, tree, tm, transition_scale=args.transition_scale,
                                 self_loop_scale=args.self_loop_scale, reorder=args.reorder,
                                 rm_eps=args.rm_eps, disambig_phones=disambig)
    if args.words_txt:
        words = SymbolTable.read(args.words_txt)
        oov = words[args.map_oov] if args.map_oov else None

        def entries():
            spec = args.transcriptions_rspecifier
            path = spec.split(":", 1)[1] if ":" in spec else spec
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    f = line.split()
                    if not f:
                        continue
                    ids = []
                    for w in f[1:]:
                        i = words.get(w, oov)
                        if i is None:
                            raise SystemExit(f"word {w!r} not in {args.words_txt}")
                        ids.append(i)
                    yield f[0], ids
        source = entries()
    else:
        source = read_table(args.transcriptions_rspecifier, kind="int32_vector")
    ok = err = 0
    with write_table(args.graphs_wspecifier) as w:
        for key, ids in source:
            try:
                g = comp.compile([int(x) for x in ids])
            except ValueError as e:
                print(f"compile_train_graphs: {key}: {e}", file=sys.stderr)
                err += 1
                continue
            w.write(key, g)
            ok += 1
    print(f"compile_train_graphs: done {ok} graphs, {err} failed", file=sys.stderr)
    return 0 if ok > 0 or err == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
