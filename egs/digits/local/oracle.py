"""An "oracle" acoustic model for checking the decoding pipeline.

For each utterance, take one path of its training graph (the cheapest one:
the canonical pronunciation with the graph's preferred silence choices),
stretch it over the utterance's frames with equal-length phone segments
(and equal shares of each phone's frames for its HMM states), and make
log-likelihoods that favour that path's pdf at every frame by ``margin``
nats over every other pdf, plus Gaussian noise. Decoding these with the
full HCLG should give the transcript back (WER near 0) whatever the
language model prefers, which checks the lexicon, graphs, decoder,
lattices and scoring end to end without any training.
"""

from __future__ import annotations

from typing import List, Optional

import kaldifst
import numpy as np


def cheapest_path_tids(train_graph) -> List[int]:
    """Transition-ids (self-loops excluded) of the shortest path of a
    training graph (:class:`kbind.io.fst.Fst`)."""
    best = kaldifst.shortest_path(train_graph.to_kaldifst())
    ok, tids, _words, _w = kaldifst.get_linear_symbol_sequence(best)
    if not ok:
        raise ValueError("training graph shortest path is not linear")
    return [t for t in tids if t != 0]


def oracle_pdfs(tids: List[int], trans_model, num_frames: int) -> Optional[np.ndarray]:
    """Per-frame pdf-ids: the phones of ``tids`` get equal shares of the
    frames, and each phone's HMM states equal shares of its frames. None if
    there are fewer frames than HMM states on the path."""
    if len(tids) > num_frames or not tids:
        return None
    phones = trans_model.tid2phone
    pdfs = trans_model.tid2pdf
    # Group consecutive tids by phone instance: a new instance starts when
    # the HMM state does not advance (Kaldi's forward transitions).
    segments: List[List[int]] = []
    last_phone, last_state = None, None
    for t in tids:
        p, st = int(phones[t]), int(trans_model.tid2hmm_state[t])
        if segments and p == last_phone and st > last_state:
            segments[-1].append(t)
        else:
            segments.append([t])
        last_phone, last_state = p, st
    out = []
    bounds = np.linspace(0, num_frames, len(segments) + 1).round().astype(int)
    for seg, lo, hi in zip(segments, bounds[:-1], bounds[1:]):
        n = hi - lo
        if n < len(seg):
            return None
        inner = np.linspace(0, n, len(seg) + 1).round().astype(int)
        for t, a, b in zip(seg, inner[:-1], inner[1:]):
            out.extend([int(pdfs[t])] * int(b - a))
    return np.asarray(out, dtype=np.int64)


def oracle_loglikes(pdf_seq: np.ndarray, num_pdfs: int, margin: float = 5.0,
                    noise: float = 1.0, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    rng = rng or np.random.default_rng(0)
    T = len(pdf_seq)
    ll = -margin + noise * rng.standard_normal((T, num_pdfs))
    ll[np.arange(T), pdf_seq] = noise * rng.standard_normal(T)
    return ll.astype(np.float32)
