"""ContextDependency / EventMap against Kaldi-written trees."""

from __future__ import annotations

import itertools

import pytest

from kbind.hmm import (ConstantEventMap, ContextDependency, HmmTopology, SplitEventMap,
                       TableEventMap, TransitionModel)
from kbind.io.errors import KaldiFormatError

from ._common import load_json

TREES = [("tree", "trans.mdl.expected.json"), ("tree.txt", "trans.mdl.expected.json"),
         ("chain.tree", "chain.trans.mdl.expected.json"),
         ("chain.tree.txt", "chain.trans.mdl.expected.json")]


@pytest.mark.parametrize("name,expected", TREES)
def test_tree_structure_and_mapping(kaldi_io_dir, name, expected):
    exp = load_json(kaldi_io_dir / expected)["tree"]
    tree = ContextDependency.from_file(kaldi_io_dir / name)
    assert tree.context_width == exp["context_width"]
    assert tree.central_position == exp["central_position"]
    assert tree.num_pdfs == exp["num_pdfs"]
    assert tree.to_pdf.to_dict() == exp["to_pdf"]
    assert exp["mapping"]
    for window, pdf_class, pdf in exp["mapping"]:
        assert tree.compute(window, pdf_class) == pdf


@pytest.mark.parametrize("name", ["tree", "tree.txt", "chain.tree", "chain.tree.txt"])
def test_tree_round_trip_bytes(kaldi_io_dir, name):
    data = (kaldi_io_dir / name).read_bytes()
    tree = ContextDependency.from_bytes(data)
    binary = data.startswith(b"\0B")
    assert binary == (not name.endswith(".txt"))
    assert tree.to_bytes(binary) == data
    # binary <-> text conversions agree with Kaldi's other file
    other = name[:-4] if name.endswith(".txt") else name + ".txt"
    assert tree.to_bytes(not binary) == (kaldi_io_dir / other).read_bytes()


def test_to_file(kaldi_io_dir, tmp_path):
    tree = ContextDependency.from_file(kaldi_io_dir / "tree")
    tree.to_file(tmp_path / "t", binary=True)
    assert (tmp_path / "t").read_bytes() == (kaldi_io_dir / "tree").read_bytes()
    tree.to_file(tmp_path / "t.txt", binary=False)
    assert (tmp_path / "t.txt").read_bytes() == (kaldi_io_dir / "tree.txt").read_bytes()


def test_monophone_reproduces_kaldi_trees(kaldi_io_dir):
    topo = HmmTopology.from_file(kaldi_io_dir / "topo")
    tree = ContextDependency.monophone(topo.phones, topo.phone_to_num_pdf_classes())
    assert tree.to_bytes(True) == (kaldi_io_dir / "tree").read_bytes()
    chain_tree = ContextDependency.monophone([1, 2, 3, 4, 5, 6], 2)
    assert chain_tree.to_bytes(True) == (kaldi_io_dir / "chain.tree").read_bytes()
    assert chain_tree.to_bytes(False) == (kaldi_io_dir / "chain.tree.txt").read_bytes()


def test_monophone_fixture_of_chain_cases(kaldi_chain_dir):
    """The chain golden cases' tree: pdf of (phone p, class c) = 2*(p-1) + c."""
    for case in ("tiny_chain_S3_T15", "medium_chain_S4_T34"):
        data = (kaldi_chain_dir / case / "tree").read_bytes()
        binary = data.startswith(b"\0B")  # these were written in text mode
        tree = ContextDependency.from_bytes(data)
        assert tree.to_bytes(binary) == data
        tm = TransitionModel.from_file(kaldi_chain_dir / case / "0.trans_mdl")
        phones = tm.topo.phones
        assert ContextDependency.monophone(phones, 2).to_bytes(binary) == data
        for p in phones:
            for c in (0, 1):
                assert tree.compute([p], c) == 2 * (p - 1) + c


