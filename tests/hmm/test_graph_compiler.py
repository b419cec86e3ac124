"""Training graphs (compile-train-graphs) and the FST helpers they use."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kbind.hmm import ContextDependency, TransitionModel, ali_to_phones
from kbind.hmm.graph_compiler import (TrainingGraphCompiler, add_self_loops, linear_acceptor,
                                      push_special, remove_eps_local)
from kbind.hmm.lang import Lang, prepare_lang
from kbind.hmm.lexicon import Lexicon
from kbind.io.fst import Fst
from kbind.io.table import read_table

REPO = Path(__file__).resolve().parents[2]


# -- helpers shared with tests/decode/test_graph.py -------------------------------------

def toy_lang(tmp_path, topology="hmm", position_dependent=False, words=None):
    lex = Lexicon(words or [("x", ("AA",)), ("y", ("B", "IY"))])
    return prepare_lang(lex, tmp_path / f"lang_{topology}_{int(position_dependent)}",
                        position_dependent_phones=position_dependent, topology=topology)


def randomize_probs(tm: TransitionModel, seed=0) -> None:
    """Random (valid) transition probabilities."""
    rng = np.random.default_rng(seed)
    lp = np.zeros(tm.num_transition_ids + 1, np.float32)
    for s in range(1, tm.num_transition_states + 1):
        n = tm.num_transition_indices(s)
        p = rng.dirichlet(np.ones(n) * 2.0)
        for k in range(n):
            lp[tm.pair_to_transition_id(s, k)] = np.log(np.float32(p[k]))
    tm.set_log_probs(lp)


def models(lang, biphone=False, seed=0):
    phones = lang.real_phones
    ncls = lang.topo.phone_to_num_pdf_classes()
    tree = (ContextDependency.left_biphone if biphone else ContextDependency.monophone)(
        phones, ncls)
    tm = TransitionModel.build(lang.topo, tree)
    randomize_probs(tm, seed)
    return tree, tm


def phone_word_paths(fst: Fst, tm: TransitionModel, max_words=3, max_phones=8,
                     skip_self_loops=True):
    """Set of (phones, words) of complete paths (phones: the phone of each
    transition-id that ends a phone), enumerated breadth-first with bounds."""
    out = set()
    seen = set()
    stack = [(fst.start, (), ())]
    ntid = tm.num_transition_ids
    while stack:
        s, ph, ws = stack.pop()
        if (s, ph, ws) in seen:
            continue
        seen.add((s, ph, ws))
        if np.isfinite(fst.final[s]):
            out.add((ph, ws))
        for d, i, o, _ in fst.arcs(s):
            if skip_self_loops and d == s:
                continue
            nph, nws = ph, ws
            if 1 <= i <= ntid and tm.tid_is_final[i]:
                nph = ph + (int(tm.tid2phone[i]),)
            if o != 0:
                nws = ws + (o,)
            if len(nph) <= max_phones and len(nws) <= max_words:
                stack.append((d, nph, nws))
    return out


def random_path(fst: Fst, rng: random.Random, max_len=200):
    """Random successful path: (ilabels, olabels); restarts on dead ends."""
    for _ in range(100):
        s, il, ol = fst.start, [], []
        for _ in range(max_len):
            arcs = fst.arcs(s)
            can_end = np.isfinite(fst.final[s])
            if can_end and (not arcs or rng.random() < 0.2):
                return il, ol
            if not arcs:
                break
            d, i, o, _ = rng.choice(arcs)
            if i:
                il.append(i)
            if o:
                ol.append(o)
            s = d
    raise AssertionError("no random path found")


def best_cost(fst: Fst, ilabels, olabels):
    """Min (tropical) cost of the paths with these input/output sequences
    (epsilons skipped); Bellman-Ford, weights may be negative."""
    best = {(fst.start, 0, 0): 0.0}
    queue = [(fst.start, 0, 0)]
    it = 0
    while queue:
        it += 1
        assert it < 10 ** 6
        s, i, j = queue.pop()
        c = best[(s, i, j)]
        for d, il, ol, w in fst.arcs(s):
            ni, nj = i, j
            if il:
                if i >= len(ilabels) or ilabels[i] != il:
                    continue
                ni += 1
            if ol:
                if j >= len(olabels) or olabels[j] != ol:
                    continue
                nj += 1
            k = (d, ni, nj)
            if c + w < best.get(k, np.inf) - 1e-9:
                best[k] = c + w
                queue.append(k)
    costs = [c + float(fst.final[s]) for (s, i, j), c in best.items()
             if i == len(ilabels) and j == len(olabels) and np.isfinite(fst.final[s])]
    return min(costs) if costs else np.inf


def allowed_phone_seqs(lang, word_ids, lexicon_prons, sil):
    """[SIL?] w1 [SIL?] w2 ... [SIL?] for every choice of pronunciations."""
    out = set()
    prons = [lexicon_prons[w] for w in word_ids]
    for choice in itertools.product(*prons):
        for sils in itertools.product([False, True], repeat=len(word_ids) + 1):
            seq = []
            for k in range(len(word_ids)):
                if sils[k]:
                    seq.append(sil)
                seq.extend(choice[k])
            if sils[-1]:
                seq.append(sil)
            out.add(tuple(seq))
    return out


def int_prons(lang: Lang):
    prons = {}
    for line in (lang.dir / "phones" / "align_lexicon.int").read_text().splitlines():
        f = [int(x) for x in line.split()]
        if f[0] != 0:
            prons.setdefault(f[0], []).append(tuple(f[2:]))
    return prons


# -- tests ----------------------------------------------------------------------------

@pytest.mark.parametrize("topology,biphone,pos", [("hmm", False, False), ("hmm", True, True),
                                                  ("chain", False, False),
                                                  ("chain", True, True)])
def test_training_graph_phone_sequences(tmp_path, topology, biphone, pos):
    lang = toy_lang(tmp_path, topology, pos)
    tree, tm = models(lang, biphone)
    comp = TrainingGraphCompiler(lang, tree, tm)
    words = lang.word_ids(["x", "y", "x"])
    g = comp.compile(words)
    # all tids valid, self-loops present
    il = g.arc_ilabel[g.arc_ilabel != 0]
    assert il.min() >= 1 and il.max() <= tm.num_transition_ids
    assert np.any(tm.tid_is_self_loop[il])
    got = phone_word_paths(g, tm, max_words=3, max_phones=20)
    expected = allowed_phone_seqs(lang, words, int_prons(lang), lang.optional_silence)
    assert {ph for ph, ws in got} == expected
    assert {ws for ph, ws in got} == {tuple(words)}
    rng = random.Random(1)
    for _ in range(30):
        ali, ol = random_path(g, rng)
        assert ol == words
        assert tuple(ali_to_phones(tm, ali).tolist()) in expected


def test_compile_many_and_scales(tmp_path):
    lang = toy_lang(tmp_path)
    tree, tm = models(lang)
    c1 = TrainingGraphCompiler(lang, tree, tm)
    c2 = TrainingGraphCompiler(lang.L, tree, tm, transition_scale=0.5, self_loop_scale=0.1)
    gs = c1.compile_many([lang.word_ids(["x"]), lang.word_ids(["y", "y"])])
    assert len(gs) == 2 and all(g.num_states > 0 for g in gs)
    # closed form: "x" without silence, each HMM state visited once, plus one self-loop
    x = lang.word_ids(["x"])
    phone = lang.phones["AA"]
    tids = []
    for h in range(3):
        ts = tm.tuple_to_transition_state(phone, h, tree.compute([phone], h))
        tids.append(tm.pair_to_transition_id(ts, 1))  # forward (index 0 = self-loop)
    loop = tm.self_loop_of(tm.tid2state[tids[0]])
    ali = [tids[0], loop] + tids[1:]
    lp = np.asarray(tm.log_probs, np.float64)
    nsl = np.asarray(tm.non_self_loop_log_probs, np.float64)
    for comp, ts_, sls in ((c1, 1.0, 1.0), (c2, 0.5, 0.1)):
        g = comp.compile(x)
        expect = 2 * np.log(2.0)  # L: no silence at start and after the word
        for t in tids:
            n = nsl[tm.tid2state[t]]
            expect += -(lp[t] - n) * ts_ - n * sls
        expect += -lp[loop] * sls
        assert best_cost(g, ali, x) == pytest.approx(expect, abs=2e-3)


def test_add_self_loops_counts(tmp_path):
    lang = toy_lang(tmp_path)
    tree, tm = models(lang)
    phone = lang.phones["AA"]
    tids = [tm.pair_to_transition_id(tm.tuple_to_transition_state(phone, h,
                                                                  tree.compute([phone], h)), 1)
            for h in range(3)]
    fst = linear_acceptor(tids)
    out = add_self_loops(fst, tm, 1.0)
    loops = out.arc_src == out.arc_dst
    assert loops.sum() == 3
    with pytest.raises(ValueError):
        add_self_loops(out, tm, 1.0)


def test_remove_eps_local_and_push_special_keep_paths():
    # 0 -a-> 1 -eps-> 2 -b-> 3(final), plus 1 -c-> 3
    f = Fst(4, 0, [np.inf, np.inf, np.inf, 0.5], [0, 1, 1, 2], [1, 2, 3, 3], [1, 0, 3, 2],
            [1, 0, 3, 2], [0.1, 0.2, 0.3, 0.4])
    r = remove_eps_local(f)
    assert not np.any((r.arc_ilabel == 0) & (r.arc_olabel == 0))
    for seq in ([1, 2], [1, 3]):
        assert best_cost(r, seq, seq) == pytest.approx(best_cost(f, seq, seq), abs=1e-5)
    p = push_special(f)
    for seq in ([1, 2], [1, 3]):
        assert best_cost(p, seq, seq) == pytest.approx(best_cost(f, seq, seq), abs=1e-4)


def test_compile_train_graphs_cli(tmp_path):
    lang = toy_lang(tmp_path)
    tree, tm = models(lang)
    tree.to_file(tmp_path / "tree")
    tm.to_file(tmp_path / "final.mdl")
    (tmp_path / "text.int").write_text(f"u1 {lang.words['x']} {lang.words['y']}\n"
                                       f"u2 {lang.words['y']}\n")
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "compile_train_graphs.py"),
                        str(tmp_path / "tree"), str(tmp_path / "final.mdl"),
                        str(lang.dir / "L.fst"), f"ark:{tmp_path / 'text.int'}",
                        f"ark,scp:{tmp_path / 'fsts.ark'},{tmp_path / 'fsts.scp'}"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    got = dict(read_table(f"scp:{tmp_path / 'fsts.scp'}"))
    assert sorted(got) == ["u1", "u2"]
    ref = TrainingGraphCompiler(lang, tree, tm).compile([lang.words["y"]])
    assert got["u2"].num_states == ref.num_states and got["u2"].num_arcs == ref.num_arcs
