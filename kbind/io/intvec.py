"""Integer vectors (alignments), vectors of vectors, posteriors, scalars.

These are the table types of Kaldi's ``BasicVectorHolder``,
``BasicVectorVectorHolder``, ``PosteriorHolder`` and ``BasicHolder``:

* int32 vector, binary: int32 length then each element as a basic int32
  (size byte ``\\x04`` + value). Text: ``1 2 3`` on one line.
* vector of int32 vectors, binary: int32 outer size, then per inner
  vector its int32 size and elements. Text: ``1 2 ; 3 4 ;`` on one line.
* posterior, binary: int32 frames, per frame int32 pairs and per pair an
  int32 id and a float32 weight. Text: ``[ id w id w ] [ ] ...`` on one line.
* scalars: a basic int32 / float / double / bool.

Text entries of these types end at the end of their line.
"""

from __future__ import annotations

from typing import BinaryIO, List, Sequence, Tuple

import numpy as np

from .stream import (KaldiInput, format_float, parse_float, write_bool, write_double,
                     write_float, write_int32)

__all__ = [
    "read_int32_vector", "write_int32_vector", "read_int32_vector_vector",
    "write_int32_vector_vector", "read_posterior", "write_posterior",
]

Posterior = List[List[Tuple[int, float]]]


def _read_line(inp: KaldiInput, what: str) -> Tuple[bytes, int]:
    """The rest of the current line (without the newline) and its offset."""
    start = inp.offset
    parts = []
    while True:
        block = inp.peek(4096)
        if not block:
            break
        pos = block.find(b"\n")
        if pos >= 0:
            parts.append(inp.read(pos))
            inp.read(1)
            break
        parts.append(inp.read(len(block)))
    return b"".join(parts), start


def _ints(tokens, inp, start, what):
    try:
        return [int(t) for t in tokens]
    except ValueError:
        raise inp.error(f"expected integers in {what}, got {b' '.join(tokens)[:60]!r}",
                        offset=start) from None


def _check_count(inp: KaldiInput, n: int, what: str, start: int, min_bytes: int) -> None:
    if n < 0:
        raise inp.error(f"negative size {n} for {what}", offset=start)
    # A count that the rest of the stream cannot hold is corruption, not a
    # reason to allocate gigabytes.
    if n > (1 << 31) // max(min_bytes, 1):
        raise inp.error(f"implausible size {n} for {what}", offset=start)


def read_int32_vector(inp: KaldiInput, binary: bool) -> np.ndarray:
    if not binary:
        line, start = _read_line(inp, "int32 vector")
        return np.asarray(_ints(line.split(), inp, start, "int32 vector"), dtype=np.int32)
    start = inp.offset
    n = inp.read_int32(True, "int32 vector length")
    _check_count(inp, n, "int32 vector", start, 5)
    raw = inp.read(5 * n, f"int32 vector data ({n} elements)")
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(n, 5)
    if n and not np.all(arr[:, 0] == 4):
        bad = int(np.argmax(arr[:, 0] != 4))
        raise inp.error(f"bad size byte {arr[bad, 0]} for element {bad} of int32 vector "
                        "(expected 4)", offset=start + 5 + 5 * bad)
    return np.ascontiguousarray(arr[:, 1:]).view("<i4").reshape(n).astype(np.int32)


def write_int32_vector(f: BinaryIO, vec, binary: bool = True) -> None:
    arr = np.asarray(vec._data if hasattr(vec, "_data") else vec)
    if hasattr(vec, "detach"):
        arr = vec.detach().cpu().numpy()
    arr = arr.astype(np.int64).reshape(-1)
    if not binary:
        f.write("".join(f"{int(v)} " for v in arr).encode() + b"\n")
        return
    write_int32(f, arr.size)
    buf = np.empty((arr.size, 5), dtype=np.uint8)
    buf[:, 0] = 4
    buf[:, 1:] = arr.astype("<i4").view(np.uint8).reshape(-1, 4)
    f.write(buf.tobytes())


def read_int32_vector_vector(inp: KaldiInput, binary: bool) -> List[np.ndarray]:
    if not binary:
        line, start = _read_line(inp, "int32 vector-vector")
        out, cur = [], []
        for tok in line.split():
            if tok == b";":
                out.append(np.asarray(cur, dtype=np.int32))
                cur = []
            else:
                cur.extend(_ints([tok], inp, start, "int32 vector-vector"))
        if cur:
            raise inp.error("int32 vector-vector line does not end with ';'", offset=start)
        return out
    start = inp.offset
    n = inp.read_int32(True, "vector-vector size")
    _check_count(inp, n, "int32 vector-vector", start, 5)
    out = []
    for _ in range(n):
        out.append(read_int32_vector(inp, True))
    return out


