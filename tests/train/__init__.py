"""Helpers for the trainer tests: synthetic Kaldi data dirs and chain dirs."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tests.conftest import SHARED  # noqa: E402

FIXTURES = SHARED / "fixtures" / "kaldi"


def make_data_dir(root, lengths: Dict[str, int], dim: int = 5, spk_of=None,
                  ramp: bool = True, seed: int = 0, texts: Optional[Dict[str, str]] = None
                  ) -> Path:
    """A Kaldi data dir with feats.scp / cmvn.scp / utt2spk / spk2utt /
    utt2num_frames. With ``ramp`` feature column 0 holds the frame index (so
    tests can see which frames an eg holds) and the other columns noise."""
    from kbind.data.cmvn import compute_cmvn_stats_per_speaker
    from kbind.io import write_table
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    spk_of = spk_of or (lambda u: u.split("-")[0])
    feats = {}
    for utt in sorted(lengths):
        n = lengths[utt]
        x = rng.standard_normal((n, dim)).astype(np.float32)
        if ramp:
            x[:, 0] = np.arange(n, dtype=np.float32)
        feats[utt] = x
    with write_table(f"ark,scp:{root}/feats.ark,{root}/feats.scp") as w:
        for utt in sorted(feats):
            w.write(utt, feats[utt])
    utt2spk = {u: spk_of(u) for u in feats}
    spk2utt: Dict[str, List[str]] = {}
    for u in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[u], []).append(u)
    cmvn = compute_cmvn_stats_per_speaker(feats, spk2utt)
    with write_table(f"ark,scp:{root}/cmvn.ark,{root}/cmvn.scp") as w:
        for spk in sorted(cmvn):
            w.write(spk, np.asarray(cmvn[spk]))
    (root / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    (root / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n"
                                          for s, us in sorted(spk2utt.items())))
    (root / "utt2num_frames").write_text("".join(f"{u} {len(x)}\n"
                                                 for u, x in sorted(feats.items())))
    if texts:
        (root / "text").write_text("".join(f"{u} {t}\n" for u, t in sorted(texts.items())))
    return root


def random_phone_ali(utts: Sequence[str], phones: Sequence[int], seed: int = 0,
                     min_phones: int = 4, max_phones: int = 9
                     ) -> Dict[str, List[Tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    out = {}
    for u in utts:
        k = int(rng.integers(min_phones, max_phones + 1))
        out[u] = [(int(rng.choice(phones)), int(rng.integers(3, 15))) for _ in range(k)]
    return out


def write_phone_ali(path, ali) -> None:
    with open(path, "w") as f:
        for u, items in sorted(ali.items()):
            f.write(u + " " + " ; ".join(f"{p} {d}" for p, d in items) + "\n")


def phone_ali_to_tids(tm, items) -> List[int]:
    """A reordered transition-id alignment for ``[(phone, frames)]`` with the
    1-state chain topology: forward transition, then self-loops."""
    out = []
    for p, d in items:
        fwd = [t for t in range(1, tm.num_transition_ids + 1)
               if tm.tid2phone[t] == p and not tm.tid_is_self_loop[t]][0]
        loop = [t for t in range(1, tm.num_transition_ids + 1)
                if tm.tid2phone[t] == p and tm.tid_is_self_loop[t]][0]
        out += [fwd] + [loop] * (d - 1)
    return out


def make_chain_dir(root, case: str = "tiny_chain_S3_T15") -> Path:
    """A graph dir (tree, 0.trans_mdl, den.fst, normalization.fst) from a
    Kaldi fixture: 5 phones, 10 pdfs."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in ("tree", "0.trans_mdl", "den.fst", "normalization.fst"):
        shutil.copy(FIXTURES / case / name, root / name)
    return root


def write_kaldi_alignments(chain_dir, ali) -> None:
    """``ali.1.gz`` (text int-vector archive, gzipped) from phone alignments."""
    from kbind.hmm import TransitionModel
    tm = TransitionModel.from_file(str(Path(chain_dir) / "0.trans_mdl"))
    with gzip.open(Path(chain_dir) / "ali.1.gz", "wt") as f:
        for u, items in sorted(ali.items()):
            f.write(u + " " + " ".join(str(t) for t in phone_ali_to_tids(tm, items)) + "\n")


def write_e2e_graphs(chain_dir, phone_seqs: Dict[str, List[int]]) -> None:
    """``fst.scp``: flat-start training graphs (transition-ids, transition and
    self-loop scale 0) of phone sequences."""
    from kbind.chain.den_fst import make_linear_acceptor
    from kbind.chain.supervision_maker import compile_training_graph
    from kbind.hmm import ContextDependency, TransitionModel
    from kbind.io import write_table
    d = Path(chain_dir)
    tree = ContextDependency.from_file(str(d / "tree"))
    tm = TransitionModel.from_file(str(d / "0.trans_mdl"))
    with write_table(f"ark,scp:{d}/fst.ark,{d}/fst.scp", kind="fst") as w:
        for u, seq in sorted(phone_seqs.items()):
            w.write(u, compile_training_graph(make_linear_acceptor(seq), tree, tm, 0.0, 0.0))


def sample_phone_ali_from_den(chain_dir, utts: Sequence[str], seed: int = 0,
                              min_frames: int = 15, max_frames: int = 45
                              ) -> Dict[str, List[Tuple[int, int]]]:
    """Phone alignments the den graph allows: random walks of ``min_frames ..
    max_frames`` output frames from its start state, durations x3 (input frames)
    (the fixtures' monophone chain topology: pdf = 2 (phone - 1) + class,
    class 0 = a phone's first frame, class 1 its self-loop frames)."""
    from kbind.io.fst import Fst
    den = Fst.from_file(str(Path(chain_dir) / "den.fst"))
    src, dst = np.asarray(den.arc_src), np.asarray(den.arc_dst)
    lab, w = np.asarray(den.arc_ilabel), np.asarray(den.arc_weight, dtype=np.float64)
    rng = np.random.default_rng(seed)
    out = {}
    for u in utts:
        while True:
            n = int(rng.integers(min_frames, max_frames + 1))
            s, pdfs = int(den.start), []
            for _ in range(n):
                idx = np.flatnonzero(src == s)
                p = np.exp(-w[idx])
                k = int(rng.choice(idx, p=p / p.sum()))
                pdfs.append(int(lab[k]) - 1)
                s = int(dst[k])
            if pdfs[0] % 2 == 0:
                break
        items: List[Tuple[int, int]] = []
        for pdf in pdfs:
            if pdf % 2 == 0:
                items.append((pdf // 2 + 1, 1))
            else:
                items[-1] = (items[-1][0], items[-1][1] + 1)
        out[u] = [(p, 3 * d) for p, d in items]
    return out
