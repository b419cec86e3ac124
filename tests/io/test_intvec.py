"""Posteriors, int32 vector-vectors and scalars: byte layouts from Kaldi's
format (see the fixture README's format notes) and round trips."""

import io
import struct

import numpy as np
import pytest

from kbind.io import KaldiFormatError, read_table, write_table
from kbind.io.intvec import (read_int32_vector, read_posterior, read_int32_vector_vector,
                             write_int32_vector_vector, write_posterior)
from kbind.io.stream import KaldiInput


def i32(v):
    return b"\x04" + struct.pack("<i", v)


def f32(v):
    return b"\x04" + struct.pack("<f", v)


POST = [[(3, 0.5), (7, 0.25)], [], [(1, 1.0)]]
POST_BYTES = (i32(3) + i32(2) + i32(3) + f32(0.5) + i32(7) + f32(0.25) + i32(0)
              + i32(1) + i32(1) + f32(1.0))
VV = [np.array([1, 2], np.int32), np.array([], np.int32), np.array([3], np.int32)]
VV_BYTES = i32(3) + i32(2) + i32(1) + i32(2) + i32(0) + i32(1) + i32(3)


def test_posterior_binary_layout():
    f = io.BytesIO()
    write_posterior(f, POST, True)
    assert f.getvalue() == POST_BYTES
    assert read_posterior(KaldiInput(io.BytesIO(POST_BYTES), "m"), True) == POST


def test_posterior_text_layout():
    f = io.BytesIO()
    write_posterior(f, POST, False)
    assert f.getvalue() == b"[ 3 0.5 7 0.25 ] [ ] [ 1 1 ] \n"
    assert read_posterior(KaldiInput(io.BytesIO(f.getvalue()), "m"), False) == POST


def test_vector_vector_layouts():
    f = io.BytesIO()
    write_int32_vector_vector(f, VV, True)
    assert f.getvalue() == VV_BYTES
    got = read_int32_vector_vector(KaldiInput(io.BytesIO(VV_BYTES), "m"), True)
    assert [g.tolist() for g in got] == [[1, 2], [], [3]]
    f = io.BytesIO()
    write_int32_vector_vector(f, VV, False)
    assert f.getvalue() == b"1 2 ; ; 3 ; \n"
    got = read_int32_vector_vector(KaldiInput(io.BytesIO(f.getvalue()), "m"), False)
    assert [g.tolist() for g in got] == [[1, 2], [], [3]]


@pytest.mark.parametrize("kind, value", [("posterior", POST), ("int32_vector_vector", VV),
                                         ("int32", 42), ("float", 0.25), ("bool", True),
                                         ("double", 1e-300)])
@pytest.mark.parametrize("binary", [True, False])
def test_table_round_trip(tmp_path, kind, value, binary):
    spec = "ark" if binary else "ark,t"
    with write_table(f"{spec}:{tmp_path / 'x.ark'}", kind=kind) as w:
        w.write("k1", value)
        w.write("k2", value)
    got = list(read_table(f"ark:{tmp_path / 'x.ark'}", kind=kind))
    assert [k for k, _ in got] == ["k1", "k2"]
    for _, v in got:
        if kind == "int32_vector_vector":
            assert [x.tolist() for x in v] == [x.tolist() for x in value]
        elif kind == "double" and not binary:
            assert v == pytest.approx(value, rel=1e-15)
        else:
            assert v == value


def test_bad_size_byte_in_int_vector():
    data = i32(2) + i32(5) + b"\x08" + struct.pack("<i", 6)
    with pytest.raises(KaldiFormatError, match="element 1") as ei:
        read_int32_vector(KaldiInput(io.BytesIO(data), "mem"), True)
    assert ei.value.offset == 10


def test_negative_and_huge_counts():
    for n in (-1, 2 ** 31 - 1):
        with pytest.raises(KaldiFormatError):
            read_posterior(KaldiInput(io.BytesIO(i32(n)), "m"), True)


def test_text_int_vector_with_letters(tmp_path):
    p = tmp_path / "x.ark"
    p.write_text("u1 1 2 3\nu2 4 x 6\n")
    it = read_table(f"ark:{p}", kind="ali")
    assert next(it)[1].tolist() == [1, 2, 3]
    with pytest.raises(KaldiFormatError, match="expected integers") as ei:
        next(it)
    assert ei.value.key == "u2"