def write_int32_vector_vector(f: BinaryIO, vv: Sequence, binary: bool = True) -> None:
    if not binary:
        f.write("".join(" ".join(str(int(v)) for v in np.asarray(x).reshape(-1))
                        + (" ; " if len(x) else "; ") for x in vv).encode() + b"\n")
        return
    write_int32(f, len(vv))
    for x in vv:
        write_int32_vector(f, x, True)


def read_posterior(inp: KaldiInput, binary: bool) -> Posterior:
    if not binary:
        line, start = _read_line(inp, "posterior")
        toks = line.split()
        out: Posterior = []
        i = 0
        while i < len(toks):
            if toks[i] != b"[":
                raise inp.error(f"expected '[' in posterior, got {toks[i]!r}", offset=start)
            i += 1
            frame = []
            while i < len(toks) and toks[i] != b"]":
                if i + 1 >= len(toks):
                    raise inp.error("posterior pair cut short", offset=start)
                try:
                    frame.append((int(toks[i]), parse_float(toks[i + 1].decode())))
                except ValueError:
                    raise inp.error(f"bad posterior pair {toks[i]!r} {toks[i + 1]!r}",
                                    offset=start) from None
                i += 2
            if i >= len(toks):
                raise inp.error("posterior frame without ']'", offset=start)
            i += 1
            out.append(frame)
        return out
    start = inp.offset
    n = inp.read_int32(True, "posterior frames")
    _check_count(inp, n, "posterior", start, 5)
    out = []
    for _ in range(n):
        fstart = inp.offset
        m = inp.read_int32(True, "posterior pairs")
        _check_count(inp, m, "posterior frame", fstart, 10)
        frame = []
        for _ in range(m):
            i = inp.read_int32(True, "posterior id")
            w = inp.read_float(True, "posterior weight")
            frame.append((i, w))
        out.append(frame)
    return out


def write_posterior(f: BinaryIO, post: Posterior, binary: bool = True) -> None:
    if not binary:
        parts = []
        for frame in post:
            parts.append("[ " + "".join(f"{int(i)} {format_float(float(np.float32(w)))} "
                                        for i, w in frame) + "]")
        f.write((" ".join(parts) + " \n" if parts else "\n").encode())
        return
    write_int32(f, len(post))
    for frame in post:
        write_int32(f, len(frame))
        for i, w in frame:
            write_int32(f, i)
            write_float(f, w)


# -- scalars -----------------------------------------------------------------------

def _text_scalar(inp: KaldiInput, what: str) -> str:
    line, start = _read_line(inp, what)
    toks = line.split()
    if len(toks) != 1:
        raise inp.error(f"expected one {what} on the line, got {line[:60]!r}", offset=start)
    return toks[0].decode("ascii", "replace")


def read_int32_scalar(inp: KaldiInput, binary: bool) -> int:
    if binary:
        return inp.read_int32(True, "int32")
    start = inp.offset
    tok = _text_scalar(inp, "int32")
    try:
        return int(tok)
    except ValueError:
        raise inp.error(f"expected an integer, got {tok!r}", offset=start) from None


def read_float_scalar(inp: KaldiInput, binary: bool) -> float:
    if binary:
        return inp.read_float(True, "float")
    start = inp.offset
    tok = _text_scalar(inp, "float")
    try:
        return parse_float(tok)
    except ValueError:
        raise inp.error(f"expected a number, got {tok!r}", offset=start) from None


def read_bool_scalar(inp: KaldiInput, binary: bool) -> bool:
    if binary:
        return inp.read_bool(True, "bool")
    start = inp.offset
    tok = _text_scalar(inp, "bool")
    if tok not in ("T", "F"):
        raise inp.error(f"expected T or F, got {tok!r}", offset=start)
    return tok == "T"


def write_int32_scalar(f: BinaryIO, v: int, binary: bool = True) -> None:
    write_int32(f, v, binary)
    if not binary:
        f.write(b"\n")


def write_float_scalar(f: BinaryIO, v: float, binary: bool = True) -> None:
    write_float(f, v, binary)
    if not binary:
        f.write(b"\n")


def write_double_scalar(f: BinaryIO, v: float, binary: bool = True) -> None:
    write_double(f, v, binary)
    if not binary:
        f.write(b"\n")


def write_bool_scalar(f: BinaryIO, v: bool, binary: bool = True) -> None:
    write_bool(f, v, binary)
    if not binary:
        f.write(b"\n")
