"""Private serialisation helpers shared by the ``kbind.hmm`` objects.

These complement :mod:`kbind.io.stream` with the few Kaldi primitives the
HMM objects need and that ``stream.py`` does not provide in exactly Kaldi's
form:

* ``uint32`` basic values (Kaldi writes the size byte of an unsigned type as
  ``-sizeof(T)``, i.e. ``0xfc``; ``TableEventMap`` stores its size this way);
* integer vectors inside objects (Kaldi ``WriteIntegerVector``): text form is
  ``[ 1 2 3 ]`` followed by a NEWLINE (``stream.write_int32_vector_raw``
  writes a space instead);
* float vectors (Kaldi ``Vector<float>::Write``): binary ``FV `` + int32 dim +
  raw float32 (``DV`` is accepted on read), text `` [ v v ]\\n``;
* readers that never pre-allocate from an untrusted size field, so a corrupted
  count gives a :class:`KaldiFormatError` at end of file, not a MemoryError.
"""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path
from typing import BinaryIO, Callable, Optional

import numpy as np

from kbind.io.errors import KaldiFormatError
from kbind.io.stream import KaldiInput, format_float, parse_float, write_binary_marker

_UINT32 = struct.Struct("<I")
_INT32 = struct.Struct("<i")
_WS = b" \t\n\r\v\f"
_CHUNK = 1 << 16  # elements read per chunk for vectors with a stored size


def read_uint32(inp: KaldiInput, binary: bool, what: str = "uint32") -> int:
    """Kaldi ``ReadBasicType<uint32>``: size byte 0xfc (= -4) in binary."""
    start = inp.offset
    if binary:
        size = inp.read(1, what)[0]
        if size != 0xFC:
            raise inp.error(f"expected uint32 ({what}) with size byte -4 (0xfc), got "
                            f"{size if size < 128 else size - 256}", offset=start)
        return _UINT32.unpack(inp.read(4, what))[0]
    tok = inp.read_token(what)
    try:
        value = int(tok)
    except ValueError:
        raise inp.error(f"expected unsigned integer ({what}), got {tok!r}", offset=start) from None
    if not 0 <= value < 2 ** 32:
        raise inp.error(f"value {value} out of range for uint32 ({what})", offset=start)
    return value


def write_uint32(f: BinaryIO, value: int, binary: bool) -> None:
    if binary:
        f.write(b"\xfc" + _UINT32.pack(int(value)))
    else:
        f.write(f"{int(value)} ".encode())


def read_int_vector(inp: KaldiInput, binary: bool, what: str = "integer vector") -> np.ndarray:
    """Kaldi ``ReadIntegerVector<int32>`` (size byte, int32 count, raw values;
    text ``[ a b c ]``), reading in chunks so a bad count cannot exhaust memory."""
    start = inp.offset
    if binary:
        size = inp.read(1, what)[0]
        if size != 4:
            raise inp.error(f"expected int32 vector ({what}) with element size 4, got {size}",
                            offset=start)
        n = _INT32.unpack(inp.read(4, what))[0]
        if n < 0:
            raise inp.error(f"negative length {n} for {what}", offset=start)
        parts = []
        left = n
        while left > 0:
            k = min(left, _CHUNK)
            parts.append(inp.read_array(k, np.int32, what))
            left -= k
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)
    inp.skip_whitespace()
    if inp.peek(1) != b"[":
        raise inp.error(f"expected '[' at the start of {what}, got {inp.peek(1)!r}")
    inp.read(1)
    values = []
    while True:
        inp.skip_whitespace()
        c = inp.peek(1)
        if c == b"]":
            inp.read(1)
            break
        if not c:
            raise inp.error(f"unexpected end of file in {what}")
        tok_start = inp.offset
        chars = []
        while True:
            c = inp.peek(1)
            if not c or c in _WS or c == b"]":
                break
            chars.append(inp.read(1))
        tok = b"".join(chars).decode("ascii", "replace")
        try:
            values.append(int(tok))
        except ValueError:
            raise inp.error(f"expected integer in {what}, got {tok!r}", offset=tok_start) from None
        if not -2 ** 31 <= values[-1] < 2 ** 31:
            raise inp.error(f"value {values[-1]} out of int32 range in {what}", offset=tok_start)
    return np.asarray(values, dtype=np.int32)


def write_int_vector(f: BinaryIO, values, binary: bool) -> None:
    """Kaldi ``WriteIntegerVector<int32>``."""
    arr = np.ascontiguousarray(np.asarray(values, dtype="<i4"))
    if binary:
        f.write(b"\x04" + _INT32.pack(arr.size) + arr.tobytes())
    else:
        f.write(b"[ " + b"".join(f"{int(v)} ".encode() for v in arr) + b"]\n")


