"""HmmTopology against Kaldi-written fixtures (topo, chain.topo, models)."""

from __future__ import annotations

import io

import pytest

from kbind.hmm import HmmState, HmmTopology, TransitionModel
from kbind.io.errors import KaldiFormatError
from kbind.io.stream import KaldiInput

from ._common import load_json, same_f32

CASES = [("topo", "trans.mdl.expected.json", True),
         ("chain.topo", "chain.trans.mdl.expected.json", False)]


def _check_against_expected(topo: HmmTopology, exp: dict) -> None:
    assert topo.phones == exp["phones"]
    assert topo.is_hmm == exp["is_hmm"]
    for phone_str, info in exp["topology"].items():
        phone = int(phone_str)
        entry = topo.topology_for_phone(phone)
        assert topo.num_pdf_classes(phone) == info["num_pdf_classes"]
        assert topo.min_length(phone) == info["min_length"]
        assert len(entry) == len(info["states"])
        for st, est in zip(entry, info["states"]):
            assert st.forward_pdf_class == est["forward_pdf_class"]
            assert st.self_loop_pdf_class == est["self_loop_pdf_class"]
            assert [d for d, _ in st.transitions] == [d for d, _ in est["transitions"]]
            for (_, p), (_, ep) in zip(st.transitions, est["transitions"]):
                assert same_f32(p, ep)


@pytest.mark.parametrize("name,expected,is_hmm", CASES)
def test_text_topology_file(kaldi_io_dir, name, expected, is_hmm):
    topo = HmmTopology.from_file(kaldi_io_dir / name)
    _check_against_expected(topo, load_json(kaldi_io_dir / expected))
    assert topo.is_hmm == is_hmm
    # The lang/topo text form reproduces the script output exactly.
    assert topo.to_lang_topo_text() == (kaldi_io_dir / name).read_text()


@pytest.mark.parametrize("mdl,expected", [("trans.mdl", "trans.mdl.expected.json"),
                                          ("trans.mdl.txt", "trans.mdl.expected.json"),
                                          ("chain.trans.mdl", "chain.trans.mdl.expected.json"),
                                          ("chain.trans.mdl.txt",
                                           "chain.trans.mdl.expected.json")])
def test_topology_inside_models(kaldi_io_dir, mdl, expected):
    tm = TransitionModel.from_file(kaldi_io_dir / mdl)
    _check_against_expected(tm.topo, load_json(kaldi_io_dir / expected))


@pytest.mark.parametrize("topo_name,mdl", [("topo", "trans.mdl"), ("chain.topo", "chain.trans.mdl")])
def test_text_and_binary_topology_agree(kaldi_io_dir, topo_name, mdl):
    a = HmmTopology.from_file(kaldi_io_dir / topo_name)
    b = TransitionModel.from_file(kaldi_io_dir / mdl).topo
    assert a == b


@pytest.mark.parametrize("mdl", ["trans.mdl", "chain.trans.mdl"])
def test_binary_topology_bytes(kaldi_io_dir, mdl):
    """The topology block of the binary model is reproduced byte for byte."""
    data = (kaldi_io_dir / mdl).read_bytes()
    start = len(b"\0B<TransitionModel> ")
    end = data.index(b"</Topology> ") + len(b"</Topology> ")
    topo = HmmTopology.from_bytes(data[:2] + data[start:end])
    assert topo.to_bytes(binary=True) == data[:2] + data[start:end]


@pytest.mark.parametrize("mdl", ["trans.mdl.txt", "chain.trans.mdl.txt"])
def test_text_topology_bytes(kaldi_io_dir, mdl):
    """Kaldi's HmmTopology::Write text form (inside the text model) is reproduced."""
    data = (kaldi_io_dir / mdl).read_bytes()
    start = data.index(b"<Topology>")
    end = data.index(b"</Topology> \n") + len(b"</Topology> \n")
    topo = HmmTopology.from_bytes(data[start:end])
    assert topo.to_bytes(binary=False) == data[start:end]
    # and the binary form survives a round trip
    assert HmmTopology.from_bytes(topo.to_bytes(True)) == topo


def test_kaldi_3state_reproduces_gen_topo(kaldi_io_dir):
    # utils/gen_topo.pl 3 5 2:3:4:5:6 1
    topo = HmmTopology.kaldi_3state([2, 3, 4, 5, 6], [1])
    assert topo.to_lang_topo_text() == (kaldi_io_dir / "topo").read_text()
    assert topo == HmmTopology.from_file(kaldi_io_dir / "topo")
    # `phones` may also list all phones
    assert HmmTopology.kaldi_3state([1, 2, 3, 4, 5, 6], [1]) == topo


def test_chain_2state_reproduces_gen_topo(kaldi_io_dir):
    # steps/nnet3/chain/gen_topo.py 2:3:4:5:6 1
    topo = HmmTopology.chain_2state([2, 3, 4, 5, 6], [1])
    assert topo.to_lang_topo_text() == (kaldi_io_dir / "chain.topo").read_text()
    assert topo == HmmTopology.from_file(kaldi_io_dir / "chain.topo")
    assert HmmTopology.chain_2state([1, 2, 3, 4, 5, 6]) == topo
    assert not topo.is_hmm


