"""Random and mutated bytes through every reader: only kbind's exceptions.

A reader must never crash the interpreter, hang, allocate absurd memory or
leak an IndexError/struct.error/UnicodeDecodeError on bad input; it raises
KaldiFormatError (or KaldiIOError) naming where it was.
"""

import io

import numpy as np
import pytest

from kbind.io import KaldiFormatError, KaldiIOError, read_table
from kbind.io.holders import HOLDER_NAMES, get_holder
from kbind.io.stream import KaldiInput

OK = (KaldiFormatError, KaldiIOError)
KINDS = [k for k in HOLDER_NAMES if k != "auto"]


def _seeds(kaldi_io_dir):
    names = ["feats_mfcc13.ark", "feats_fbank40.txt.ark", "cmat_speech_fbank40.ark",
             "cmat_2byte_auto_mfcc13.ark", "ali.ark", "ali.txt.ark", "toy.fst", "trans.mdl",
             "trans.mdl.txt", "chain.trans.mdl", "tree", "tree.txt", "topo"]
    return {n: (kaldi_io_dir / n).read_bytes() for n in names}


def _read_all(data: bytes, kind: str):
    holder = None if kind == "auto" else get_holder(kind)
    inp = KaldiInput(io.BytesIO(data), "fuzz")
    try:
        if holder is not None and not holder.marker:
            holder.read(inp, None)
        else:
            binary = inp.read_binary_marker()
            (holder.read if holder else get_holder("matrix").read)(inp, binary)
    except OK:
        pass


@pytest.mark.parametrize("kind", KINDS)
def test_random_bytes_raise_only_format_errors(kind):
    rng = np.random.default_rng(abs(hash(kind)) % (2 ** 32))
    for i in range(300):
        n = int(rng.integers(0, 200))
        data = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        if i % 3 == 0:
            data = b"\0B" + data
        _read_all(data, kind)


def test_mutated_fixtures_through_tables(kaldi_io_dir, tmp_path):
    rng = np.random.default_rng(7)
    seeds = _seeds(kaldi_io_dir)
    path = tmp_path / "m.ark"
    for name, data in seeds.items():
        for trial in range(40):
            buf = bytearray(data)
            op = trial % 3
            if op == 0:  # truncate
                buf = buf[: int(rng.integers(0, len(buf)))]
            elif op == 1:  # flip bytes
                for _ in range(int(rng.integers(1, 8))):
                    buf[int(rng.integers(0, len(buf)))] = int(rng.integers(0, 256))
            else:  # splice random bytes in
                pos = int(rng.integers(0, len(buf)))
                buf[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 16)),
                                            dtype=np.uint8).tobytes()
            path.write_bytes(bytes(buf))
            for kind in ("auto", "matrix", "int32_vector", "posterior"):
                try:
                    for _ in read_table(f"ark:{path}", kind=kind):
                        pass
                except OK:
                    pass
