#!/usr/bin/env python3
"""Kaldi's utils/mkgraph.sh: HCLG.fst from a lang dir with G.fst, a tree and
a model.

Usage:
  mkgraph.py [options] <lang-dir> <model-dir> <graph-dir>
  (uses <lang-dir>/G.fst, <model-dir>/tree and <model-dir>/final.mdl)
e.g.
  mkgraph.py data/lang_test exp/tri1 exp/tri1/graph
  mkgraph.py --self-loop-scale 1.0 data/lang_test exp/chain/tdnn exp/chain/tdnn/graph

Options as mkgraph.sh: --self-loop-scale (0.1 default; 1.0 for chain models),
--transition-scale (1.0). --G overrides <lang-dir>/G.fst.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lang_dir")
    ap.add_argument("model_dir")
    ap.add_argument("graph_dir")
    ap.add_argument("--self-loop-scale", type=float, default=0.1)
    ap.add_argument("--transition-scale", type=float, default=1.0)
    ap.add_argument("--G", default="")
    ap.add_argument("--tree", default="")
    ap.add_argument("--model", default="")
    args = ap.parse_args(argv)

    from kbind.decode.graph import compose_hclg, write_graph_dir
    from kbind.hmm.lang import Lang
    from kbind.hmm.transition_model import TransitionModel
    from kbind.hmm.tree import ContextDependency
    from kbind.io.fst import Fst

    lang = Lang.load(args.lang_dir)
    G = Fst.from_file(args.G or os.path.join(args.lang_dir, "G.fst"))
    tree = ContextDependency.from_file(args.tree or os.path.join(args.model_dir, "tree"))
    tm = TransitionModel.from_file(args.model or os.path.join(args.model_dir, "final.mdl"))
    timings = {}
    t = time.time()
    H, dis, _ = compose_hclg(lang, G, tree, tm, args.self_loop_scale, args.transition_scale,
                             timings=timings)
    write_graph_dir(args.graph_dir, lang, H, tm, dis)
    print(f"mkgraph: HCLG {H.num_states} states, {H.num_arcs} arcs in "
          f"{time.time() - t:.1f}s (" + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
          + ")", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