def test_monophone_shared_sets_use_split():
    # Kaldi's GetStubMap splits with SE when a phone set has several phones.
    tree = ContextDependency.monophone([1, 2, 3, 4], 1, phone_sets=[[1], [2, 3], [4]])
    assert isinstance(tree.to_pdf, SplitEventMap)
    assert tree.to_pdf.key == 0 and tree.to_pdf.yes_set == [1]
    assert [tree.compute([p], 0) for p in (1, 2, 3, 4)] == [0, 1, 1, 2]
    assert tree.compute([5], 0) == 2  # unknown phones fall into the last 'no' branch
    data = tree.to_bytes(False)
    # Kaldi's WriteIntegerVector text form ends with a newline
    assert data.startswith(b"ContextDependency 1 0 ToPdf SE 0 [ 1 ]\n{ TE -1 1 ( CE 0 ) \n")
    assert ContextDependency.from_bytes(data) == tree
    bin_data = tree.to_bytes(True)
    assert bin_data.startswith(b"\0BContextDependency \x04\x01\x00\x00\x00\x04\x00\x00\x00\x00"
                               b"ToPdf SE \x04\x00\x00\x00\x00\x04\x01\x00\x00\x00"
                               b"\x01\x00\x00\x00{ ")
    assert ContextDependency.from_bytes(bin_data) == tree


def test_monophone_sparse_phone_ids_use_table():
    tree = ContextDependency.monophone([10, 20, 1000], 1)
    assert isinstance(tree.to_pdf, TableEventMap) and len(tree.to_pdf.table) == 1001
    assert [tree.compute([p], 0) for p in (10, 20, 1000)] == [0, 1, 2]
    assert tree.compute([11], 0) is None


def test_left_biphone_full_tree():
    phones = [1, 2, 3, 4]
    n = len(phones)
    tree = ContextDependency.left_biphone(phones, 2)
    assert (tree.context_width, tree.central_position) == (2, 1)
    assert tree.num_pdfs == n * (n + 1) * 2
    seen = set()
    for i, p in enumerate(phones):
        for l_idx, left in enumerate([0] + phones):
            for c in (0, 1):
                pdf = tree.compute([left, p], c)
                assert pdf == (i * (n + 1) + l_idx) * 2 + c
                seen.add(pdf)
    assert seen == set(range(tree.num_pdfs))
    assert tree.compute([0, 0], 0) is None
    assert tree.compute([1, 2], 2) is None
    # Kaldi structure: TE 1 ( NULL TE 0 ( TE -1 2 ( CE .. ) ...
    assert isinstance(tree.to_pdf, TableEventMap) and tree.to_pdf.key == 1
    assert tree.to_pdf.table[0] is None
    lvl2 = tree.to_pdf.table[1]
    assert isinstance(lvl2, TableEventMap) and lvl2.key == 0 and len(lvl2.table) == n + 1
    assert lvl2.table[0] == TableEventMap(-1, [ConstantEventMap(0), ConstantEventMap(1)])
    data = tree.to_bytes(True)
    assert data.startswith(b"\0BContextDependency \x04\x02\x00\x00\x00\x04\x01\x00\x00\x00"
                           b"ToPdf TE \x04\x01\x00\x00\x00\xfc\x05\x00\x00\x00( NULL TE ")
    assert ContextDependency.from_bytes(data) == tree
    assert ContextDependency.from_bytes(tree.to_bytes(False)) == tree


def test_left_biphone_one_pdf_class():
    tree = ContextDependency.left_biphone([1, 2, 3], 1)
    # gmm-init-biphone: with one pdf-class there is no pdf-class level
    lvl2 = tree.to_pdf.table[2]
    assert all(isinstance(c, ConstantEventMap) for c in lvl2.table)
    for i, p in enumerate([1, 2, 3]):
        for l_idx, left in enumerate([0, 1, 2, 3]):
            assert tree.compute([left, p], 0) == i * 4 + l_idx


