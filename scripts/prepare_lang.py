#!/usr/bin/env python3
"""Kaldi's utils/prepare_lang.sh.

Usage:
  prepare_lang.py [options] <dict-src-dir> <oov-dict-entry> <tmp-dir> <lang-dir>
e.g.
  prepare_lang.py data/local/dict "<unk>" data/local/lang_tmp data/lang
  prepare_lang.py --cmudict-words words.list data/local/dict "<unk>" tmp data/lang

<dict-src-dir> is a Kaldi dict dir (lexicon.txt or lexiconp.txt,
silence_phones.txt, nonsilence_phones.txt, optional_silence.txt,
extra_questions.txt). With --cmudict-words, it is first created from the CMU
dictionary (stress removed, OOVs mapped to <oov-dict-entry> with phone SPN).
<tmp-dir> is accepted for compatibility (nothing is written there).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _bool(s):
    return {"true": True, "false": False}[s.lower()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dict_dir")
    ap.add_argument("oov_word")
    ap.add_argument("tmp_dir")
    ap.add_argument("lang_dir")
    ap.add_argument("--position-dependent-phones", type=_bool, default=True)
    ap.add_argument("--sil-prob", type=float, default=0.5)
    ap.add_argument("--num-sil-states", type=int, default=5)
    ap.add_argument("--num-nonsil-states", type=int, default=3)
    ap.add_argument("--topology", choices=["hmm", "chain"], default="hmm")
    ap.add_argument("--cmudict-words", default="",
                    help="file of words (one per line, or whitespace separated): build "
                         "<dict-src-dir> from the CMU dictionary first")
    ap.add_argument("--all-prons", type=_bool, default=False,
                    help="with --cmudict-words: all pronunciation variants")
    args = ap.parse_args(argv)

    from kbind.hmm.lang import prepare_lang, write_dict_dir
    from kbind.hmm.lexicon import Lexicon, OOVError

    if args.cmudict_words:
        with open(args.cmudict_words, encoding="utf-8") as fh:
            words = fh.read().split()
        lex = Lexicon.from_cmudict(words, all_prons=args.all_prons, oov_word=args.oov_word)
        if lex.oov_words:
            print(f"prepare_lang: {len(lex.oov_words)} OOV words mapped to {args.oov_word}: "
                  + " ".join(lex.oov_words[:20]), file=sys.stderr)
        write_dict_dir(lex, args.dict_dir, silence_phones=["SIL", "SPN"])
    lang = prepare_lang(args.dict_dir, args.lang_dir, args.oov_word,
                        position_dependent_phones=args.position_dependent_phones,
                        sil_prob=args.sil_prob, topology=args.topology,
                        num_nonsil_states=args.num_nonsil_states,
                        num_sil_states=args.num_sil_states)
    print(f"prepare_lang: wrote {lang}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