def read_float_vector(inp: KaldiInput, binary: bool, what: str = "vector") -> np.ndarray:
    """Kaldi ``Vector<float>::Read``: returns a float32 array."""
    start = inp.offset
    if binary:
        tok = inp.read_token(f"{what} header")
        if tok not in ("FV", "DV"):
            raise inp.error(f"expected FV or DV for {what}, got {tok!r}", offset=start)
        n = inp.read_int32(True, f"{what} dimension")
        if n < 0:
            raise inp.error(f"negative dimension {n} for {what}", offset=start)
        dtype = np.float32 if tok == "FV" else np.float64
        parts = []
        left = n
        while left > 0:
            k = min(left, _CHUNK)
            parts.append(inp.read_array(k, dtype, what))
            left -= k
        arr = np.concatenate(parts) if parts else np.zeros(0, dtype)
        return arr.astype(np.float32)
    inp.skip_whitespace()
    tok = inp.read_token(what)
    if tok == "[]":
        return np.zeros(0, np.float32)
    if tok != "[":
        raise inp.error(f"expected '[' at the start of {what}, got {tok!r}", offset=start)
    values = []
    while True:
        # skip spaces and tabs, but not newlines (as Kaldi)
        while inp.peek(1) in (b" ", b"\t"):
            inp.read(1)
        c = inp.peek(1)
        if not c:
            raise inp.error(f"unexpected end of file in {what}")
        if c == b"]":
            inp.read(1)
            nxt = inp.peek(1)
            if nxt == b"\r":
                inp.read(min(2, len(inp.peek(2))))
            elif nxt == b"\n":
                inp.read(1)
            break
        if c in (b"\n", b"\r"):
            raise inp.error(f"newline found while reading {what}")
        tok_start = inp.offset
        chars = []
        while True:
            c = inp.peek(1)
            if not c or c in _WS or c == b"]":
                break
            chars.append(inp.read(1))
        tok = b"".join(chars).decode("ascii", "replace")
        try:
            values.append(parse_float(tok))
        except ValueError:
            raise inp.error(f"expected number in {what}, got {tok!r}", offset=tok_start) from None
    return np.asarray(values, dtype=np.float32)


def write_float_vector(f: BinaryIO, values, binary: bool) -> None:
    """Kaldi ``Vector<float>::Write``."""
    arr = np.ascontiguousarray(np.asarray(values, dtype="<f4"))
    if binary:
        f.write(b"FV \x04" + _INT32.pack(arr.size) + arr.tobytes())
    else:
        f.write(b" [ " + b"".join(f"{format_float(float(v))} ".encode() for v in arr) + b"]\n")


def expect_final_token(inp: KaldiInput, token: str) -> None:
    """``inp.expect_token(token)``, also requiring the whitespace Kaldi's
    ``ReadToken`` insists on after a token (so a stream truncated right after
    the closing token of an object is an error, as in Kaldi)."""
    inp.skip_whitespace()
    start = inp.offset
    ahead = inp.peek(len(token) + 1)
    if ahead == token.encode("ascii", "replace"):
        raise inp.error(f"unexpected end of file after token {token} "
                        "(expected a space after it)", offset=start + len(token))
    inp.expect_token(token)


def f32(x) -> float:
    """``x`` rounded to float32, as a Python float."""
    return float(np.float32(x))


def exp_f32(x: float) -> float:
    """``expf`` of a float32 value (correctly rounded via double)."""
    x = float(x)
    if x > 89.0:  # beyond float32 range
        return float("inf")
    return float(np.float32(math.exp(x)))


def log_f32(x: float) -> float:
    """``logf`` of a float32 value (correctly rounded via double)."""
    x = float(x)
    if x <= 0.0:
        return float("-inf") if x == 0.0 else float("nan")
    return float(np.float32(math.log(x)))


# -- file helpers -----------------------------------------------------------------

def read_object_file(path, reader: Callable[[KaldiInput, bool], object]):
    """Open ``path``, detect the ``\\0B`` marker and call ``reader(inp, binary)``."""
    path = str(path)
    with open(path, "rb") as fh:
        inp = KaldiInput(fh, path)
        binary = inp.read_binary_marker()
        return reader(inp, binary)


def read_object_bytes(data: bytes, reader: Callable[[KaldiInput, bool], object],
                      name: str = "<bytes>"):
    inp = KaldiInput(io.BytesIO(data), name)
    binary = inp.read_binary_marker()
    return reader(inp, binary)


def write_object_file(path, obj, binary: bool) -> None:
    buf = io.BytesIO()
    write_binary_marker(buf, binary)
    obj.write(buf, binary)
    Path(path).write_bytes(buf.getvalue())


def object_to_bytes(obj, binary: bool) -> bytes:
    buf = io.BytesIO()
    write_binary_marker(buf, binary)
    obj.write(buf, binary)
    return buf.getvalue()


def wrap_errors(inp: KaldiInput, start: Optional[int] = None):
    """Context manager turning a plain ValueError from a consistency check into
    a KaldiFormatError that names the stream (KaldiFormatErrors pass through)."""
    return _Wrap(inp, start)


class _Wrap:
    def __init__(self, inp: KaldiInput, start: Optional[int]):
        self.inp = inp
        self.start = start

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, KaldiFormatError):
            return False
        if isinstance(exc, (ValueError, IndexError, KeyError, OverflowError)):
            raise self.inp.error(f"invalid object: {exc}", offset=self.start) from exc
        return False
