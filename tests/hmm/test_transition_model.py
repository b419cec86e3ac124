"""TransitionModel against Kaldi-written models (trans.mdl, chain.trans.mdl)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from kbind.hmm import ContextDependency, HmmTopology, TransitionModel
from kbind.io.errors import KaldiFormatError
from kbind.io.stream import KaldiInput

from ._common import load_json, same_f32

MODELS = [("trans.mdl", "trans.mdl.expected.json", "topo", "tree"),
          ("chain.trans.mdl", "chain.trans.mdl.expected.json", "chain.topo", "chain.tree")]


def _check_model(tm: TransitionModel, exp: dict, log_probs_key=None) -> None:
    assert tm.is_hmm == exp["is_hmm"]
    assert tm.phones == exp["phones"]
    assert tm.num_phones == exp["num_phones"]
    assert tm.num_pdfs == exp["num_pdfs"]
    assert tm.num_transition_states == exp["num_transition_states"]
    assert tm.num_transition_ids == exp["num_transition_ids"]
    assert tm.log_probs.dtype == np.float32
    assert tm.log_probs.shape == (exp["num_transition_ids"] + 1,)
    text_lp = exp["log_probs_from_text_file"] if log_probs_key == "text" else None
    for ts in exp["transition_states"]:
        s = ts["transition_state"]
        assert tm.transition_state_to_phone(s) == ts["phone"]
        assert tm.transition_state_to_hmm_state(s) == ts["hmm_state"]
        assert tm.transition_state_to_forward_pdf_class(s) == ts["forward_pdf_class"]
        assert tm.transition_state_to_self_loop_pdf_class(s) == ts["self_loop_pdf_class"]
        assert tm.transition_state_to_forward_pdf(s) == ts["forward_pdf"]
        assert tm.transition_state_to_self_loop_pdf(s) == ts["self_loop_pdf"]
        ids = [tm.pair_to_transition_id(s, i) for i in range(tm.num_transition_indices(s))]
        assert ids == ts["transition_ids"]
        assert tm.self_loop_of(s) == ts["self_loop_transition_id"]
        assert tm.tuple_to_transition_state(ts["phone"], ts["hmm_state"], ts["forward_pdf"],
                                            ts["self_loop_pdf"]) == s
        if text_lp is None:
            assert same_f32(tm.get_non_self_loop_log_prob(s), ts["non_self_loop_log_prob"])
    for t in exp["transition_ids"]:
        tid = t["transition_id"]
        assert tm.transition_id_to_transition_state(tid) == t["transition_state"]
        assert tm.transition_id_to_phone(tid) == t["phone"]
        assert tm.transition_id_to_hmm_state(tid) == t["hmm_state"]
        assert tm.transition_id_to_transition_index(tid) == t["transition_index"]
        assert int(tm.tid2dest[tid]) == t["dest_hmm_state"]
        assert tm.transition_id_to_pdf(tid) == t["pdf"]
        assert tm.transition_id_to_pdf_class(tid) == t["pdf_class"]
        assert tm.is_self_loop(tid) == t["is_self_loop"]
        assert tm.is_final(tid) == t["is_final"]
        # the vectorised tables agree with the per-id functions
        assert tm.tid2pdf[tid] == t["pdf"] and tm.tid2phone[tid] == t["phone"]
        assert bool(tm.tid_is_self_loop[tid]) == t["is_self_loop"]
        assert bool(tm.tid_is_final[tid]) == t["is_final"]
        if text_lp is None:
            assert same_f32(tm.get_transition_log_prob(tid), t["log_prob"])
            assert same_f32(tm.log_probs[tid], t["log_prob"])
            assert same_f32(tm.get_transition_log_prob_ignoring_self_loops(tid),
                            t["log_prob_ignoring_self_loops"])
        else:
            assert same_f32(tm.get_transition_log_prob(tid), text_lp[tid - 1])


@pytest.mark.parametrize("name,expected,_t,_tr", MODELS)
def test_binary_model_values(kaldi_io_dir, name, expected, _t, _tr):
    tm = TransitionModel.from_file(kaldi_io_dir / name)
    _check_model(tm, load_json(kaldi_io_dir / expected))


@pytest.mark.parametrize("name,expected,_t,_tr", MODELS)
def test_text_model_values(kaldi_io_dir, name, expected, _t, _tr):
    tm = TransitionModel.from_file(kaldi_io_dir / (name + ".txt"))
    _check_model(tm, load_json(kaldi_io_dir / expected), log_probs_key="text")


@pytest.mark.parametrize("name", ["trans.mdl", "trans.mdl.txt", "chain.trans.mdl",
                                  "chain.trans.mdl.txt"])
def test_round_trip_bytes(kaldi_io_dir, name, tmp_path):
    data = (kaldi_io_dir / name).read_bytes()
    binary = not name.endswith(".txt")
    tm = TransitionModel.from_bytes(data)
    assert tm.to_bytes(binary) == data
    tm.to_file(tmp_path / "m", binary=binary)
    assert (tmp_path / "m").read_bytes() == data


def test_table_layer_interface(kaldi_io_dir):
    """read(inp, binary) after the caller consumed the marker; write() omits it."""
    data = (kaldi_io_dir / "chain.trans.mdl").read_bytes()
    inp = KaldiInput(io.BytesIO(data + b"next"), "x")
    assert inp.read_binary_marker()
    tm = TransitionModel.read(inp, True)
    assert inp.offset == len(data)
    buf = io.BytesIO()
    tm.write(buf, True)
    assert b"\0B" + buf.getvalue() == data


def test_text_conversion_matches_kaldi_text(kaldi_io_dir):
    # chain model: log(0.5) prints identically from binary and text
    tm = TransitionModel.from_file(kaldi_io_dir / "chain.trans.mdl")
    assert tm.to_bytes(False) == (kaldi_io_dir / "chain.trans.mdl.txt").read_bytes()
    tm = TransitionModel.from_file(kaldi_io_dir / "trans.mdl")
    assert tm.to_bytes(False) == (kaldi_io_dir / "trans.mdl.txt").read_bytes()


def test_build_chain_model_byte_exact(kaldi_io_dir):
    topo = HmmTopology.from_file(kaldi_io_dir / "chain.topo")
    tree = ContextDependency.from_file(kaldi_io_dir / "chain.tree")
    tm = TransitionModel.build(topo, tree)
    assert tm.to_bytes(True) == (kaldi_io_dir / "chain.trans.mdl").read_bytes()
    assert tm.to_bytes(False) == (kaldi_io_dir / "chain.trans.mdl.txt").read_bytes()
    # and from the constructors alone
    topo2 = HmmTopology.chain_2state([2, 3, 4, 5, 6], [1])
    tree2 = ContextDependency.monophone(topo2.phones, topo2.phone_to_num_pdf_classes())
    assert TransitionModel.build(topo2, tree2).to_bytes(True) == \
        (kaldi_io_dir / "chain.trans.mdl").read_bytes()


def test_build_standard_model_structure(kaldi_io_dir):
    topo = HmmTopology.from_file(kaldi_io_dir / "topo")
    tree = ContextDependency.from_file(kaldi_io_dir / "tree")
    built = TransitionModel.build(topo, tree)
    kaldi = TransitionModel.from_file(kaldi_io_dir / "trans.mdl")
    assert built.compatible(kaldi)
    assert built.tuples == kaldi.tuples
    exp = load_json(kaldi_io_dir / "trans.mdl.expected.json")
    # structure (not the MLE-updated log-probs) is as Kaldi's
    for t in exp["transition_ids"]:
        tid = t["transition_id"]
        assert built.transition_id_to_pdf(tid) == t["pdf"]
        assert built.is_self_loop(tid) == t["is_self_loop"]
        assert built.is_final(tid) == t["is_final"]
    # untrained log-probs are log of the topology probabilities (closed form)
    for tid in range(1, built.num_transition_ids + 1):
        phone = built.transition_id_to_phone(tid)
        st = topo.topology_for_phone(phone)[built.transition_id_to_hmm_state(tid)]
        p = st.transitions[built.transition_id_to_transition_index(tid)][1]
        assert same_f32(built.get_transition_log_prob(tid), np.float32(math.log(p)))
    # replacing the log-probs gives Kaldi's model byte for byte
    built.set_log_probs(kaldi.log_probs)
    assert built.to_bytes(True) == (kaldi_io_dir / "trans.mdl").read_bytes()


def test_chain_fixture_models(kaldi_chain_dir):
    for case in ("tiny_chain_S3_T15", "medium_chain_S4_T34"):
        data = (kaldi_chain_dir / case / "0.trans_mdl").read_bytes()
        tm = TransitionModel.from_bytes(data)
        assert tm.to_bytes(data.startswith(b"\0B")) == data
        tree = ContextDependency.from_file(kaldi_chain_dir / case / "tree")
        assert TransitionModel.build(tm.topo, tree) == tm
        # chain topology: pdf of (p, class c) = 2*(p-1)+c, self-loop uses class 1
        for tid in range(1, tm.num_transition_ids + 1):
            p = tm.transition_id_to_phone(tid)
            assert tm.transition_id_to_pdf(tid) == 2 * (p - 1) + (1 if tm.is_self_loop(tid) else 0)


@pytest.mark.parametrize("mdl,shown", [("trans.mdl", "show_transitions.txt"),
                                       ("chain.trans.mdl", "chain.show_transitions.txt")])
def test_show_transitions(kaldi_io_dir, mdl, shown):
    tm = TransitionModel.from_file(kaldi_io_dir / mdl)
    expected = (kaldi_io_dir / shown).read_text()
    assert tm.show_transitions(kaldi_io_dir / "phones.txt") == expected
    names = {}
    for line in (kaldi_io_dir / "phones.txt").read_text().split("\n"):
        if line.strip():
            sym, i = line.split()
            names[int(i)] = sym
    assert tm.show_transitions(names) == expected


def test_lookup_tables_vectorised(kaldi_io_dir):
    exp = load_json(kaldi_io_dir / "trans.mdl.expected.json")
    tm = TransitionModel.from_file(kaldi_io_dir / "trans.mdl")
    tids = np.array([t["transition_id"] for t in exp["transition_ids"]])
    assert tm.tid2pdf[tids].tolist() == [t["pdf"] for t in exp["transition_ids"]]
    assert tm.tid2phone[tids].tolist() == [t["phone"] for t in exp["transition_ids"]]
    assert tm.tid2state[tids].tolist() == [t["transition_state"] for t in exp["transition_ids"]]
    assert tm.tid2pdf.shape == (tm.num_transition_ids + 1,)
    with pytest.raises(ValueError):
        tm.tid2pdf[1] = 3  # read-only
    with pytest.raises(ValueError):
        tm.transition_id_to_pdf(0)
    with pytest.raises(ValueError):
        tm.transition_id_to_pdf(tm.num_transition_ids + 1)


# -- malformed input -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["trans.mdl", "chain.trans.mdl"])
def test_truncated_binary_model_every_offset(kaldi_io_dir, name):
    data = (kaldi_io_dir / name).read_bytes()
    for cut in range(len(data)):
        with pytest.raises(KaldiFormatError) as ei:
            TransitionModel.from_bytes(data[:cut], name=name)
        assert ei.value.filename == name
        assert ei.value.offset is not None and 0 <= ei.value.offset <= cut


@pytest.mark.parametrize("name", ["trans.mdl.txt", "chain.trans.mdl.txt"])
def test_truncated_text_model(kaldi_io_dir, name):
    data = (kaldi_io_dir / name).read_bytes()
    for cut in range(0, len(data) - 1, 7):
        with pytest.raises(KaldiFormatError):
            TransitionModel.from_bytes(data[:cut], name=name)


@pytest.mark.parametrize("old,new", [
    (b"<Topology>", b"<Topologx>"), (b"</Topology>", b"</Topologx>"),
    (b"<Triples>", b"<Triplex>"), (b"</Triples>", b"</Triplez>"),
    (b"<LogProbs> FV", b"<LogProbs> FX"), (b"</TransitionModel>", b"</TransitionModex>"),
    (b"<LogProbs> FV \x04\x31", b"<LogProbs> FV \x04\x30"),   # wrong dimension
    (b"<LogProbs> FV \x04\x31", b"<LogProbs> FV \x04\xff"),   # huge dimension
    (b"<Triples> \x04\x14", b"<Triples> \x04\x15"),           # one tuple too many
    (b"<Triples> \x04\x14", b"<Triples> \x04\x13"),           # one tuple too few
    (b"<Triples> \x04\x14", b"<Triples> \x08\x14"),           # bad size byte
    (b"<Triples> \x04\x14\x00\x00\x00\x04\x01", b"<Triples> \x04\x14\x00\x00\x00\x04\x07"),
])
def test_corrupted_binary_model(kaldi_io_dir, old, new):
    data = (kaldi_io_dir / "trans.mdl").read_bytes()
    assert data.count(old) == 1
    bad = data.replace(old, new)
    with pytest.raises(KaldiFormatError):
        TransitionModel.from_bytes(bad, name="bad.mdl")


def test_corrupted_values_are_format_errors(kaldi_io_dir):
    data = bytearray((kaldi_io_dir / "chain.trans.mdl").read_bytes())
    # flip every byte in turn: only KaldiFormatError (or success) may come out
    for i in range(2, len(data)):
        bad = bytearray(data)
        bad[i] ^= 0xFF
        try:
            TransitionModel.from_bytes(bytes(bad))
        except KaldiFormatError:
            pass


def test_positive_log_prob_rejected(kaldi_io_dir):
    text = (kaldi_io_dir / "chain.trans.mdl.txt").read_text()
    bad = text.replace(" [ 0 -0.6931472 ", " [ 0 0.6931472 ", 1)
    with pytest.raises(KaldiFormatError) as ei:
        TransitionModel.from_bytes(bad.encode())
    assert "log-prob" in str(ei.value)


@pytest.mark.parametrize("name,cls", [("trans.mdl", TransitionModel),
                                      ("trans.mdl.txt", TransitionModel),
                                      ("chain.trans.mdl.txt", TransitionModel),
                                      ("tree", ContextDependency), ("tree.txt", ContextDependency),
                                      ("topo", HmmTopology), ("chain.topo", HmmTopology)])
def test_random_corruption_only_format_errors(kaldi_io_dir, name, cls):
    data = (kaldi_io_dir / name).read_bytes()
    rng = np.random.default_rng(99)
    for _ in range(400):
        bad = bytearray(data)
        for _ in range(int(rng.integers(1, 3))):
            i = int(rng.integers(0, len(bad)))
            bad[i] = int(rng.choice([int(rng.integers(0, 256)), ord(" "), ord("\n"), ord("0"),
                                     ord("-"), ord("9")]))
        if rng.random() < 0.2:
            bad = bad[:int(rng.integers(0, len(bad)))]
        try:
            cls.from_bytes(bytes(bad))
        except KaldiFormatError:
            pass
