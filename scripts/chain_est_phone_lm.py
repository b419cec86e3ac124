#!/usr/bin/env python3
"""Mirror of Kaldi's ``chain-est-phone-lm``.

Usage: chain_est_phone_lm.py [options] <phone-seqs-rspecifier> <phone-lm-fst-out>
e.g.:  chain_est_phone_lm.py --num-extra-lm-states=2000 'ark:phones.txt' phone_lm.fst

The phone sequences are an int-vector table (``ark:``/``scp:``, text or
binary) or a plain text file with ``utt p1 p2 ...`` lines.
"""
import argparse
import sys

from kbind.chain.phone_lm import estimate_phone_lm, read_phone_sequences


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ngram-order", type=int, default=4)
    ap.add_argument("--no-prune-ngram-order", type=int, default=3)
    ap.add_argument("--num-extra-lm-states", type=int, default=1000)
    ap.add_argument("phone_seqs_rspecifier")
    ap.add_argument("lm_fst_out")
    a = ap.parse_args(argv)
    seqs = read_phone_sequences(a.phone_seqs_rspecifier)
    fst = estimate_phone_lm(seqs, a.ngram_order, a.no_prune_ngram_order,
                            a.num_extra_lm_states)
    fst.to_file(a.lm_fst_out)
    print(f"chain_est_phone_lm: {len(seqs)} sequences, LM has {fst.num_states} states "
          f"and {fst.num_arcs} arcs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
