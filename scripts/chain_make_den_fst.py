#!/usr/bin/env python3
"""Mirror of Kaldi's ``chain-make-den-fst``.

Usage: chain_make_den_fst.py <tree> <transition-model> <phone-lm-fst> <den-fst-out> <normalization-fst-out>
e.g.:  chain_make_den_fst.py tree 0.trans_mdl phone_lm.fst den.fst normalization.fst
"""
import argparse
import sys

from kbind.chain.den_fst import make_den_fst
from kbind.hmm import ContextDependency, TransitionModel
from kbind.io.fst import Fst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tree")
    ap.add_argument("trans_model")
    ap.add_argument("phone_lm")
    ap.add_argument("den_fst_out")
    ap.add_argument("normalization_fst_out")
    a = ap.parse_args(argv)
    tree = ContextDependency.from_file(a.tree)
    tm = TransitionModel.from_file(a.trans_model)
    lm = Fst.from_file(a.phone_lm)
    den, norm = make_den_fst(tree, tm, lm)
    den.to_file(a.den_fst_out)
    norm.to_file(a.normalization_fst_out)
    print(f"chain_make_den_fst: den.fst has {den.num_states} states and {den.num_arcs} arcs",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