def test_left_biphone_transition_model_chain():
    topo = HmmTopology.chain_2state([1, 2, 3])
    tree = ContextDependency.left_biphone(topo.phones, 2)
    tm = TransitionModel.build(topo, tree)
    # one transition-state per (phone, left context): 3 * 4, each with 2 transitions
    assert tm.num_transition_states == 12
    assert tm.num_transition_ids == 24
    assert tm.num_pdfs == 24
    assert TransitionModel.from_bytes(tm.to_bytes(True)) == tm


def test_shared_phone_sets_monophone():
    tree = ContextDependency.monophone([1, 2, 3], 3, phone_sets=[[1], [2, 3]])
    assert tree.compute([2], 1) == tree.compute([3], 1) == 4
    assert tree.num_pdfs == 6


def test_compute_window_length():
    tree = ContextDependency.monophone([1, 2], 1)
    with pytest.raises(ValueError):
        tree.compute([1, 2], 0)


def _flip_token(data: bytes, old: bytes, new: bytes) -> bytes:
    i = data.index(old)
    return data[:i] + new + data[i + len(old):]


@pytest.mark.parametrize("name", ["tree", "tree.txt", "chain.tree"])
def test_truncated_trees_raise(kaldi_io_dir, name):
    data = (kaldi_io_dir / name).read_bytes()
    for cut in range(len(data)):
        with pytest.raises(KaldiFormatError) as ei:
            ContextDependency.from_bytes(data[:cut], name=name)
        assert ei.value.offset is not None and ei.value.filename == name


@pytest.mark.parametrize("old,new", [(b"TE ", b"TX "), (b"CE ", b"QE "), (b"ToPdf", b"ToPdX"),
                                     (b"( ", b"[ "), (b"EndContext", b"EndContexX"),
                                     (b"\xfc\x07", b"\x04\x07"), (b"\xfc\x07", b"\xfc\xff")])
def test_corrupted_binary_tree_raises(kaldi_io_dir, old, new):
    data = _flip_token((kaldi_io_dir / "tree").read_bytes(), old, new)
    with pytest.raises(KaldiFormatError):
        ContextDependency.from_bytes(data)


def test_huge_table_size_does_not_allocate(kaldi_io_dir):
    data = (kaldi_io_dir / "tree").read_bytes()
    data = _flip_token(data, b"\xfc\x07\x00\x00\x00", b"\xfc\xff\xff\xff\xff")
    with pytest.raises(KaldiFormatError):
        ContextDependency.from_bytes(data)


def test_exhaustive_mapping_all_windows(kaldi_io_dir):
    """compute() agrees with the flat table of every window for both trees."""
    for name, expected in (("tree", "trans.mdl.expected.json"),
                           ("chain.tree", "chain.trans.mdl.expected.json")):
        exp = load_json(kaldi_io_dir / expected)
        tree = ContextDependency.from_file(kaldi_io_dir / name)
        table = {(tuple(w), c): pdf for w, c, pdf in exp["tree"]["mapping"]}
        for p, c in itertools.product(exp["phones"], range(6)):
            got = tree.compute([p], c)
            assert got == table.get(((p,), c))


def test_left_biphone_shared_phone_sets():
    # gmm-init-biphone --shared-phones: pdfs depend on the sets of the central
    # and of the left phone only.
    sets = [[1], [2, 3], [4]]
    set_of = {p: i for i, s in enumerate(sets) for p in s}
    S = len(sets)
    for n in (1, 2):
        tree = ContextDependency.left_biphone([1, 2, 3, 4], n, phone_sets=sets)
        assert tree.num_pdfs == S * (S + 1) * n
        for p in (1, 2, 3, 4):
            for left in (0, 1, 2, 3, 4):
                lj = 0 if left == 0 else set_of[left] + 1
                for c in range(n):
                    assert tree.compute([left, p], c) == (set_of[p] * (S + 1) + lj) * n + c
        assert ContextDependency.from_bytes(tree.to_bytes(True)) == tree
