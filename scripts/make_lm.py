#!/usr/bin/env python3
"""Estimate an n-gram LM (interpolated Witten-Bell, ARPA) and/or make G.fst
(Kaldi's arpa2fst --disambig-symbol=#0 --read-symbol-table=words.txt).

Usage:
  make_lm.py [--order 3] [--vocab-from lang/words.txt] <text> <lm.arpa>
  make_lm.py --arpa lm.arpa --words lang/words.txt --g-out lang_test/G.fst
  make_lm.py --digit-loop --words lang/words.txt --g-out G.fst

<text> has one sentence per line; with --kaldi-text the first field (the
utterance id) is dropped, as in data/train/text.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("text", nargs="?")
    ap.add_argument("arpa_out", nargs="?")
    ap.add_argument("--order", type=int, default=3)
    ap.add_argument("--kaldi-text", action="store_true")
    ap.add_argument("--vocab-from", default="", help="words.txt: include all its words")
    ap.add_argument("--unk", default="", help="map words outside --vocab-from to this")
    ap.add_argument("--arpa", default="", help="existing ARPA file to convert")
    ap.add_argument("--words", default="", help="words.txt for G.fst")
    ap.add_argument("--g-out", default="", help="write G.fst here")
    ap.add_argument("--digit-loop", action="store_true", help="G = digit loop grammar")
    args = ap.parse_args(argv)

    from kbind.decode.graph import arpa_to_g, digit_loop_g, estimate_arpa
    from kbind.hmm.lang import SymbolTable

    arpa = args.arpa
    if args.text:
        if not args.arpa_out:
            ap.error("need <text> and <lm.arpa>")
        vocab = None
        if args.vocab_from:
            vocab = [w for w, i in SymbolTable.read(args.vocab_from).items()
                     if i != 0 and not w.startswith("#") and w not in ("<s>", "</s>")]
        with open(args.text, encoding="utf-8") as fh:
            lines = [ln.split()[1:] if args.kaldi_text else ln.split() for ln in fh]
        estimate_arpa(lines, args.order, args.arpa_out, vocab=vocab, unk=args.unk or None)
        arpa = args.arpa_out
    if args.g_out:
        if not args.words:
            ap.error("--g-out needs --words")
        G = digit_loop_g(args.words) if args.digit_loop else arpa_to_g(arpa, args.words)
        G.to_file(args.g_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
