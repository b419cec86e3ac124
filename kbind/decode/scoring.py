"""Scoring: word error rate as Kaldi reports it, and score.sh's sweeps.

WER = (insertions + deletions + substitutions) / reference words, from a
Levenshtein alignment of each hypothesis with its reference (kaldialign, the
same dynamic programme as Kaldi's ``compute-wer``). The summary lines are
Kaldi's::

    %WER 4.17 [ 25 / 600, 3 ins, 10 del, 12 sub ]
    %SER 12.00 [ 12 / 100 ]

:func:`score_lattices` does what ``steps/score_kaldi.sh`` does with decoded
lattices (which Kaldi stores with unscaled acoustic costs): for every
language-model weight ``lmwt`` and word-insertion penalty ``wip``, scale the
acoustic costs by ``1/lmwt`` (``lattice-scale --inv-acoustic-scale``), add
``wip`` to the graph cost of every word arc (``lattice-add-penalty``), take
the best path (``lattice-best-path``) and score it; the best (lmwt, wip) is
reported as ``best_wer`` is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import kaldialign
import numpy as np
import torch

__all__ = [
    "WerStats", "compute_wer", "read_text", "write_text", "per_utt_details",
    "add_word_insertion_penalty", "lattice_one_best", "score_lattices", "SweepResult",
    "score_decode_dir",
]


@dataclass
class WerStats:
    """Error counts over a test set (Kaldi's compute-wer output)."""

    insertions: int = 0
    deletions: int = 0
    substitutions: int = 0
    ref_words: int = 0
    sentences: int = 0
    sentence_errors: int = 0
    missing: List[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.insertions + self.deletions + self.substitutions

    @property
    def wer(self) -> float:
        """Word error rate in percent (inf if there are no reference words
        but errors; 0/0 is 0)."""
        if self.ref_words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.ref_words

    @property
    def ser(self) -> float:
        return 100.0 * self.sentence_errors / self.sentences if self.sentences else 0.0

    def kaldi_line(self) -> str:
        return (f"%WER {self.wer:.2f} [ {self.errors} / {self.ref_words}, "
                f"{self.insertions} ins, {self.deletions} del, {self.substitutions} sub ]")

    def ser_line(self) -> str:
        return f"%SER {self.ser:.2f} [ {self.sentence_errors} / {self.sentences} ]"

    def __str__(self) -> str:
        return self.kaldi_line()


def _words(x) -> List[str]:
    return x.split() if isinstance(x, str) else [str(w) for w in x]


def compute_wer(refs: Mapping[str, Sequence], hyps: Mapping[str, Sequence],
                mode: str = "strict") -> WerStats:
    """Kaldi ``compute-wer --mode=<mode>``.

    ``refs``/``hyps``: utterance -> words (a list, or a string split on
    whitespace). ``mode``: ``strict`` (a reference without hypothesis is an
    error), ``present`` (score only utterances with a hypothesis) or ``all``
    (a missing hypothesis counts as empty, i.e. all deletions).
    """
    if mode not in ("strict", "present", "all"):
        raise ValueError(f"mode must be strict, present or all, got {mode!r}")
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise KeyError(f"{len(extra)} hypotheses have no reference, e.g. '{extra[0]}'")
    stats = WerStats()
    for utt in sorted(refs):
        ref = _words(refs[utt])
        if utt not in hyps:
            if mode == "strict":
                raise KeyError(f"no hypothesis for utterance '{utt}' (mode=strict)")
            stats.missing.append(utt)
            if mode == "present":
                continue
            hyp = []
        else:
            hyp = _words(hyps[utt])
        d = kaldialign.edit_distance(ref, hyp)
        stats.insertions += d["ins"]
        stats.deletions += d["del"]
        stats.substitutions += d["sub"]
        stats.ref_words += len(ref)
        stats.sentences += 1
        stats.sentence_errors += int(d["total"] > 0)
    return stats


def per_utt_details(refs: Mapping[str, Sequence], hyps: Mapping[str, Sequence],
                    eps: str = "***") -> List[str]:
    """Per-utterance alignment lines as Kaldi's ``wer_per_utt_details.pl``:
    ``utt ref``, ``utt hyp``, ``utt op`` (C/S/I/D) and ``utt #csid`` counts."""
    lines = []
    for utt in sorted(refs):
        ref, hyp = _words(refs[utt]), _words(hyps.get(utt, []))
        ali = kaldialign.align(ref, hyp, eps)
        ops = []
        for r, h in ali:
            ops.append("I" if r == eps else "D" if h == eps else "C" if r == h else "S")
        width = [max(len(r), len(h), 1) for r, h in ali]
        fmt = lambda xs: " ".join(x.ljust(w) for x, w in zip(xs, width))  # noqa: E731
        lines.append(f"{utt} ref  {fmt([r for r, _ in ali])}".rstrip())
        lines.append(f"{utt} hyp  {fmt([h for _, h in ali])}".rstrip())
        lines.append(f"{utt} op   {fmt(ops)}".rstrip())
        lines.append(f"{utt} #csid {ops.count('C')} {ops.count('S')} {ops.count('I')} "
                     f"{ops.count('D')}")
    return lines


def read_text(path) -> Dict[str, List[str]]:
    """A Kaldi ``text`` file: ``utt word word ...`` per line."""
    out = {}
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if parts[0] in out:
            raise ValueError(f"{path}, line {i}: duplicate utterance '{parts[0]}'")
        out[parts[0]] = parts[1:]
    return out


def write_text(path, texts: Mapping[str, Sequence]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for utt in sorted(texts, key=lambda s: s.encode()):
            f.write(" ".join([utt] + _words(texts[utt])) + "\n")


# -- lattices -----------------------------------------------------------------------

def add_word_insertion_penalty(clat, wip: float):
    """Kaldi ``lattice-add-penalty``: add ``wip`` to the graph cost of every
    arc with a word (olabel != 0). Returns a copy."""
    out = clat.copy()
    if wip != 0.0:
        words = out.arc_olabel != 0
        out.arc_weight[words, 0] = out.arc_weight[words, 0] + np.float32(wip)
    return out


def lattice_one_best(clat, lmwt: float = 1.0, wip: float = 0.0,
                     acoustic_scale: Optional[float] = None) -> Optional[List[int]]:
    """Word ids of the best path of a (compact) lattice with unscaled acoustic
    costs, after ``lattice-scale --inv-acoustic-scale=lmwt`` (or an explicit
    ``acoustic_scale``) and ``lattice-add-penalty --word-ins-penalty=wip``.
    None if the lattice has no complete path."""
    scale = acoustic_scale if acoustic_scale is not None else 1.0 / lmwt
    lat = add_word_insertion_penalty(clat.scale_lattice(1.0, scale), wip)
    best = lat.best_path()
    if best is None:
        return None
    return [int(w) for w in best.words]


def lattice_best_paths(lat, settings: Sequence[Tuple[float, float]]
                       ) -> List[Optional[List[int]]]:
    """Word ids of the best path for each ``(lmwt, wip)`` of ``settings``, as
    :func:`lattice_one_best` gives them one at a time, in one C call
    (``kb_lattice_best_paths``). ``lat``: a CompactLattice or Lattice with
    unscaled acoustic costs.

    A CompactLattice is searched as it is: its paths are those of the
    expanded Lattice with the same words and costs (the transition-id strings
    only spread each arc's weight over a chain), so the best words are the
    same; only exact ties between different word sequences could be broken
    differently than on the expanded lattice."""
    from .. import _native
    ns = lat.num_states
    k = len(settings)
    if k == 0:
        return []
    arr, p = _native.as_c_array, _native.ptr
    offs = arr(lat.state_offsets, torch.int64, "state_offsets")
    dst = arr(lat.arc_dst, torch.int32, "arc_dst")
    w = arr(lat.arc_weight, torch.float32, "arc_weight").reshape(-1, 2)
    g, a = w[:, 0].contiguous(), w[:, 1].contiguous()
    olab = arr(lat.arc_olabel, torch.int32, "arc_olabel")  # words (acceptor)
    fin = arr(lat.final, torch.float32, "final").reshape(-1, 2)
    fg, fa = fin[:, 0].contiguous(), fin[:, 1].contiguous()
    scales = torch.tensor([1.0 / float(lm) for lm, _ in settings], dtype=torch.float64)
    wips = arr([float(wp) for _, wp in settings], torch.float32, "word insertion penalties")
    best = torch.empty(k, dtype=torch.int32)
    back = torch.empty(k * ns, dtype=torch.int64)
    offs_p = p(offs, ns + 1, "state_offsets")
    na = int(offs[-1])  # the arcs as the offsets count them: every arc array has na
    _native.call("kb_lattice_best_paths", ns, na, lat.start if ns else -1,
                 offs_p, p(dst, na, "arc_dst"),
                 p(g, na, "arc_weight[:, 0]"), p(a, na, "arc_weight[:, 1]"),
                 p(olab, na, "arc_olabel"), p(fg, ns, "final[:, 0]"), p(fa, ns, "final[:, 1]"), k,
                 p(scales, k, "acoustic scales"), p(wips, k, "word insertion penalties"),
                 p(best, k, "best_final"), p(back, k * ns, "back"))
    out: List[Optional[List[int]]] = []
    src = lat.arc_src
    olabel = lat.arc_olabel
    back = back.numpy()
    for j in range(k):
        s = int(best[j])
        if s < 0:
            out.append(None)
            continue
        bk = back[j * ns:(j + 1) * ns]
        words = []
        steps = 0
        while bk[s] >= 0 and steps <= lat.num_arcs:
            arc = int(bk[s])
            if olabel[arc] != 0:
                words.append(int(olabel[arc]))
            s = int(src[arc])
            steps += 1
        words.reverse()
        out.append(words)
    return out


@dataclass
class SweepResult:
    """``score_kaldi.sh`` output: WER per (lmwt, wip) and the best one."""

    table: Dict[Tuple[float, float], WerStats]
    best: Tuple[float, float]
    hyps: Dict[Tuple[float, float], Dict[str, List[str]]]

    @property
    def best_stats(self) -> WerStats:
        return self.table[self.best]

    def best_wer_line(self) -> str:
        lmwt, wip = self.best
        return f"{self.best_stats.kaldi_line()} wer_{lmwt:g}_{wip:g}"


def score_lattices(lattices: Mapping[str, object], refs: Mapping[str, Sequence],
                   words: Mapping[int, str],
                   lmwts: Iterable[float] = range(7, 18),
                   wips: Iterable[float] = (0.0, 0.5, 1.0),
                   ignore: Iterable[str] = ("<eps>", "<unk>", "<UNK>", "!SIL", "<sil>"),
                   mode: str = "all") -> SweepResult:
    """Score decoded lattices for every (lmwt, wip), as Kaldi's score.sh.

    ``lattices``: utt -> CompactLattice (or Lattice) with unscaled acoustic
    costs; ``words``: word id -> word (words.txt); ``ignore``: words dropped
    from hypotheses before scoring (as the recipes' hypothesis filter).
    A lattice without a complete path gives an empty hypothesis.
    """
    drop = set(ignore)
    settings = [(float(lmwt), float(wip)) for lmwt in lmwts for wip in wips]
    hyps_all: Dict[Tuple[float, float], Dict[str, List[str]]] = {k: {} for k in settings}
    for utt, lat in lattices.items():
        # every setting at once, on the lattice expanded once (C)
        for key, ids in zip(settings, lattice_best_paths(lat, settings)):
            hyps_all[key][utt] = [w for w in (words[i] for i in ids or []) if w not in drop]
    table = {key: compute_wer(refs, hyps_all[key], mode=mode) for key in settings}
    if not table:
        raise ValueError("no (lmwt, wip) pairs to score")
    best = min(table, key=lambda k: (table[k].errors, k[1], k[0]))
    return SweepResult(table, best, hyps_all)


def score_decode_dir(out_dir, lattices: Mapping[str, object], refs: Mapping[str, Sequence],
                     words: Mapping[int, str], lmwts: Iterable[float] = range(7, 18),
                     wips: Iterable[float] = (0.0, 0.5, 1.0)) -> SweepResult:
    """Write a Kaldi-style decode dir and score it: ``lat.1.gz`` (compact
    lattices), ``scoring/wer_<lmwt>_<wip>`` and ``best_wer``, as
    ``steps/decode.sh`` + ``score.sh`` leave them."""
    from ..io import write_table

    out = Path(out_dir)
    (out / "scoring").mkdir(parents=True, exist_ok=True)
    with write_table(f"ark:| gzip -c > {out}/lat.1.gz", kind="compact_lattice") as w:
        for utt, lat in lattices.items():
            w.write(utt, lat)
    res = score_lattices(lattices, refs, words, lmwts=lmwts, wips=wips)
    for (lmwt, wip), stats in sorted(res.table.items()):
        (out / "scoring" / f"wer_{lmwt:g}_{wip:g}").write_text(
            stats.kaldi_line() + "\n" + stats.ser_line() + "\n")
    (out / "best_wer").write_text(res.best_wer_line() + "\n")
    return res
