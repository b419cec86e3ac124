"""G (ARPA -> FST, digit loop) and HCLG (mkgraph.sh)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kbind.decode.graph import (arpa_to_g, compose_hclg, digit_loop_g, estimate_arpa,
                                make_hclg)
from kbind.hmm.lang import Lang
from kbind.io.fst import Fst
from tests.hmm.test_graph_compiler import (best_cost, int_prons, models, phone_word_paths,
                                           toy_lang)

LN10 = math.log(10.0)

ARPA = """
\\data\\
ngram 1=4
ngram 2=2

\\1-grams:
-1.0\t</s>
-99\t<s>\t-0.5
-0.5\ta\t-0.3
-0.7\tb\t-0.2

\\2-grams:
-0.2\t<s> a
-0.1\ta b

\\end\\
"""


def test_arpa_to_g_costs(tmp_path):
    (tmp_path / "lm.arpa").write_text(ARPA)
    (tmp_path / "words.txt").write_text("<eps> 0\na 1\nb 2\n#0 3\n<s> 4\n</s> 5\n")
    G = arpa_to_g(tmp_path / "lm.arpa", tmp_path / "words.txt")
    # backoff arcs: #0 on the input, epsilon on the output
    back = G.arc_ilabel == 3
    assert back.sum() == 3 and np.all(G.arc_olabel[back] == 0)
    assert not np.any(np.isin(G.arc_ilabel, [4, 5]))
    def cost(words):
        # #0 acts as epsilon when scoring a word sequence
        g = Fst(G.num_states, G.start, G.final, G.arc_src, G.arc_dst,
                np.where(G.arc_ilabel == 3, 0, G.arc_ilabel), G.arc_olabel, G.arc_weight)
        return best_cost(g, words, words)
    # a b: P(a|<s>) P(b|a) bow(b) P(</s>)
    assert cost([1, 2]) == pytest.approx((0.2 + 0.1 + 0.2 + 1.0) * LN10, abs=1e-4)
    # b a: bow(<s>) P(b) bow(b) P(a) bow(a) P(</s>)
    assert cost([2, 1]) == pytest.approx((0.5 + 0.7 + 0.2 + 0.5 + 0.3 + 1.0) * LN10, abs=1e-4)
    assert cost([]) == pytest.approx((0.5 + 1.0) * LN10, abs=1e-4)


def test_estimate_arpa_normalised(tmp_path):
    text = ["a b a", "b b", "a c", "c a b"]
    arpa = estimate_arpa(text, order=3, out_arpa=tmp_path / "lm.arpa", vocab=["a", "b", "c", "d"])
    assert "\\3-grams:" in arpa and (tmp_path / "lm.arpa").exists()
    (tmp_path / "words.txt").write_text(
        "<eps> 0\na 1\nb 2\nc 3\nd 4\n#0 5\n<s> 6\n</s> 7\n")
    G = arpa_to_g(tmp_path / "lm.arpa", tmp_path / "words.txt")
    # every history's distribution sums to one (Σ_w P(w|h) over vocab + </s>)
    tab = {}
    for ln in arpa.splitlines():
        f = ln.split("\t")
        if len(f) >= 2 and f[0] and f[0][0] in "-0123456789":
            tab[tuple(f[1].split())] = (float(f[0]), float(f[2]) if len(f) > 2 else 0.0)
    def lp(w, h):
        if h + (w,) in tab:
            return tab[h + (w,)][0]
        return (tab[h][1] if h in tab else 0.0) + lp(w, h[1:])
    for h in [(), ("<s>",), ("a",), ("<s>", "a"), ("a", "b"), ("b", "b")]:
        s = sum(10 ** lp(w, h) for w in ["a", "b", "c", "d", "</s>"])
        assert s == pytest.approx(1.0, abs=1e-5)
    assert G.num_states > 0


def test_digit_loop_g(tmp_path):
    (tmp_path / "words.txt").write_text("<eps> 0\none 1\ntwo 2\nfoo 3\n#0 4\n<s> 5\n</s> 6\n")
    G = digit_loop_g(tmp_path / "words.txt")
    assert set(G.arc_ilabel.tolist()) == {1, 2}
    assert best_cost(G, [], []) == np.inf
    assert best_cost(G, [1], [1]) == pytest.approx(math.log(2) + math.log(3), abs=1e-5)
    assert best_cost(G, [1, 2, 2], [1, 2, 2]) == pytest.approx(
        math.log(2) + 2 * math.log(3) + math.log(3), abs=1e-5)


def _walk_checks(H, lang, tm):
    prons = int_prons(lang)
    sil = lang.optional_silence
    paths = phone_word_paths(H, tm, max_words=2, max_phones=6)
    seen_words = set()
    for ph, ws in paths:
        ph = [p for p in ph if p != sil]
        ok = any(ph == [p for pr in choice for p in pr]
                 for choice in __import__("itertools").product(*[prons[w] for w in ws]))
        assert ok, (ph, ws)
        seen_words.add(ws)
    x, y = lang.words["x"], lang.words["y"]
    assert {(x,), (y,), (x, y), (y, x), (x, x)} <= seen_words


def _structure_checks(H, tm, deterministic=True):
    il = H.arc_ilabel
    assert il.max() <= tm.num_transition_ids  # disambig tids removed
    # no epsilon-input cycles
    eps = il == 0
    ns = H.num_states
    adj = [[] for _ in range(ns)]
    for s, d in zip(H.arc_src[eps].tolist(), H.arc_dst[eps].tolist()):
        adj[s].append(d)
    color = [0] * ns
    def dfs(u):
        color[u] = 1
        for v in adj[u]:
            assert color[v] != 1, "epsilon cycle"
            if color[v] == 0:
                dfs(v)
        color[u] = 2
    for s in range(ns):
        if color[s] == 0:
            dfs(s)
    if not deterministic:
        return
    # deterministic on the non-epsilon input labels once self-loops are removed
    # (with a backoff G, removing the #0 disambiguation ids leaves epsilons and
    # RemoveEpsLocal may then merge arcs, so Kaldi's HCLG is not always so)
    m = (H.arc_src != H.arc_dst) & ~eps
    keys = H.arc_src[m].astype(np.int64) * (tm.num_transition_ids + 1) + il[m]
    assert len(np.unique(keys)) == len(keys)


@pytest.mark.parametrize("sls,ts", [(0.1, 1.0), (1.0, 1.0), (0.3, 0.5)])
def test_hclg_paths_and_costs(tmp_path, sls, ts):
    lang = toy_lang(tmp_path)
    tree, tm = models(lang)
    G = digit_loop_g(lang, digits=["x", "y"])
    H, dis, ilabels = compose_hclg(lang, G, tree, tm, self_loop_scale=sls,
                                   transition_scale=ts)
    assert H.fst_type == "const"
    _walk_checks(H, lang, tm)
    _structure_checks(H, tm)
    # closed form for "y x" (no silence), one self-loop in the first state of B
    lp = np.asarray(tm.log_probs, np.float64)
    nsl = np.asarray(tm.non_self_loop_log_probs, np.float64)
    expect = math.log(2) + 2 * math.log(3)  # G: first word 1/2, second 1/3, end 1/3
    expect += 3 * math.log(2)  # L: no silence at the start and after each word
    ali = []
    for name in ("B", "IY", "AA"):
        phone = lang.phones[name]
        for h in range(3):
            t = tm.pair_to_transition_id(
                tm.tuple_to_transition_state(phone, h, tree.compute([phone], h)), 1)
            ali.append(t)
            n = nsl[tm.tid2state[t]]
            expect += -(lp[t] - n) * ts - n * sls
            if name == "B" and h == 0:
                loop = tm.self_loop_of(tm.tid2state[t])
                ali.append(loop)
                expect += -lp[loop] * sls
    words = [lang.words["y"], lang.words["x"]]
    assert best_cost(H, ali, words) == pytest.approx(expect, abs=2e-3)


@pytest.mark.parametrize("topology", ["hmm", "chain"])
def test_hclg_biphone_and_graph_dir(tmp_path, topology):
    lang = toy_lang(tmp_path, topology, position_dependent=True)
    tree, tm = models(lang, biphone=True)
    (tmp_path / "lm.arpa").write_text(estimate_arpa(["x y", "y x x", "y"], order=2))
    G = arpa_to_g(tmp_path / "lm.arpa", lang.dir / "words.txt")
    H = make_hclg(str(lang.dir), G, tree, tm, self_loop_scale=1.0 if topology == "chain"
                  else 0.1, graph_dir=tmp_path / "graph")
    _walk_checks(H, lang, tm)
    _structure_checks(H, tm, deterministic=False)
    g = tmp_path / "graph"
    for f in ("HCLG.fst", "words.txt", "phones.txt", "phones/disambig.int",
              "phones/word_boundary.int", "disambig_tid.int", "num_pdfs"):
        assert (g / f).exists(), f
    H2 = Fst.from_file(g / "HCLG.fst")
    assert H2.fst_type == "const" and H2.equal(H)
    assert int((g / "num_pdfs").read_text()) == tm.num_pdfs
    dis = [int(x) for x in (g / "disambig_tid.int").read_text().split()]
    assert dis and min(dis) == tm.num_transition_ids + 1