def test_kaldi_3state_other_sizes_as_gen_topo_pl():
    """utils/gen_topo.pl 2 4 2:3 1, written out from the script's print
    statements (perl prints 1/3 as 0.333333333333333)."""
    t = "0.333333333333333"
    want = (
        "<Topology>\n<TopologyEntry>\n<ForPhones>\n2 3\n</ForPhones>\n"
        "<State> 0 <PdfClass> 0 <Transition> 0 0.75 <Transition> 1 0.25 </State>\n"
        "<State> 1 <PdfClass> 1 <Transition> 1 0.75 <Transition> 2 0.25 </State>\n"
        "<State> 2 </State>\n</TopologyEntry>\n"
        "<TopologyEntry>\n<ForPhones>\n1\n</ForPhones>\n"
        f"<State> 0 <PdfClass> 0 <Transition> 0 {t} <Transition> 1 {t} <Transition> 2 {t} </State>\n"
        f"<State> 1 <PdfClass> 1 <Transition> 1 {t} <Transition> 2 {t} <Transition> 3 {t} </State>\n"
        f"<State> 2 <PdfClass> 2 <Transition> 1 {t} <Transition> 2 {t} <Transition> 3 {t} </State>\n"
        "<State> 3 <PdfClass> 3 <Transition> 3 0.75 <Transition> 4 0.25 </State>\n"
        "<State> 4 </State>\n</TopologyEntry>\n</Topology>\n")
    topo = HmmTopology.kaldi_3state([2, 3], [1], num_nonsil_states=2, num_sil_states=4)
    assert topo.to_lang_topo_text() == want
    assert HmmTopology.from_bytes(want.encode()) == topo
    assert topo.min_length(1) == 3 and topo.min_length(2) == 2  # sil: 0 -> 2 -> 3 -> final


def test_binary_round_trip_constructed():
    for topo in (HmmTopology.kaldi_3state([2, 3, 4], [1]), HmmTopology.chain_2state([1, 2])):
        data = topo.to_bytes(True)
        assert HmmTopology.from_bytes(data) == topo
        assert HmmTopology.from_bytes(topo.to_bytes(False)) == topo
    # a chain topology announces itself with the int32 -1 marker after phone2idx
    data = HmmTopology.chain_2state([1, 2]).to_bytes(True)
    assert b"\x04\x03\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00" in data
    assert b"\x04\xff\xff\xff\xff\x04\x01\x00\x00\x00" in data


def test_closed_form_properties():
    topo = HmmTopology.kaldi_3state([2, 3], [1], num_nonsil_states=3, num_sil_states=5)
    assert topo.num_pdf_classes(1) == 5 and topo.num_pdf_classes(2) == 3
    assert topo.min_length(2) == 3  # left-to-right, no skips
    assert topo.min_length(1) == 3  # 0 -> 3 -> 4 -> final
    chain = HmmTopology.chain_2state([1, 2])
    assert chain.num_pdf_classes(1) == 2 and chain.min_length(1) == 1
    with pytest.raises(KeyError):
        topo.topology_for_phone(7)


def test_old_style_pdf_class_text():
    text = (b"<Topology>\n<TopologyEntry>\n<ForPhones>\n3 1\n</ForPhones>\n"
            b"<State> 0 <PdfClass> 0 <Transition> 0 0.5 <Transition> 1 0.5 </State>\n"
            b"<State> 1 </State>\n</TopologyEntry>\n</Topology>\n")
    topo = HmmTopology.from_bytes(text)
    assert topo.phones == [1, 3]
    assert topo.phone2idx == [-1, 0, -1, 0]
    assert topo.entries[0][0] == HmmState(0, 0, [(0, 0.5), (1, 0.5)])


@pytest.mark.parametrize("text,what", [
    (b"<Topology> <TopologyEntry> <ForPhones> 1 </ForPhones> <State> 1 </State> "
     b"</TopologyEntry> </Topology>", "order"),
    (b"<Topology> <TopologyEntry> <ForPhones> x </ForPhones>", "integer"),
    (b"<Topology> <TopologyEntry> <ForPhones> 1 </ForPhones> <State> 0 <PdfClass> 0 "
     b"<SelfLoopPdfClass> 1 </State> </TopologyEntry> </Topology>", "pdf classes"),
    (b"<Topology> <TopologyEntry> <ForPhones> 1 </ForPhones> <State> 0 <PdfClass> 0 "
     b"<Transition> 0 0.5 <Transition> 1 0.5 </State> <State> 1 </State> "
     b"</TopologyEntry> <TopologyEntry> <ForPhones> 1 </ForPhones> <State> 0 <PdfClass> 0 "
     b"<Transition> 1 1.0 </State> <State> 1 </State> </TopologyEntry> </Topology>",
     "multiple"),
    (b"<Topology> <TopologyEntry> <ForPhones> 1 </ForPhones> <State> 0 <PdfClass> 1 "
     b"<Transition> 0 0.5 <Transition> 1 0.5 </State> <State> 1 </State> "
     b"</TopologyEntry> </Topology>", "contiguous"),
    (b"<Topology> <TopologyEntry> <ForPhones> 1 </ForPhones> <State> 0 <PdfClass> 0 "
     b"<Transition> 0 0.5 <Transition> 1 0.5 </State>", "end of file"),
    (b"<Topology> <TopologyEntry> <ForPhones> 1 </ForPhones> <State> 0 <PdfClass> 0 "
     b"<Transition> 0 0.5 <Transition> 1 0.5 <Final> </State>", "old-format"),
])
def test_bad_text_topologies(text, what):
    with pytest.raises(KaldiFormatError) as ei:
        HmmTopology.from_bytes(text, name="bad-topo")
    assert what in str(ei.value)
    assert ei.value.filename == "bad-topo"
    assert ei.value.offset is not None


def test_truncated_binary_topology(kaldi_io_dir):
    data = (kaldi_io_dir / "chain.trans.mdl").read_bytes()
    start = len(b"\0B<TransitionModel> ")
    end = data.index(b"</Topology> ") + len(b"</Topology> ")
    block = data[start:end]
    for cut in range(len(block)):
        inp = KaldiInput(io.BytesIO(block[:cut]), "cut")
        with pytest.raises(KaldiFormatError):
            HmmTopology.read(inp, True)
